"""The labelers' web page: ``textgym label --web`` serves prompts to rank in a browser, several people at once.

A labeler types a name, sees a prompt and its K completions, and ranks them by clicks or keys, as in
the terminal labeller (:func:`textgym.app.feedback.label_interactive`): completions picked in order
get ranks 1, 2, 3...; ``=`` ties the next pick with the previous one; ``1``-``9`` pick; Backspace
clears; Enter submits; ``s`` skips; ``u`` undoes the labeler's last answer. Every answer is checked
on the server and appended to the rankings JSONL of :mod:`textgym.data.preferences` at once (the
terminal's row shape, ``"source": "human:web:<name>"``).

The rankings file is the state, so a reload or a restarted server resumes at the first unanswered
prompt. Several labelers never lose nor duplicate a row: a :class:`LabelQueue` hands each one the
first unanswered item nobody else holds (a lease that expires after ``lease_seconds``), one lock
serialises every read and write of the file, a second answer for an answered item is refused
(HTTP 409, the page moves on), and undo removes only the labeler's own last row.

Why these libraries: Flask (Pallets) gives routing, JSON replies and a test client, and waitress
(Pylons) is a pure-Python, production-grade threaded WSGI server, so the page is served without a
development-server warning and without handling HTTP by hand. The page is one HTML document with its
CSS and vanilla JavaScript inline (:data:`PAGE`): it needs no network and no package data.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import cast

from flask import Flask, Response, jsonify, request
from waitress import wasyncore
from waitress.server import create_server
from waitress.trigger import trigger

from textgym.app.feedback import Answered, Item, answer_row
from textgym.data.preferences import append_row, check_ranking, read_rankings

LEASE_SECONDS = 600.0


class Conflict(Exception):
    """An answer the state of the file refuses (already answered, nothing to undo); carries the labeler's state."""

    def __init__(self, message: str, state: dict) -> None:
        super().__init__(message)
        self.state = state


def labeler_name(value: object) -> str:
    """A labeler's name as sent by the page: spaces collapsed, at most 40 characters, ``"anonymous"`` if empty.

    Example:
        >>> labeler_name("  Ada   L. "), labeler_name(""), labeler_name(None)
        ('Ada L.', 'anonymous', 'anonymous')
    """
    name = " ".join(value.split())[:40] if isinstance(value, str) else ""
    return name or "anonymous"


def _drop_row(path: Path, index: int) -> None:
    """Remove the ``index``-th row (blank lines not counted) of a JSONL file atomically."""
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    del lines[index]
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write("".join(line + "\n" for line in lines))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


class LabelQueue:
    """Hands items to labelers and writes their answers to ``output``; safe to share between threads.

    Each labeler holds at most one item (a lease renewed whenever it asks, dropped after
    ``lease_seconds`` without a word, or once the item is answered). An item is answered once: the
    first answer wins, a later one raises :class:`Conflict`.

    Args:
        items: What to label, in order; ids must be distinct (answers name their item by id).
        output: The rankings JSONL to append to (it may hold rows already: they count as answers).
        lease_seconds: How long an item stays with a labeler who does not answer.
        clock: Seconds, monotonic (tests pass a fake one).
    """

    def __init__(self, items: Iterable[Item], output: str | Path, lease_seconds: float = LEASE_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.items = list(items)
        self.by_id: dict[object, Item] = {item.id: item for item in self.items}  # looked up by ids as sent
        if len(self.by_id) != len(self.items):
            raise ValueError("items need distinct ids: the page names the item it answers by id")
        self.output = Path(output)
        self.lease_seconds, self.clock = lease_seconds, clock
        self.leases: dict[str, tuple[int, float]] = {}  # labeler -> (item id, expiry)
        self.written: list[int] = []  # ids of the rows this queue appended, less those undone
        self.done = threading.Event()  # set while every item is answered
        self._lock = threading.Lock()
        done = Answered(self._rows())
        if all(item in done for item in self.items):
            self.done.set()

    def _rows(self) -> list[dict]:
        return read_rankings(self.output) if self.output.exists() else []

    def _own_last_row(self, labeler: str, rows: list[dict]) -> int | None:
        """Where ``labeler``'s last row about one of these items is (an older round's rows are not its to undo)."""
        for index in range(len(rows) - 1, -1, -1):
            row = rows[index]
            item = self.by_id.get(row.get("id"))
            if row.get("source") == f"human:web:{labeler}" and item and row["prompt"] == item.prompt \
                    and row["completions"] == item.completions:
                return index
        return None

    def _state(self, labeler: str, rows: list[dict]) -> dict:
        done, now = Answered(rows), self.clock()
        self.leases = {who: (item_id, expiry) for who, (item_id, expiry) in self.leases.items()
                       if expiry > now and self.by_id[item_id] not in done}
        held = self.leases.get(labeler)
        taken = {item_id for who, (item_id, _) in self.leases.items() if who != labeler}
        open_items = [item for item in self.items if item not in done]
        item = self.by_id[held[0]] if held else next((i for i in open_items if i.id not in taken), None)
        if item is not None:
            self.leases[labeler] = (item.id, now + self.lease_seconds)
        return {"labeler": labeler, "item": asdict(item) if item else None,
                "status": "label" if item else "wait" if open_items else "done",
                "answered": len(self.items) - len(open_items), "total": len(self.items),
                "can_undo": self._own_last_row(labeler, rows) is not None}

    def state(self, labeler: str) -> dict:
        """What ``labeler`` sees now, leasing it an item if it holds none.

        Returns:
            ``{"labeler", "item": {"id", "prompt", "completions"} or None, "status", "answered",
            "total", "can_undo"}``; ``status`` is ``"label"`` (an item to rank), ``"wait"`` (the
            unanswered items are all held by others) or ``"done"`` (every item is answered).
        """
        with self._lock:
            return self._state(labeler, self._rows())

    def _write(self, labeler: str, item_id: object, fields: dict) -> dict:
        with self._lock:
            rows = self._rows()
            item = self.by_id[item_id]
            if item in Answered(rows):
                message = f"prompt {item_id} was already answered; here is the next one"
                raise Conflict(message, self._state(labeler, rows))
            row = answer_row(item, **fields, source=f"human:web:{labeler}")
            append_row(self.output, row)
            self.written.append(item.id)
            state = self._state(labeler, [*rows, row])
            if state["status"] == "done":
                self.done.set()
            return state

    def _item(self, item_id: object) -> Item:
        if type(item_id) is not int or item_id not in self.by_id:
            raise LookupError(f"no prompt has id {item_id!r}")
        return self.by_id[item_id]

    def answer(self, labeler: str, item_id: object, ranking: object) -> dict:
        """Append ``labeler``'s ranking of an item; returns the labeler's next state.

        Raises:
            LookupError: No item has this id.
            ValueError: ``ranking`` does not rank this item's completions (see ``check_ranking``).
            Conflict: The item is already answered.
        """
        check_ranking(ranking, len(self._item(item_id).completions))
        return self._write(labeler, item_id, {"ranking": list(cast(list[int], ranking))})  # checked above

    def skip(self, labeler: str, item_id: object) -> dict:
        """Append a skipped row for an item; returns the labeler's next state (raises as :meth:`answer`)."""
        self._item(item_id)
        return self._write(labeler, item_id, {"ranking": None, "skipped": True})

    def release(self, labeler: str) -> None:
        """Hand back the item ``labeler`` holds, if any (the page does when its labeler changes name)."""
        with self._lock:
            self.leases.pop(labeler, None)

    def undo(self, labeler: str) -> dict:
        """Remove ``labeler``'s last row (for one of these items) from the file; that item is its next state.

        Raises:
            Conflict: The labeler has no such row.
        """
        with self._lock:
            rows = self._rows()
            index = self._own_last_row(labeler, rows)
            if index is None:
                raise Conflict("nothing of yours to undo", self._state(labeler, rows))
            _drop_row(self.output, index)
            row = rows.pop(index)
            if row["id"] in self.written:
                self.written.remove(row["id"])
            self.done.clear()
            self.leases[labeler] = (row["id"], self.clock() + self.lease_seconds)
            return self._state(labeler, rows)


def create_app(queue: LabelQueue) -> Flask:
    """The Flask app of the page: ``GET /``, ``GET /api/state?labeler=``, ``POST /api/answer|skip|undo|release``.

    POST bodies are JSON objects with ``labeler`` (and ``id``, and for an answer ``ranking``). Every
    API reply but release's is ``{"state": ...}`` (see :meth:`LabelQueue.state`); a refused one adds
    ``"error"`` with status 400 (a bad ranking), 404 (no such id) or 409 (already answered, nothing to
    undo); a body that is not a JSON object gets only the error, status 400.
    """
    app = Flask(__name__)

    def reply(action: Callable[[str, dict], dict]) -> tuple[Response, int]:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return jsonify(error="send a JSON object"), 400
        labeler = labeler_name(body.get("labeler"))
        try:
            return jsonify(state=action(labeler, body)), 200
        except Conflict as err:
            return jsonify(error=str(err), state=err.state), 409
        except LookupError as err:
            return jsonify(error=str(err), state=queue.state(labeler)), 404
        except ValueError as err:
            return jsonify(error=str(err), state=queue.state(labeler)), 400

    @app.get("/")
    def page() -> Response:
        return Response(PAGE, mimetype="text/html")

    @app.get("/api/state")
    def state() -> Response:
        return jsonify(state=queue.state(labeler_name(request.args.get("labeler"))))

    @app.post("/api/answer")
    def answer() -> tuple[Response, int]:
        return reply(lambda labeler, body: queue.answer(labeler, body.get("id"), body.get("ranking")))

    @app.post("/api/skip")
    def skip() -> tuple[Response, int]:
        return reply(lambda labeler, body: queue.skip(labeler, body.get("id")))

    @app.post("/api/release")
    def release() -> tuple[Response, int]:
        body = request.get_json(silent=True)
        queue.release(labeler_name(body.get("labeler") if isinstance(body, dict) else None))
        return jsonify(released=True), 200

    @app.post("/api/undo")
    def undo() -> tuple[Response, int]:
        return reply(lambda labeler, _: queue.undo(labeler))

    return app


@contextmanager
def running(app: Flask, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``app`` with waitress on a background thread; yields its URL, stops when the block ends.

    Args:
        app: A WSGI app, e.g. from :func:`create_app`.
        host: The address to listen on.
        port: The port; 0 picks a free one.

    Example:
        >>> import json, urllib.request
        >>> with running(create_app(LabelQueue([], "nothing.jsonl"))) as url:
        ...     json.load(urllib.request.urlopen(url + "api/state"))["state"]["status"]
        'done'
    """
    sockets: dict = {}
    server = create_server(app, map=sockets, host=host, port=port, threads=8)
    wake = trigger(sockets)  # runs code in the server's own thread, which owns the sockets
    thread = threading.Thread(target=server.run, name="textgym-web", daemon=True)
    thread.start()
    bound = server.effective_listen[0][1] if hasattr(server, "effective_listen") else server.effective_port
    try:
        yield f"http://{f'[{host}]' if ':' in host else host}:{bound}/"
    finally:
        wake.pull_trigger(lambda: wasyncore.close_all(sockets))  # no socket left: server.run returns
        thread.join()
        server.task_dispatcher.shutdown()


def serve(items: list[Item], output: str | Path, host: str = "127.0.0.1", port: int = 8765,
          stop_when_done: bool = False, lease_seconds: float = LEASE_SECONDS) -> int:
    """Serve the labeling page until Ctrl-C (or until every item is answered); returns how many rows were written.

    Prints the page's URL when it starts and a count when it stops (it is a command).

    Args:
        items: What to label (answered ones are skipped, the file decides).
        output: The rankings JSONL to append to.
        host: The address to listen on (``0.0.0.0`` lets other machines in).
        port: The port to listen on; 0 picks a free one.
        stop_when_done: Return once every item is answered (an RLHF loop waiting for its labelers).
        lease_seconds: How long an item stays with a labeler who does not answer.
    """
    queue = LabelQueue(items, output, lease_seconds=lease_seconds)
    if not (stop_when_done and queue.done.is_set()):
        with running(create_app(queue), host, port) as url:
            print(f"labeling page: {url}  ({len(queue.items)} prompts; Ctrl-C stops)", flush=True)
            try:
                while not (stop_when_done and queue.done.is_set()):
                    time.sleep(0.2)
                    if queue.done.is_set():
                        time.sleep(1.0)  # the last reply reaches its page (and an undo then keeps us serving)
            except KeyboardInterrupt:
                pass
    print(f"{len(queue.written)} answers saved to {output}")
    return len(queue.written)


PAGE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>textgym · rank completions</title>
<link rel="icon" href="data:,">
<style>
:root { --ink: #1f2330; --muted: #6b7180; --line: #e3e5ea; --paper: #fff; --back: #f4f5f8;
        --accent: #4f46e5; --accent-soft: #eef0ff; --good: #0f9d58; --bad: #c62828; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--back); color: var(--ink); line-height: 1.5;
       font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", sans-serif; }
header { background: var(--paper); border-bottom: 1px solid var(--line); }
.bar { max-width: 880px; margin: 0 auto; padding: 14px 20px; display: flex; gap: 18px; align-items: center; }
h1 { font-size: 18px; margin: 0; white-space: nowrap; }
h1 span { color: var(--accent); }
label.name { display: flex; gap: 8px; align-items: center; color: var(--muted); font-size: 14px; }
label.name input { font: inherit; color: var(--ink); width: 150px; padding: 5px 9px; border: 1px solid var(--line);
                   border-radius: 8px; }
.progress { margin-left: auto; min-width: 170px; font-size: 14px; color: var(--muted); text-align: right; }
.track { height: 6px; background: var(--line); border-radius: 3px; margin-top: 4px; overflow: hidden; }
.fill { height: 100%; width: 0; background: var(--accent); transition: width .3s; }
main { max-width: 880px; margin: 0 auto; padding: 22px 20px 40px; }
.card { background: var(--paper); border: 1px solid var(--line); border-radius: 12px; padding: 16px 18px; }
.caption { font-size: 12px; font-weight: 600; letter-spacing: .06em; text-transform: uppercase; color: var(--muted); }
#prompt { white-space: pre-wrap; font-size: 17px; margin-top: 4px; }
#completions { display: grid; gap: 10px; margin: 16px 0; }
.completion { display: flex; gap: 14px; align-items: flex-start; width: 100%; text-align: left; font: inherit;
              color: inherit; background: var(--paper); border: 2px solid var(--line); border-radius: 12px;
              padding: 12px 14px; cursor: pointer; transition: border-color .15s, background .15s; }
.completion:hover { border-color: #b9bdf7; }
.completion.ranked { border-color: var(--accent); background: var(--accent-soft); }
.key { flex: none; width: 26px; height: 26px; border-radius: 6px; border: 1px solid var(--line);
       background: var(--back); font-size: 13px; font-weight: 600; display: grid; place-items: center;
       color: var(--muted); }
.text { flex: 1; white-space: pre-wrap; }
.rank { flex: none; min-width: 58px; text-align: center; font-size: 13px; font-weight: 700; color: #fff;
        background: var(--accent); border-radius: 999px; padding: 3px 10px; visibility: hidden; }
.ranked .rank { visibility: visible; }
.completion.best { border-color: var(--good); background: #ecf8f1; }
.best .rank { background: var(--good); }
.tools { display: flex; flex-wrap: wrap; gap: 8px; align-items: center; }
button.tool { font: inherit; font-size: 14px; padding: 7px 13px; border-radius: 8px; border: 1px solid var(--line);
              background: var(--paper); color: var(--ink); cursor: pointer; }
button.tool:hover:not(:disabled) { border-color: var(--accent); }
button.tool:disabled { opacity: .45; cursor: default; }
button.tool[aria-pressed="true"] { background: var(--accent-soft); border-color: var(--accent); color: var(--accent); }
button.primary { background: var(--accent); border-color: var(--accent); color: #fff; font-weight: 600; }
kbd { font: 12px ui-monospace, monospace; border: 1px solid var(--line); border-bottom-width: 2px; border-radius: 4px;
      padding: 0 4px; background: var(--back); color: var(--muted); }
button.primary kbd { background: transparent; color: #e0e3ff; border-color: #8b86f0; }
.spacer { flex: 1; }
#order { color: var(--muted); font-size: 14px; margin: 12px 2px 0; min-height: 21px; }
#order b { color: var(--ink); }
#message { min-height: 22px; margin-top: 12px; font-size: 14px; color: var(--good); }
#message.error { color: var(--bad); }
.help { margin-top: 26px; font-size: 13px; color: var(--muted); }
#idle { text-align: center; padding: 44px 18px; }
#idle h2 { margin: 0 0 6px; font-size: 22px; }
[hidden] { display: none !important; }
</style>
</head>
<body>
<header><div class="bar">
  <h1>textgym <span>·</span> rank completions</h1>
  <label class="name">Your name
    <input id="labeler" placeholder="anonymous" maxlength="40" autocomplete="off" spellcheck="false"></label>
  <div class="progress"><span id="progress">…</span><div class="track"><div class="fill" id="fill"></div></div></div>
</div></header>
<main>
  <section id="work" hidden>
    <div class="card"><div class="caption">Prompt <span id="item-id"></span></div><div id="prompt"></div></div>
    <div id="completions"></div>
    <div class="tools">
      <button class="tool" id="tie" aria-pressed="false"><kbd>=</kbd> Tie next with previous</button>
      <button class="tool" id="clear"><kbd>⌫</kbd> Clear</button>
      <span class="spacer"></span>
      <button class="tool" id="skip"><kbd>s</kbd> Skip</button>
      <button class="tool" id="undo"><kbd>u</kbd> Undo last</button>
      <button class="tool primary" id="submit" disabled>Submit <kbd>⏎</kbd></button>
    </div>
    <div id="order"></div>
  </section>
  <section id="idle" class="card" hidden><h2 id="idle-title"></h2><div id="idle-text"></div>
    <p><button class="tool" id="undo-idle"><kbd>u</kbd> Undo my last answer</button></p></section>
  <div id="message" role="status"></div>
  <p class="help">Click the completions, or press their numbers, from best to worst. <kbd>=</kbd> makes the next
    pick tie with the previous one; click a ranked completion to take it back. Every answer is saved at once.</p>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let state = null;    // the server's view: item, status, answered, total, can_undo
let groups = [];     // the ordering so far, best first: lists of tied completion indices
let tieNext = false;
let busy = false;
let poll = null;

const nameField = $("labeler");
nameField.value = localStorage.getItem("textgym.labeler") || "";
const labeler = () => nameField.value.trim() || "anonymous";

function note(text, error) {
  const box = $("message");
  box.textContent = text || "";
  box.className = error ? "error" : "";
}

async function call(path, body) {
  if (busy) return;
  busy = true;
  try {
    const response = body === undefined
      ? await fetch(path + "?labeler=" + encodeURIComponent(labeler()))
      : await fetch(path, {method: "POST", headers: {"Content-Type": "application/json"},
                           body: JSON.stringify({labeler: labeler(), ...body})});
    const reply = await response.json();
    if (reply.state) show(reply.state);
    if (reply.error) note(reply.error, response.status !== 409);
    return response.ok;
  } catch (err) {
    note("Cannot reach the labeling server (" + err.message + "); your last answer may not be saved.", true);
  } finally {
    busy = false;
  }
}

function show(next) {
  const before = state && state.item ? state.item.id : null;
  state = next;
  if (!state.item || state.item.id !== before) { groups = []; tieNext = false; }
  clearTimeout(poll);
  if (state.status === "wait") poll = setTimeout(() => call("/api/state"), 3000);
  render();
}

function ranks() {
  const out = [];
  let rank = 1;
  for (const group of groups) { for (const i of group) out[i] = rank; rank += group.length; }
  return out;
}

function ordinal(n) {
  const teen = n % 100 >= 11 && n % 100 <= 13;
  return n + (teen ? "th" : {1: "st", 2: "nd", 3: "rd"}[n % 10] || "th");
}

function render() {
  const item = state.item, k = item ? item.completions.length : 0, rank = ranks();
  const picked = groups.flat().length;
  $("progress").textContent = state.answered + " / " + state.total + " answered";
  $("fill").style.width = (state.total ? 100 * state.answered / state.total : 100) + "%";
  $("work").hidden = !item;
  $("idle").hidden = !!item;
  $("undo").disabled = $("undo-idle").disabled = !state.can_undo;
  if (!item) {
    const done = state.status === "done";
    $("idle-title").textContent = done ? "All prompts are answered. Thank you!" : "Nothing for you right now";
    $("idle-text").textContent = done ? "Every answer is saved; you can close this page."
      : "The prompts left are with other labelers; this page checks again every few seconds.";
    return;
  }
  $("item-id").textContent = "#" + item.id;
  $("prompt").textContent = item.prompt;
  const list = $("completions");
  if (list.dataset.item !== String(item.id)) {
    list.replaceChildren(...item.completions.map((text, i) => {
      const card = document.createElement("button");
      card.className = "completion";
      card.dataset.index = i;
      card.innerHTML = '<span class="key"></span><span class="text"></span><span class="rank"></span>';
      card.querySelector(".key").textContent = i + 1;
      card.querySelector(".text").textContent = text;
      card.addEventListener("click", () => { pick(i); card.blur(); });
      return card;
    }));
    list.dataset.item = item.id;
  }
  list.querySelectorAll(".completion").forEach((card, i) => {
    const tied = groups.some((g) => g.length > 1 && g.includes(i));
    card.classList.toggle("ranked", rank[i] !== undefined);
    card.classList.toggle("best", rank[i] === 1);
    card.querySelector(".rank").textContent = rank[i] === undefined ? "" : (tied ? "tied " : "") + ordinal(rank[i]);
  });
  $("tie").disabled = picked === 0 || picked === k;
  $("tie").setAttribute("aria-pressed", String(tieNext));
  $("clear").disabled = picked === 0;
  $("submit").disabled = picked !== k;
  $("order").innerHTML = picked === 0 ? "Click the best completion first." : "Your order: <b></b>" +
    (picked === k ? " — press Enter to submit." : tieNext ? " — the next pick ties with the last." : "");
  if (picked) $("order").querySelector("b").textContent =
    groups.map((g) => g.map((i) => i + 1).join(" = ")).join("  ›  ");
}

function pick(i) {
  if (!state || !state.item || busy || i >= state.item.completions.length) return;
  const at = groups.findIndex((g) => g.includes(i));
  if (at >= 0) {
    groups[at] = groups[at].filter((j) => j !== i);
    groups = groups.filter((g) => g.length);
  } else if (tieNext && groups.length) {
    groups[groups.length - 1].push(i);
  } else {
    groups.push([i]);
  }
  tieNext = false;
  render();
}

function toggleTie() {
  if (!state || !state.item || $("tie").disabled) return;
  tieNext = !tieNext;
  render();
}

function clearOrder() { groups = []; tieNext = false; if (state && state.item) render(); }

async function submit() {
  if (!state || !state.item || $("submit").disabled) return;
  if (await call("/api/answer", {id: state.item.id, ranking: ranks()})) note("Saved.");
}

async function skip() {
  if (state && state.item && await call("/api/skip", {id: state.item.id})) note("Skipped.");
}

async function undo() {
  if (state && state.can_undo && await call("/api/undo", {})) note("Undone: here it is again.");
}

$("tie").addEventListener("click", toggleTie);
$("clear").addEventListener("click", clearOrder);
$("submit").addEventListener("click", submit);
$("skip").addEventListener("click", skip);
$("undo").addEventListener("click", undo);
$("undo-idle").addEventListener("click", undo);
let named = labeler();
nameField.addEventListener("change", async () => {
  localStorage.setItem("textgym.labeler", nameField.value.trim());
  note("");
  const before = named;
  named = labeler();
  if (before === named) return;
  await fetch("/api/release", {method: "POST", headers: {"Content-Type": "application/json"},
                               body: JSON.stringify({labeler: before})});
  call("/api/state");
});

document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.target === nameField) { if (event.key === "Enter") nameField.blur(); return; }
  const keys = {"=": toggleTie, "Backspace": clearOrder, "Enter": submit, "s": skip, "u": undo};
  if (/^[1-9]$/.test(event.key)) pick(Number(event.key) - 1);
  else if (keys[event.key]) keys[event.key]();
  else return;
  event.preventDefault();
});

call("/api/state");
setInterval(() => { if (state && state.item && !busy) call("/api/state"); }, 60000);  // keeps this item ours
</script>
</body>
</html>
"""
