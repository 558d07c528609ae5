"""Loaders for real preference and prompt datasets, by hub name or local path.

Online users pass a hub name (``Anthropic/hh-rlhf``, ``stanfordnlp/imdb``,
``HuggingFaceH4/ultrafeedback_binarized``), which goes to ``datasets.load_dataset``. A local JSONL
file, or a folder holding ``{split}.jsonl``, is read here line by line so that a malformed line is
reported with its file and line number. :mod:`textgym.data.export` writes the synthetic tasks in
the same formats, which is how these loaders are tested offline.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import datasets


def read_jsonl_numbered(path: str | Path) -> list[tuple[int, dict]]:
    """(line number, object) for each non-blank line of a JSON Lines file.

    Raises:
        ValueError: For a line that is not a JSON object, naming the file and the line number.
    """
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{number}: not valid JSON ({err.msg} at column {err.colno})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
            rows.append((number, row))
    return rows


def read_jsonl(path: str | Path) -> list[dict]:
    """Read a JSON Lines file: one JSON object per line; blank lines are skipped.

    Raises:
        ValueError: For a line that is not a JSON object, naming the file and the line number.
    """
    return [row for _, row in read_jsonl_numbered(path)]


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> Path:
    """Write ``rows`` as JSON Lines (UTF-8); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def load_rows(name_or_path: str | Path, split: str, required: Iterable[str]) -> datasets.Dataset:
    """One split of a dataset from a local JSONL file or folder, or from the hub, with column checks.

    Args:
        name_or_path: A ``.jsonl`` file, a folder with ``{split}.jsonl``, or a hub dataset name.
        split: The split to load (also the file name inside a folder).
        required: Columns the caller needs.

    Raises:
        FileNotFoundError: A local-looking path that does not exist, or a folder without the split.
        ValueError: A malformed line (file and line named) or missing columns (found ones listed).
    """
    name = str(name_or_path)
    path = Path(name).expanduser()
    if path.is_dir():
        path = path / f"{split}.jsonl"
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist: the folder {name_or_path} has no {split!r} split")
    if path.is_file():
        rows = read_jsonl(path)
        if not rows:
            raise ValueError(f"{path} holds no rows")
        data = datasets.Dataset.from_list(rows)
    elif name.startswith((".", "/", "~")) or name.endswith((".jsonl", ".json")):
        raise FileNotFoundError(f"dataset path {name!r} does not exist; pass a JSONL file, a folder of "
                                "{split}.jsonl files, or a hub dataset name")
    else:
        data = datasets.load_dataset(name, split=split)
    missing = [c for c in required if c not in data.column_names]
    if missing:
        raise ValueError(f"{name_or_path} ({split}) lacks the column(s) {missing}; it has {data.column_names}")
    return data


def hh_question(text: str) -> str:
    r"""The first human turn of an hh-rlhf transcript: the text between ``Human:`` and ``Assistant:``.

    >>> hh_question("\n\nHuman: My house is too hot.\n\nAssistant: Open a window.")
    'My house is too hot.'
    """
    start = text.find("Human:")
    end = text.find("Assistant:", start)
    if start < 0 or end < 0:
        raise ValueError(f"not in the hh-rlhf format (no 'Human:' ... 'Assistant:'): {text[:80]!r}")
    return text[start + len("Human:"):end].strip()


def hh_split(chosen: str, rejected: str) -> tuple[str, str, str]:
    r"""An hh-rlhf pair as (prompt, chosen answer, rejected answer), each transcript = prompt + answer.

    The prompt is the conversation both transcripts share, up to the last ``Assistant:`` before they
    differ (multi-turn dialogues keep their earlier turns in the prompt), so no text is in two columns.

    >>> hh_split("\n\nHuman: Hi\n\nAssistant: Hello!", "\n\nHuman: Hi\n\nAssistant: Go away.")
    ('\n\nHuman: Hi\n\nAssistant:', ' Hello!', ' Go away.')
    """
    shared = 0
    for a, b in zip(chosen, rejected, strict=False):
        if a != b:
            break
        shared += 1
    cut = chosen.rfind("Assistant:", 0, shared)
    if cut < 0:
        raise ValueError(f"not in the hh-rlhf format (no shared 'Human:' ... 'Assistant:' before the answers "
                         f"differ): {chosen[:80]!r}")
    end = cut + len("Assistant:")
    return chosen[:end], chosen[end:], rejected[end:]


def _hh_row(row: dict) -> dict:
    prompt, chosen, rejected = hh_split(row["chosen"], row["rejected"])
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected, "question": hh_question(prompt)}


def load_hh_rlhf(name_or_path: str | Path = "Anthropic/hh-rlhf", split: str = "train") -> datasets.Dataset:
    """Anthropic's hh-rlhf as TRL-ready preference rows: ``prompt``, ``chosen``, ``rejected``.

    Returns:
        Columns ``prompt`` (the conversation both transcripts share, up to the ``Assistant:`` the
        answers follow: the text a policy continues), ``chosen`` and ``rejected`` (the two answers,
        without the prompt: ``prompt + chosen`` is the original chosen transcript, which is how TRL's
        ``RewardTrainer`` and ``DPOTrainer`` join them) and ``question`` (the first human turn, cut
        between ``Human:`` and ``Assistant:`` as the tutorials do).
    """
    data = load_rows(name_or_path, split, ["chosen", "rejected"])
    return data.map(_hh_row, remove_columns=data.column_names)


def load_imdb(name_or_path: str | Path = "stanfordnlp/imdb", split: str = "train", opening_words: int = 8,
              ) -> datasets.Dataset:
    """IMDB reviews with their openings as prompts.

    Args:
        name_or_path: Hub name or local path of a dataset with ``text`` and ``label`` columns.
        split: Which split.
        opening_words: Words of each review kept as its prompt.

    Returns:
        Columns ``prompt`` (the opening), ``text`` and ``label`` (1 positive, 0 negative).
    """
    if opening_words < 1:
        raise ValueError(f"opening_words must be >= 1, got {opening_words}")
    data = load_rows(name_or_path, split, ["text", "label"])
    return data.map(lambda row: {"prompt": " ".join(row["text"].replace("<br />", " ").split()[:opening_words])})


def _last_assistant(messages: list[dict] | str) -> str:
    if isinstance(messages, str):
        return messages
    replies = [m["content"] for m in messages if m.get("role") == "assistant"]
    if not replies:
        raise ValueError(f"a conversation has no assistant message: {messages!r:.120}")
    return replies[-1]


def load_preference_pairs(name_or_path: str | Path = "HuggingFaceH4/ultrafeedback_binarized",
                          split: str = "train_prefs") -> datasets.Dataset:
    """Chosen/rejected preference pairs in the ultrafeedback_binarized shape.

    ``chosen`` and ``rejected`` may be message lists (``[{"role", "content"}, ...]``, the last
    assistant message is the answer) or plain strings.

    Returns:
        Columns ``prompt``, ``chosen`` and ``rejected``, all text (answers without the prompt).
    """
    data = load_rows(name_or_path, split, ["prompt", "chosen", "rejected"])
    return data.map(lambda row: {"prompt": row["prompt"], "chosen": _last_assistant(row["chosen"]),
                                 "rejected": _last_assistant(row["rejected"])},
                    remove_columns=data.column_names)
