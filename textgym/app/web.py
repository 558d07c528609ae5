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
development-server warning and without handling HTTP by hand. The page is three files of package data
in ``textgym/app/page/`` (``index.html``, ``style.css`` and vanilla JavaScript in ``script.js``, see
:data:`PAGE_FILES`), read with :mod:`importlib.resources`: it needs no network and no build step.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from importlib import resources
from pathlib import Path
from typing import cast

from flask import Flask, Response, jsonify, request
from waitress import wasyncore
from waitress.server import create_server
from waitress.trigger import trigger

from textgym.app.feedback import Answered, Item, answer_row
from textgym.data.preferences import append_row, check_ranking, read_rankings

LEASE_SECONDS = 600.0

#: The page's files, package data in ``textgym/app/page/``, and the type each is served as.
PAGE_FILES = {"index.html": "text/html", "style.css": "text/css", "script.js": "text/javascript"}


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


def page_file(name: str) -> str:
    """The text of one of the page's files (a key of :data:`PAGE_FILES`), read from the installed package.

    Example:
        >>> page_file("index.html").startswith("<!doctype html>")
        True
    """
    if name not in PAGE_FILES:
        raise ValueError(f"the page has no file {name!r}; its files: {', '.join(PAGE_FILES)}")
    return (resources.files("textgym.app") / "page" / name).read_text(encoding="utf-8")


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

    ``GET /style.css`` and ``GET /script.js`` serve the page's other files (:data:`PAGE_FILES`). POST
    bodies are JSON objects with ``labeler`` (and ``id``, and for an answer ``ranking``). Every API reply
    but release's is ``{"state": ...}`` (see :meth:`LabelQueue.state`); a refused one adds ``"error"``
    with status 400 (a bad ranking), 404 (no such id) or 409 (already answered, nothing to undo); a body
    that is not a JSON object gets only the error, status 400.
    """
    app = Flask(__name__)
    files = {name: page_file(name) for name in PAGE_FILES}  # read once: a served page never mixes versions

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
        return Response(files["index.html"], mimetype=PAGE_FILES["index.html"])

    @app.get('/<any("style.css", "script.js"):name>')
    def page_asset(name: str) -> Response:
        return Response(files[name], mimetype=PAGE_FILES[name])

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

