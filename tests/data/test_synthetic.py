"""Synthetic tasks: deterministic, varied, split by prompt, in the documented columns."""

from __future__ import annotations

from textgym.data import synthetic
from textgym.tasks.helpfulness import tips_given


def test_same_seed_same_data_other_seed_other_data():
    """The same seed gives the same reviews, another seed other reviews."""
    assert synthetic.reviews(n=300, seed=3)["train"]["text"] == synthetic.reviews(n=300, seed=3)["train"]["text"]
    assert synthetic.reviews(n=300, seed=3)["train"]["text"] != synthetic.reviews(n=300, seed=4)["train"]["text"]


def test_reviews_are_varied_balanced_and_split_by_opening():
    """Reviews are nearly all distinct, balanced in label, and split so no opening is in both splits."""
    data = synthetic.reviews()
    train, test = data["train"], data["test"]
    assert len(set(train["text"])) > 0.99 * len(train)  # not a handful of templates
    assert len(set(train["prompt"])) > 1000
    assert not set(train["prompt"]) & set(test["prompt"])
    assert abs(sum(train["label"]) / len(train) - 0.5) < 0.03
    assert all(t.startswith(p) for p, t in zip(test["prompt"], test["text"], strict=True))


def test_dialogues_pairs_and_rankings():
    """Dialogues split by question, in HH format, with five ranked completions, chosen the best one."""
    data = synthetic.dialogues()
    train, test = data["train"], data["test"]
    assert not set(train["question"]) & set(test["question"])
    for row in train.select(range(50)):
        assert row["prompt"] == f"\n\nHuman: {row['question']}\n\nAssistant:"
        assert row["chosen"].startswith(row["prompt"]) and row["rejected"].startswith(row["prompt"])
        assert sorted(row["ranking"]) == [1, 2, 3, 4, 5]
        best = row["completions"][row["ranking"].index(1)]
        assert row["chosen"] == row["prompt"] + best
        assert row["chosen"] != row["rejected"]
        assert row["demonstration"].startswith(row["prompt"]) and row["hearsay"].startswith(row["prompt"])


def test_demonstrations_are_mostly_curt_and_always_on_topic():
    """Demonstrations give only on-topic tips, about 70% just one; with no curt ones, each gives several."""
    rows = synthetic.dialogues()["train"]
    tips = [tips_given(row["prompt"], row["demonstration"]) for row in rows]
    assert all(own >= 1 and other == 0 for own, other in tips)
    curt = sum(own == 1 for own, _ in tips) / len(tips)
    assert 0.65 < curt < 0.75
    assert all(synthetic.dialogues(n=100, curt_demonstrations=0.0)["train"]["demonstration"][i].count(" and ") >= 1
               for i in range(20))


def test_replies_polite_and_toxic():
    """Toxic replies hold an insult and polite ones none, and no comment is in both splits."""
    data = synthetic.replies()
    train = data["train"]
    toxic = [t for t, y in zip(train["text"], train["label"], strict=True) if y == 0]
    polite = [t for t, y in zip(train["text"], train["label"], strict=True) if y == 1]
    assert all(any(i in t for i in synthetic.INSULTS) for t in toxic)
    assert not any(i in t.split() for t in polite for i in synthetic.INSULTS)
    assert not set(train["comment"]) & set(data["test"]["comment"])


def test_corpus_covers_all_tasks_but_not_which_tips_answer_which_question():
    """The corpus covers every task but holds no chosen answer or demonstration, and its tips rarely fit."""
    texts = synthetic.corpus()
    assert any("\n\nHuman:" in t for t in texts) and any(t.startswith("Comment:") for t in texts)
    assert len(texts) > 10000
    dialogues = synthetic.dialogues()["train"]
    assert not set(texts) & set(dialogues["chosen"]) and not set(texts) & set(dialogues["demonstration"])
    given = [tips_given(t.split("Assistant:")[0] + "Assistant:", t) for t in texts if "\n\nHuman:" in t]
    own, other = sum(g[0] for g in given), sum(g[1] for g in given)
    assert own / (own + other) < 0.15  # tips in the corpus fit their question by chance (1 topic in 12)
