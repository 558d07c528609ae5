"""textgym label --web: the API (answer, tie, skip, undo, resume, several labelers) and a real headless browser."""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from textgym.app.feedback import Item
from textgym.app.web import PAGE_FILES, LabelQueue, create_app, page_file, running, serve
from textgym.data.preferences import read_rankings

ITEMS = [Item(i, f"question {i}?", [f"a great answer {i}", f"an answer {i}", "no"]) for i in range(4)]
SCREENSHOT = Path(__file__).parents[2] / "examples" / "images" / "label_web.png"


def app_for(path, items=ITEMS, **kwargs):
    """Return a label queue writing to ``path`` and a Flask test client of its app."""
    queue = LabelQueue(items, path, **kwargs)
    return queue, create_app(queue).test_client()


def post(client, route, **body):
    """Post ``body`` as JSON to ``/api/<route>``; return the status code and the JSON reply."""
    response = client.post(f"/api/{route}", json=body)
    return response.status_code, response.get_json()


def state(client, labeler):
    """Return the state the API shows ``labeler``."""
    return client.get("/api/state", query_string={"labeler": labeler}).get_json()["state"]


def shown(reply):
    """The id of the item a reply shows (None when there is none)."""
    return (reply["state"]["item"] or {}).get("id")


def rows(path):
    """Return ``(id, ranking, skipped, source)`` for each row written to ``path``."""
    return [(r["id"], r["ranking"], r.get("skipped", False), r["source"]) for r in read_rankings(path)]


def test_answer_tie_skip_and_undo_write_the_terminal_rows(tmp_path):
    """Answers, ties and skips write the terminal's rows and finish the queue; undo removes them newest first."""
    out = tmp_path / "out.jsonl"
    queue, client = app_for(out)
    first = state(client, "ada")
    assert (first["item"], first["status"], first["answered"], first["total"], first["can_undo"]) == (
        {"id": 0, "prompt": "question 0?", "completions": ["a great answer 0", "an answer 0", "no"]}, "label", 0, 4,
        False)
    code, reply = post(client, "answer", labeler="ada", id=0, ranking=[2, 1, 3])
    assert (code, shown(reply), reply["state"]["answered"], reply["state"]["can_undo"]) == (200, 1, 1, True)
    assert shown(post(client, "answer", labeler="ada", id=1, ranking=[1, 1, 3])[1]) == 2  # a tie
    assert shown(post(client, "skip", labeler="ada", id=2)[1]) == 3
    code, reply = post(client, "undo", labeler="ada")  # the skip is removed; that prompt comes back
    assert (code, shown(reply), reply["state"]["answered"]) == (200, 2, 2)
    assert rows(out) == [(0, [2, 1, 3], False, "human:web:ada"), (1, [1, 1, 3], False, "human:web:ada")]
    post(client, "answer", labeler="ada", id=2, ranking=[3, 2, 1])
    code, reply = post(client, "skip", labeler="ada", id=3)
    assert (code, reply["state"]["status"], reply["state"]["answered"], queue.done.is_set()) == (200, "done", 4, True)
    assert read_rankings(out)[0] == {"id": 0, "prompt": "question 0?", "ranking": [2, 1, 3], "source": "human:web:ada",
                                     "completions": ["a great answer 0", "an answer 0", "no"]}
    assert read_rankings(out)[3] == {"id": 3, "prompt": "question 3?", "ranking": None, "skipped": True,
                                     "source": "human:web:ada", "completions": ITEMS[3].completions}
    assert queue.written == [0, 1, 2, 3]
    for expected in (3, 2, 1, 0):
        assert shown(post(client, "undo", labeler="ada")[1]) == expected
    assert (read_rankings(out), queue.written, queue.done.is_set()) == ([], [], False)
    code, reply = post(client, "undo", labeler="ada")
    assert (code, reply["error"], shown(reply)) == (409, "nothing of yours to undo", 0)


@pytest.mark.parametrize(("body", "code", "message"), [
    ({"id": 0, "ranking": [1, 2]}, 400, "ranking [1, 2] must list one rank for each of the 3 completions"),
    ({"id": 0, "ranking": [0, 1, 2]}, 400, "ranking [0, 1, 2] must hold integer ranks from 1 (best) to 3"),
    ({"id": 0, "ranking": [2, 2, 3]}, 400, "ranking [2, 2, 3] has no rank 1: the best completion must be ranked 1"),
    ({"id": 0, "ranking": [1, True, 2]}, 400, "ranking [1, True, 2] must hold integer ranks from 1 (best) to 3"),
    ({"id": 0}, 400, "ranking None must list one rank for each of the 3 completions"),
    ({"id": 99, "ranking": [1, 2, 3]}, 404, "no prompt has id 99"),
    ({"id": True, "ranking": [1, 2, 3]}, 404, "no prompt has id True"),
    ({"id": "0", "ranking": [1, 2, 3]}, 404, "no prompt has id '0'"),
])
def test_an_invalid_answer_is_refused_with_a_clear_message(tmp_path, body, code, message):
    """A bad ranking or id is refused with its status and message, the same item is shown, and nothing is written."""
    _, client = app_for(tmp_path / "out.jsonl")
    got, reply = post(client, "answer", labeler="ada", **body)
    assert (got, reply["error"], shown(reply)) == (code, message, 0)
    assert not (tmp_path / "out.jsonl").exists()


def test_the_page_and_its_files_are_served_from_the_package(tmp_path):
    """``/`` serves index.html, which loads the style sheet and script the app serves with their types."""
    _, client = app_for(tmp_path / "out.jsonl")
    page = client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html" and "rank completions" in page.text
    assert '<link rel="stylesheet" href="style.css">' in page.text and '<script src="script.js">' in page.text
    for name in ("style.css", "script.js"):
        response = client.get(f"/{name}")
        assert (response.status_code, response.mimetype, response.text) == (200, PAGE_FILES[name], page_file(name))
    assert client.get("/index.css").status_code == 404
    with pytest.raises(ValueError, match="the page has no file 'web.py'"):
        page_file("web.py")


def test_a_body_that_is_not_a_json_object_is_refused(tmp_path):
    """A JSON body that is not an object is refused with 400."""
    _, client = app_for(tmp_path / "out.jsonl")
    response = client.post("/api/answer", data="[1, 2]", content_type="application/json")
    assert (response.status_code, response.get_json()) == (400, {"error": "send a JSON object"})


def test_a_new_app_on_the_same_file_resumes_and_can_undo_the_labelers_rows(tmp_path):
    """A new app on the same file resumes at the next item, and only the labeler who wrote a row can undo it."""
    out = tmp_path / "out.jsonl"
    _, client = app_for(out)
    post(client, "answer", labeler="ada", id=0, ranking=[1, 2, 3])
    post(client, "skip", labeler="ada", id=1)
    queue, client = app_for(out)  # a restarted server, or a reloaded page
    again = state(client, "ada")
    assert (again["item"]["id"], again["answered"], again["can_undo"]) == (2, 2, True)
    assert state(client, "bob")["can_undo"] is False
    assert shown(post(client, "undo", labeler="ada")[1]) == 1
    assert (rows(out), queue.written) == ([(0, [1, 2, 3], False, "human:web:ada")], [])


def test_rows_written_by_hand_or_the_terminal_count_as_answered(tmp_path):
    """Rows written by hand or by the terminal count as answered, cannot be undone, and refuse a second answer."""
    out = tmp_path / "out.jsonl"
    out.write_text(json.dumps({"prompt": "question 0?", "completions": ITEMS[0].completions, "ranking": [1, 2, 3]})
                   + "\n" + json.dumps({"id": 1, "prompt": "question 1?", "completions": ITEMS[1].completions,
                                        "ranking": None, "skipped": True, "source": "human"}) + "\n")
    _, client = app_for(out)
    assert (state(client, "ada")["item"]["id"], state(client, "ada")["can_undo"]) == (2, False)
    code, reply = post(client, "answer", labeler="ada", id=0, ranking=[1, 2, 3])
    assert (code, reply["error"], shown(reply)) == (409, "prompt 0 was already answered; here is the next one", 2)


def test_two_labelers_never_share_an_item_nor_duplicate_a_row(tmp_path):
    """Two labelers hold different items, the first answer to an item wins, and undo takes only one's own rows."""
    out = tmp_path / "out.jsonl"
    _, client = app_for(out)
    assert (state(client, "ada")["item"]["id"], state(client, "bob")["item"]["id"]) == (0, 1)
    assert state(client, "ada")["item"]["id"] == 0  # a reload keeps what one holds
    assert post(client, "answer", labeler="bob", id=0, ranking=[1, 2, 3])[0] == 200  # e.g. after a lease ran out
    code, reply = post(client, "answer", labeler="ada", id=0, ranking=[3, 2, 1])  # the first answer won
    assert (code, reply["error"], shown(reply)) == (409, "prompt 0 was already answered; here is the next one", 2)
    post(client, "answer", labeler="ada", id=2, ranking=[1, 2, 3])
    assert shown(post(client, "undo", labeler="bob")[1]) == 0  # bob's own row, not ada's later one
    assert rows(out) == [(2, [1, 2, 3], False, "human:web:ada")]
    assert state(client, "carol")["item"]["id"] == 1  # bob let go of 1 for 0, ada holds 3
    assert state(client, "dan") == {"labeler": "dan", "item": None, "status": "wait", "answered": 1, "total": 4,
                                    "can_undo": False}


def test_a_lease_expires_and_waiting_labelers_are_told_so(tmp_path):
    """Waiting labelers are told to wait; an unrenewed lease expires to them, and a release gives the item back."""
    now = [0.0]
    _, client = app_for(tmp_path / "out.jsonl", items=ITEMS[:2], lease_seconds=60, clock=lambda: now[0])
    assert (state(client, "ada")["item"]["id"], state(client, "bob")["item"]["id"]) == (0, 1)
    waiting = state(client, "carol")
    assert (waiting["status"], waiting["item"], waiting["answered"]) == ("wait", None, 0)
    now[0] = 50.0
    state(client, "bob")  # asking renews bob's lease, not ada's
    now[0] = 61.0
    assert state(client, "carol")["item"]["id"] == 0
    assert client.post("/api/release", json={"labeler": "carol"}).status_code == 200
    assert state(client, "ada")["item"]["id"] == 0


def test_many_labelers_racing_write_each_item_exactly_once(tmp_path):
    """Eight labelers racing, sometimes on others' items, write each item exactly once and get only 409 refusals."""
    out, items = tmp_path / "out.jsonl", [Item(i, f"q{i}", ["x", "y"]) for i in range(40)]
    queue = LabelQueue(items, out)
    app, refused = create_app(queue), []

    def labeler(name: str) -> None:
        client, rng = app.test_client(), random.Random(name)
        while (now := state(client, name))["status"] != "done":
            if now["item"] is None:
                continue
            target = now["item"]["id"] if rng.random() < 0.7 else rng.randrange(40)  # sometimes someone else's
            code, _ = post(client, "answer" if rng.random() < 0.8 else "skip", labeler=name, id=target, ranking=[1, 2])
            if code != 200:
                refused.append(code)

    threads = [threading.Thread(target=labeler, args=(f"labeler{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    ids = [row["id"] for row in read_rankings(out)]
    assert sorted(ids) == list(range(40)) and queue.done.is_set()
    assert set(refused) <= {409} and len(queue.written) == 40


def free_port() -> int:
    """Return a free local TCP port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_stops_when_every_item_is_answered(tmp_path, capsys):
    """``serve`` serves the page, stops once every item is answered, and returns at once when none is left."""
    out, port, result = tmp_path / "out.jsonl", free_port(), []
    thread = threading.Thread(target=lambda: result.append(serve(ITEMS[:2], out, port=port, stop_when_done=True)))
    thread.start()
    url = f"http://127.0.0.1:{port}/"
    for _ in range(200):
        try:
            page = urllib.request.urlopen(url, timeout=5).read().decode()
            break
        except urllib.error.URLError:
            threading.Event().wait(0.05)
    assert "rank completions" in page
    for item_id in (0, 1):
        body = json.dumps({"labeler": "ada", "id": item_id, "ranking": [1, 2, 3]}).encode()
        request = urllib.request.Request(url + "api/answer", data=body, headers={"Content-Type": "application/json"})
        assert urllib.request.urlopen(request, timeout=5).status == 200
    thread.join(timeout=30)
    assert result == [2] and len(read_rankings(out)) == 2
    assert capsys.readouterr().out == (f"labeling page: {url}  (2 prompts; Ctrl-C stops)\n"
                                       f"2 answers saved to {out}\n")
    assert serve(ITEMS[:2], out, port=port, stop_when_done=True) == 0  # nothing left: returns at once
    assert capsys.readouterr().out == f"0 answers saved to {out}\n"


# ------------------------------------------------------------------------------------------ in a browser
PAGE_ITEMS = [
    Item(0, "How do I keep basil alive on a windowsill?",
         ["Give it at least six hours of sun, water when the top of the soil is dry, and pinch off flower buds.",
          "Basil is a plant.", "Water it every hour and keep it in a dark cupboard."]),
    Item(1, "Suggest a name for a grey cat.", ["Smokey", "Cat", "Ash, or Pebble if she is small"]),
    Item(2, "What is 12 times 12?", ["144", "122", "It is 144."]),
    Item(3, "Write a one-line thank-you note to a neighbour who watered my plants.",
         ["Thanks.", "Thank you so much for looking after my plants while I was away; they have never looked better!",
          "Thank you for watering my plants, I really appreciate it.", "Plants need water."]),
]


@pytest.fixture
def browser(tmp_path):
    """Provide a headless Chromium WebDriver, skipping the test without Chromium and chromedriver."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    chromedriver = shutil.which("chromedriver")
    if not chromium or not chromedriver:
        pytest.skip("needs Chromium and its WebDriver on PATH (Debian: apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
                 f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1000,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


def test_a_person_ranks_in_a_browser(tmp_path, browser):
    """In a browser, a person names themselves, ranks by clicks and keys, ties, skips, undoes, reloads, finishes."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    out = tmp_path / "out.jsonl"
    wait = WebDriverWait(browser, 15)
    find = browser.find_element

    def prompt_is(text: str) -> None:
        wait.until(lambda d: d.find_element(By.ID, "work").is_displayed()
                   and d.find_element(By.ID, "prompt").text == text)

    def cards():
        return browser.find_elements(By.CSS_SELECTOR, ".completion")

    def keys(*pressed: str) -> None:
        find(By.TAG_NAME, "body").send_keys(*pressed)

    with running(create_app(LabelQueue(PAGE_ITEMS, out))) as url:
        browser.get(url)
        prompt_is(PAGE_ITEMS[0].prompt)  # as "anonymous", until a name is typed
        name = find(By.ID, "labeler")
        name.clear()
        name.send_keys("ada", Keys.ENTER)
        wait.until(lambda d: d.execute_script("return localStorage.getItem('textgym.labeler')") == "ada")
        prompt_is(PAGE_ITEMS[0].prompt)  # anonymous let go of it
        assert find(By.ID, "progress").text == "0 / 4 answered" and not find(By.ID, "submit").is_enabled()
        for index in (1, 0, 2):  # clicks in order: ranks 2 1 3
            cards()[index].click()
        assert [card.find_element(By.CLASS_NAME, "rank").text for card in cards()] == ["2nd", "1st", "3rd"]
        find(By.ID, "submit").click()
        prompt_is(PAGE_ITEMS[1].prompt)
        keys("2", "1", Keys.BACKSPACE)  # cleared
        assert not any(card.find_element(By.CLASS_NAME, "rank").text for card in cards())
        keys("3", "=", "1", "2", Keys.ENTER)  # 3 and 1 tie for first
        prompt_is(PAGE_ITEMS[2].prompt)
        assert find(By.ID, "progress").text == "2 / 4 answered"
        keys("s")
        prompt_is(PAGE_ITEMS[3].prompt)
        keys("u")  # the skip is undone: that prompt again
        prompt_is(PAGE_ITEMS[2].prompt)
        keys("1", "3", "2", Keys.ENTER)
        prompt_is(PAGE_ITEMS[3].prompt)
        browser.refresh()  # resumes at the first unanswered prompt, under the remembered name
        prompt_is(PAGE_ITEMS[3].prompt)
        assert find(By.ID, "labeler").get_attribute("value") == "ada"
        assert find(By.ID, "progress").text == "3 / 4 answered"
        cards()[1].click()
        find(By.ID, "tie").click()
        cards()[2].click()
        keys("1", "4")
        wait.until(lambda d: d.find_element(By.ID, "submit").is_enabled())
        assert find(By.ID, "order").get_attribute("textContent").startswith("Your order: 2 = 3  ›  1  ›  4")
        assert [card.find_element(By.CLASS_NAME, "rank").text for card in cards()] == [
            "3rd", "tied 1st", "tied 1st", "4th"]
        browser.save_screenshot(str(tmp_path / "label_web.png"))
        if os.environ.get("TEXTGYM_SAVE_SCREENSHOT"):  # refreshes the docs' picture
            shutil.copyfile(tmp_path / "label_web.png", SCREENSHOT)
        keys(Keys.ENTER)
        wait.until(lambda d: d.find_element(By.ID, "idle").is_displayed())
        assert find(By.ID, "idle-title").text == "All prompts are answered. Thank you!"
        assert find(By.ID, "progress").text == "4 / 4 answered"
    assert (tmp_path / "label_web.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    source = "human:web:ada"
    assert read_rankings(out) == [
        {"id": 0, "prompt": PAGE_ITEMS[0].prompt, "completions": PAGE_ITEMS[0].completions, "ranking": [2, 1, 3],
         "source": source},
        {"id": 1, "prompt": PAGE_ITEMS[1].prompt, "completions": PAGE_ITEMS[1].completions, "ranking": [1, 3, 1],
         "source": source},
        {"id": 2, "prompt": PAGE_ITEMS[2].prompt, "completions": PAGE_ITEMS[2].completions, "ranking": [1, 3, 2],
         "source": source},
        {"id": 3, "prompt": PAGE_ITEMS[3].prompt, "completions": PAGE_ITEMS[3].completions, "ranking": [3, 1, 1, 4],
         "source": source},
    ]
