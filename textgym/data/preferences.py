"""Preference data: rankings of K completions, and the pairwise comparisons they imply.

Two JSONL formats, one object per line:

- rankings: ``{"prompt": str, "completions": [str, ...], "ranking": [int, ...]}`` where
  ``ranking[i]`` is the rank of ``completions[i]``: 1 is best, tied completions share a rank. A row
  with ``"skipped": true`` (and ``"ranking": null``) records a prompt a labeller passed over.
  A row may also hold ``"corrections": [{"index": i, "completion": str}, ...]``: a labeller's edit of
  ``completions[i]``, preferred to it.
- pairs: ``{"prompt": str, "chosen": str, "rejected": str}``, answers without the prompt.

A ranking of K completions yields every pair whose ranks differ, preferred first: K(K-1)/2 pairs
when there are no ties (as in InstructGPT: the labeller ranks, the reward model learns from pairs),
and each correction one more: the edited answer over the one it edits.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from itertools import combinations
from pathlib import Path

import datasets

from textgym.data.loaders import read_jsonl_numbered


def check_ranking(ranking: object, k: int) -> None:
    """Raise ``ValueError`` unless ``ranking`` gives each of ``k`` completions a rank in 1..k.

    Without ties the ranks are a permutation of 1..k; with ties, tied completions share a rank.
    """
    if not isinstance(ranking, list | tuple) or len(ranking) != k:
        raise ValueError(f"ranking {ranking!r} must list one rank for each of the {k} completions")
    if any(isinstance(r, bool) or not isinstance(r, int) or not 1 <= r <= k for r in ranking):
        raise ValueError(f"ranking {ranking!r} must hold integer ranks from 1 (best) to {k}")
    if 1 not in ranking:
        raise ValueError(f"ranking {ranking!r} has no rank 1: the best completion must be ranked 1")


def ranking_to_pairs(prompt: str, completions: Sequence[str], ranking: Sequence[int]) -> list[dict[str, str]]:
    """Every (better, worse) pair of a ranking; tied completions give no pair.

    Example:
        >>> pairs = ranking_to_pairs("p", ["a", "b", "c"], [2, 1, 3])
        >>> [(x["chosen"], x["rejected"]) for x in pairs]
        [('b', 'a'), ('a', 'c'), ('b', 'c')]
        >>> len(ranking_to_pairs("p", ["a", "b", "c"], [1, 1, 2]))
        2
    """
    check_ranking(list(ranking), len(completions))
    pairs = []
    for i, j in combinations(range(len(completions)), 2):
        if ranking[i] == ranking[j]:
            continue
        better, worse = (i, j) if ranking[i] < ranking[j] else (j, i)
        pairs.append({"prompt": prompt, "chosen": completions[better], "rejected": completions[worse]})
    return pairs


def _check_text(value: object, what: str) -> None:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{what} is empty")


def check_ranking_row(row: dict) -> None:
    """Raise ``ValueError`` for a rankings row that is not in the format above."""
    _check_text(row.get("prompt"), "'prompt'")
    completions = row.get("completions")
    if not isinstance(completions, list) or len(completions) < 2:
        raise ValueError("'completions' must be a list of at least 2 answers")
    for i, text in enumerate(completions):
        _check_text(text, f"completion {i + 1}")
    if row.get("skipped"):
        return
    check_ranking(row.get("ranking"), len(completions))
    corrections = row.get("corrections", [])
    if not isinstance(corrections, list):
        raise ValueError("'corrections' must be a list of {\"index\": i, \"completion\": edited answer}")
    for correction in corrections:
        index = correction.get("index") if isinstance(correction, dict) else None
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(completions):
            raise ValueError(f"correction {correction!r} must name the index (0 to {len(completions) - 1}) of the "
                             "completion it edits")
        _check_text(correction.get("completion"), f"the correction of completion {index + 1}")


def check_pair_row(row: dict) -> None:
    """Raise ``ValueError`` for a pairs row that is not in the format above."""
    for key in ("prompt", "chosen", "rejected"):
        _check_text(row.get(key), repr(key))


def _read_checked(path: str | Path, check) -> list[dict]:
    rows = []
    for number, row in read_jsonl_numbered(path):
        try:
            check(row)
        except ValueError as err:
            raise ValueError(f"{path}:{number}: {err}") from None
        rows.append(row)
    return rows


def read_rankings(path: str | Path) -> list[dict]:
    """Read and check a rankings JSONL file (errors name the file and line)."""
    return _read_checked(path, check_ranking_row)


def read_pairs(path: str | Path) -> list[dict]:
    """Read and check a pairs JSONL file (errors name the file and line)."""
    return _read_checked(path, check_pair_row)


def correction_pairs(row: dict) -> list[dict[str, str]]:
    """A rankings row's corrections as pairs: each edited answer over the completion it edits.

    >>> correction_pairs({"prompt": "p", "completions": ["a x", "b"], "ranking": [2, 1],
    ...                   "corrections": [{"index": 0, "completion": "a"}]})
    [{'prompt': 'p', 'chosen': 'a', 'rejected': 'a x'}]
    """
    return [{"prompt": row["prompt"], "chosen": c["completion"], "rejected": row["completions"][c["index"]]}
            for c in row.get("corrections", [])]


def rankings_to_pairs(rows: Iterable[dict]) -> datasets.Dataset:
    """All pairs of all ranked (not skipped) rows and their corrections, as a Dataset with prompt/chosen/rejected."""
    pairs = [p for row in rows if not row.get("skipped") for p in
             ranking_to_pairs(row["prompt"], row["completions"], row["ranking"]) + correction_pairs(row)]
    return datasets.Dataset.from_list(pairs) if pairs else datasets.Dataset.from_dict(
        {"prompt": [], "chosen": [], "rejected": []})


def load_preferences(path: str | Path) -> datasets.Dataset:
    """A pairs Dataset from either JSONL format (detected from the first row)."""
    first = next((row for _, row in read_jsonl_numbered(path)), None)
    if first is None:
        raise ValueError(f"{path} holds no rows")
    if "ranking" in first or "completions" in first:
        return rankings_to_pairs(read_rankings(path))
    return datasets.Dataset.from_list([{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in read_pairs(path)])


def append_row(path: str | Path, row: dict) -> None:
    """Append one JSON line and force it to disk, so a crash right after loses nothing."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def drop_last_row(path: str | Path) -> dict | None:
    """Remove the last row of a JSONL file atomically; returns it (None if the file is empty)."""
    path = Path(path)
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()] if path.exists() else []
    if not lines:
        return None
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(line + "\n" for line in lines[:-1]), encoding="utf-8")
    os.replace(tmp, path)
    return json.loads(lines[-1])
