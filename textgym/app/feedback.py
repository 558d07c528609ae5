"""Collecting preference feedback: a person ranks completions (terminal or web page), or a judge does.

Every source writes the rankings JSONL of :mod:`textgym.data.preferences`, one row per prompt,
appended and flushed to disk as soon as it is given, so Ctrl-C or a crash loses nothing and a rerun
resumes at the first prompt without an answer. The reward-model trainer cannot tell human rows from
judge rows (only the ``source`` field says which).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from textgym.data.loaders import read_jsonl_numbered
from textgym.data.preferences import append_row, check_ranking, check_ranking_row, drop_last_row, read_rankings
from textgym.models import model_device, quiet_transformers
from textgym.rewards.base import Reward, RewardFunction, score_terms

HELP = 'rank best to worst ("2 1 3"; ties: "2 1=3"), s = skip, u = undo, q = quit'


@dataclass(frozen=True)
class Item:
    """One prompt and the completions to rank."""

    id: int
    prompt: str
    completions: list[str]


def items_from_file(path: str | Path) -> list[Item]:
    """Items from a JSONL file of ``{"prompt", "completions"}`` rows (ids are row numbers unless given).

    Each row is checked as the rankings file will be read back (:func:`textgym.data.preferences.read_rankings`):
    a non-empty ``prompt`` string, a list of at least 2 non-empty completion strings, and an optional
    whole-number ``id`` that no other row has.

    Raises:
        ValueError: Naming the file and line of the first row that breaks one of these rules.
    """
    items: list[Item] = []
    lines: dict[int, int] = {}  # id -> the line that gave it
    for index, (line, row) in enumerate(read_jsonl_numbered(path)):
        where = f"{path}:{line}"
        try:
            check_ranking_row({"prompt": row.get("prompt"), "completions": row.get("completions"), "skipped": True})
        except ValueError as err:
            raise ValueError(f"{where}: {err} (each row needs a 'prompt' string and a list of >= 2 non-empty "
                             "'completions' strings)") from None
        item_id = row.get("id", index)
        if isinstance(item_id, bool) or not isinstance(item_id, int):
            raise ValueError(f"{where}: 'id' must be a whole number, got {item_id!r}")
        if item_id in lines:
            raise ValueError(f"{where}: id {item_id} is also the id of line {lines[item_id]}: answers name their "
                             "prompt by id, so each row needs its own")
        lines[item_id] = line
        items.append(Item(item_id, row["prompt"], list(row["completions"])))
    return items


def sample_items(
    model, tokenizer, prompts: Sequence[str], k: int, max_new_tokens: int = 32, seed: int = 0,
    skip: set[int] | frozenset[int] = frozenset(),
) -> Iterator[Item]:
    """Sample ``k`` completions per prompt, lazily; item ``i`` always gets the same completions (seeded by i)."""
    for index, prompt in enumerate(prompts):
        if index in skip:
            continue
        torch.manual_seed(seed * 1_000_003 + index)
        ids = tokenizer(prompt, return_tensors="pt")["input_ids"].to(model_device(model))
        with quiet_transformers():  # generate drops the all-ones mask, then warns that it is missing
            out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True,
                                 max_new_tokens=max_new_tokens, min_new_tokens=1, num_return_sequences=k,
                                 pad_token_id=tokenizer.pad_token_id)
        texts = tokenizer.batch_decode(out[:, ids.shape[1]:], skip_special_tokens=True)
        yield Item(index, prompt, [t if t.strip() else "(empty)" for t in texts])


class Answered:
    """The items a rankings file already answers (ranked or skipped): by ``id``, or by prompt and completions.

    Rows written by hand or by another tool may have no ``id``; they still count.
    """

    def __init__(self, rows: Iterable[dict]) -> None:
        rows = list(rows)
        self.ids = {row["id"] for row in rows if "id" in row}
        self.keys = {(row["prompt"], tuple(row["completions"])) for row in rows}

    def __contains__(self, item: Item) -> bool:
        return item.id in self.ids or (item.prompt, tuple(item.completions)) in self.keys

    def __len__(self) -> int:
        return len(self.keys)


def answered(output: str | Path) -> Answered:
    """What ``output`` already answers (nothing if it does not exist)."""
    return Answered(read_rankings(output) if Path(output).exists() else [])


def parse_ranking(text: str, k: int) -> list[int]:
    """Turn typed order ("2 1 3", ties "2 1=3") into ranks per completion.

    Example:
        >>> parse_ranking("2 1 3", 3)
        [2, 1, 3]
        >>> parse_ranking("3 1=2", 3)
        [2, 2, 1]
    """
    groups = [[int(x) for x in group.split("=")] for group in text.split()]
    numbers = [n for group in groups for n in group]
    if sorted(numbers) != list(range(1, k + 1)):
        raise ValueError(f"name each of the completions 1..{k} exactly once")
    ranks = [0] * k
    rank = 1
    for group in groups:
        for n in group:
            ranks[n - 1] = rank
        rank += len(group)
    check_ranking(ranks, k)
    return ranks


def answer_row(item: Item, **fields) -> dict:
    """A rankings row for ``item`` with ``fields`` (``ranking``, ``skipped``, ``source``, ...)."""
    return {"id": item.id, "prompt": item.prompt, "completions": item.completions, **fields}


def label_interactive(items: Iterable[Item], output: str | Path, ask: Callable[[str], str] = input,
                      show: Callable[[str], None] = print) -> int:
    """Ask a person to rank each item; returns how many rows were written.

    Undo removes the last written row and asks about that item again.
    """
    pending = list(items)
    written: list[Item] = []
    position = 0
    while position < len(pending):
        item = pending[position]
        show(f"\n[{position + 1}/{len(pending)}] prompt:\n{item.prompt}")
        for number, completion in enumerate(item.completions, start=1):
            show(f"  {number}) {completion.strip()}")
        try:
            answer = ask(f"{HELP}\n> ").strip().lower()
        except EOFError:
            answer = "q"
        if answer == "q":
            break
        if answer == "u":
            if not written:
                show("nothing to undo")
                continue
            drop_last_row(output)
            position = pending.index(written.pop())
            show("undone")
            continue
        if answer == "s":
            append_row(output, answer_row(item, ranking=None, skipped=True, source="human"))
        else:
            try:
                ranks = parse_ranking(answer, len(item.completions))
            except ValueError as err:
                show(f"could not read {answer!r}: {err}")
                continue
            append_row(output, answer_row(item, ranking=ranks, source="human"))
        written.append(item)
        position += 1
    show(f"{len(written)} answers saved to {output}")
    return len(written)


def ranks_from_scores(scores: np.ndarray) -> list[int]:
    """Competition ranks: 1 + how many scores are strictly higher (equal scores tie).

    >>> ranks_from_scores(np.array([0.2, 0.9, 0.2]))
    [2, 1, 2]
    """
    return [1 + int((scores > s).sum()) for s in scores]


class Principle(Reward):
    """A judge under a name: one principle of a constitution (e.g. ``harmless`` scored by a toxicity classifier)."""

    def __init__(self, name: str, judge: RewardFunction) -> None:
        self.name, self.judge = name, judge

    def score(self, prompts: list[str], completions: list[str]) -> np.ndarray:
        """The judge's scores."""
        return self.judge(prompts, completions)


def label_with_judge(items: Iterable[Item], output: str | Path, judge: RewardFunction,
                     show: Callable[[str], None] = print) -> int:
    """Rank each item's completions by a judge (RLAIF); returns how many rows were written.

    ``judge`` may be any reward function; a ``WeightedSum`` of :class:`Principle` s scores each
    completion under every principle and ranks by the weighted total. Each row keeps every term's
    scores under ``"scores"``.
    """
    count = 0
    for item in items:
        prompts = [item.prompt] * len(item.completions)
        scores, terms = score_terms(judge, prompts, item.completions, warn_dead=False)  # equal scores: a tie
        append_row(output, answer_row(item, ranking=ranks_from_scores(scores), source=f"ai:{judge.name}",
                                scores={name: [round(float(v), 6) for v in values] for name, values in terms.items()}))
        count += 1
    show(f"{count} rankings by {judge.name} saved to {output}")
    return count


def label_simulated(items: Iterable[Item], output: str | Path, utility: Callable[[list[str], list[str]], Any],
                    noise: float = 0.0, seed: int = 0, show: Callable[[str], None] = print,
                    correct: Callable[[str, str], str | None] | None = None) -> int:
    """Rank each item as a simulated labeler would: by a hidden utility, plus Gaussian noise; returns rows written.

    Each completion's utility gets noise of standard deviation ``noise`` (in the utility's units; 0: a
    perfect labeler) before ranking, drawn from a generator seeded by ``(seed, item id)``, so a rerun
    ranks an item the same way. Rows keep the noiseless utilities under ``"utility"``. With ``correct``
    (a task's :attr:`~textgym.tasks.Task.correct`), the labeler also edits each completion it can fix:
    an edit the utility values above the original is kept under ``"corrections"``.
    """
    count = 0
    for item in items:
        values = np.asarray(utility([item.prompt] * len(item.completions), item.completions), dtype=float)
        noisy = values + np.random.default_rng([seed, item.id]).normal(0.0, noise, len(values)) if noise else values
        fields: dict[str, Any] = {"utility": [round(float(v), 6) for v in values]}
        if correct is not None:
            edits = {i: edited for i, text in enumerate(item.completions) if (edited := correct(item.prompt, text))}
            better = utility([item.prompt] * len(edits), list(edits.values())) if edits else []
            fields["corrections"] = [{"index": i, "completion": edited} for (i, edited), value
                                     in zip(edits.items(), better, strict=True) if value > values[i]]
        append_row(output, answer_row(item, ranking=ranks_from_scores(noisy), source="simulated", **fields))
        count += 1
    show(f"{count} simulated rankings saved to {output}")
    return count

