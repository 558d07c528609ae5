"""Write the synthetic tasks in the formats of the real datasets the loaders read.

These files let the loaders of :mod:`textgym.data.loaders` run offline on data in exactly the
shape they meet online, and let users inspect or edit the synthetic tasks as plain JSONL.
"""

from __future__ import annotations

from pathlib import Path

from textgym.data import synthetic
from textgym.data.loaders import write_jsonl


def write_hh_rlhf(folder: str | Path, n: int = 200, seed: int = 0) -> Path:
    """hh-rlhf layout: ``{split}.jsonl`` with ``chosen`` and ``rejected`` transcripts."""
    data = synthetic.dialogues(n=n, seed=seed)
    for split in ("train", "test"):
        write_jsonl(Path(folder) / f"{split}.jsonl",
                    ({"chosen": r["chosen"], "rejected": r["rejected"]} for r in data[split]))
    return Path(folder)


def write_imdb(folder: str | Path, n: int = 200, seed: int = 0) -> Path:
    """IMDB layout: ``{split}.jsonl`` with ``text`` and ``label`` (1 positive)."""
    data = synthetic.reviews(n=n, seed=seed)
    for split in ("train", "test"):
        write_jsonl(Path(folder) / f"{split}.jsonl", ({"text": r["text"], "label": r["label"]} for r in data[split]))
    return Path(folder)


def write_ultrafeedback(folder: str | Path, n: int = 200, seed: int = 0) -> Path:
    """ultrafeedback_binarized layout: ``train_prefs.jsonl`` / ``test_prefs.jsonl`` with message lists."""
    data = synthetic.dialogues(n=n, seed=seed)
    for split, name in (("train", "train_prefs"), ("test", "test_prefs")):
        rows = []
        for r in data[split]:
            user = {"role": "user", "content": r["question"]}
            answer = {name: r[name][len(r["prompt"]):].strip() for name in ("chosen", "rejected")}
            rows.append({"prompt": r["question"],
                         "chosen": [user, {"role": "assistant", "content": answer["chosen"]}],
                         "rejected": [user, {"role": "assistant", "content": answer["rejected"]}],
                         "score_chosen": 9.0, "score_rejected": 3.0})
        write_jsonl(Path(folder) / f"{name}.jsonl", rows)
    return Path(folder)
