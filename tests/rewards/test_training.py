"""Reward-model training from pairs; TRL's RewardTrainer layout is interchangeable with ours."""

from __future__ import annotations

import json

import numpy as np
import pytest

from textgym.data import synthetic
from textgym.data.preferences import rankings_to_pairs
from textgym.rewards import RewardModel, score_batch
from textgym.rewards.classifier import POOLINGS
from textgym.rewards.training import RewardTrainingConfig, pair_texts, train_reward_model


@pytest.fixture(scope="module")
def pairs():
    """Provide shuffled train and test preference pairs from the synthetic dialogue rankings."""
    data = synthetic.dialogues(n=800, seed=5)
    return rankings_to_pairs(data["train"]).shuffle(seed=0), rankings_to_pairs(data["test"])


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.slow
def test_training_raises_held_out_pairwise_accuracy(pairs, tmp_path, pooling):
    """Training lifts held-out accuracy to 85% and lowers the loss; the saved model scores as it was trained."""
    train, test = pairs
    cfg = RewardTrainingConfig(output_dir=str(tmp_path / "rm"), epochs=1, batch_size=16, pooling=pooling)
    metrics = train_reward_model(train.select(range(480)), test.select(range(200)), cfg)
    assert metrics["after"]["accuracy"] >= 0.85 > metrics["before"]["accuracy"]
    assert metrics["after"]["loss"] < metrics["before"]["loss"]
    saved = json.loads((tmp_path / "rm" / "reward_metrics.json").read_text())
    assert saved["after"] == metrics["after"]
    reward = RewardModel(str(tmp_path / "rm"))
    assert reward.pooling == pooling
    rows = test.select(range(200))
    chosen = score_batch(reward, rows["prompt"], rows["chosen"])
    rejected = score_batch(reward, rows["prompt"], rows["rejected"])
    assert (chosen > rejected).mean() == pytest.approx(metrics["after"]["accuracy"], abs=0.01)


def test_an_answer_sum_reward_adds_up_the_answers_tokens(pairs, tmp_path):
    """An answer-sum reward sums the per-token head over the answer: 0 for an empty one, the same in any batch."""
    import torch

    train, test = pairs
    cfg = RewardTrainingConfig(output_dir=str(tmp_path / "rm"), batch_size=16, pooling="answer-sum")
    train_reward_model(train.select(range(64)), test.select(range(16)), cfg)
    reward = RewardModel(str(tmp_path / "rm"))
    prompt, answers = test[0]["prompt"], [test[0]["chosen"], test[0]["rejected"], " Sure."]
    together = score_batch(reward, [prompt] * 3, answers)
    alone = [score_batch(reward, [prompt], [a])[0] for a in answers]
    np.testing.assert_allclose(together, alone, rtol=1e-4, atol=1e-5)
    assert score_batch(reward, [prompt], [""])[0] == 0.0
    start = len(reward.tokenizer(prompt)["input_ids"])
    ids = reward.tokenizer(prompt + answers[0], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        per_token = reward.model.score(reward.model.base_model(ids).last_hidden_state)[0, :, 0]
    assert together[0] == pytest.approx(per_token[start:].sum().item(), rel=1e-4)


def test_an_unknown_pooling_is_refused_before_training(pairs, tmp_path):
    """A pooling textgym cannot read back is refused, naming the choices, and nothing is written."""
    train, test = pairs
    with pytest.raises(ValueError, match="pooling must be one of"):
        train_reward_model(train, test, RewardTrainingConfig(output_dir=str(tmp_path / "rm"), pooling="mean"))
    assert not (tmp_path / "rm").exists()


@pytest.mark.parametrize(("disable", "expected"), [(True, 0.0), (False, 0.1)])
def test_a_reward_model_trains_without_dropout_unless_asked(pairs, tmp_path, monkeypatch, disable, expected):
    """Training forwards run with dropout 0 by default, as TRL's RewardTrainer does; the kit LM's 0.1 on request."""
    import torch

    from textgym.rewards import training

    seen, real = [], training._PairwiseTrainer.compute_loss

    def spy(self, model, inputs, *args, **kwargs):
        seen.append((model.training, max(m.p for m in model.modules() if isinstance(m, torch.nn.Dropout))))
        return real(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(training._PairwiseTrainer, "compute_loss", spy)
    train, test = pairs
    cfg = RewardTrainingConfig(output_dir=str(tmp_path / "rm"), batch_size=16, disable_dropout=disable)
    train_reward_model(train.select(range(32)), test.select(range(16)), cfg)
    assert seen == [(True, expected)] * 2


def test_pair_texts_keep_hh_transcripts_whole():
    """A completion that is a whole HH transcript is kept as is; a bare answer is appended to the prompt."""
    row = {"prompt": "\n\nHuman: hi\n\nAssistant:", "chosen": "\n\nHuman: hi\n\nAssistant: hello", "rejected": " go"}
    assert pair_texts(row) == ("\n\nHuman: hi\n\nAssistant: hello", "\n\nHuman: hi\n\nAssistant: go")


def test_bad_pairs_are_rejected(pairs, tmp_path):
    """Pairs without a ``chosen`` column are refused, naming the missing column."""
    train, test = pairs
    with pytest.raises(ValueError, match="missing: \\['chosen'\\]"):
        train_reward_model(train.remove_columns("chosen"), test, RewardTrainingConfig(output_dir=str(tmp_path)))


def test_a_trl_reward_trainer_model_scores_as_a_textgym_reward(pairs, tmp_path):
    """A model saved by TRL's RewardTrainer loads as a RewardModel and gives finite scores."""
    trl = pytest.importorskip("trl")
    from transformers import AutoModelForSequenceClassification

    from textgym.models import load_tokenizer, resolve

    tokenizer = load_tokenizer("textgym/tiny-lm")
    model = AutoModelForSequenceClassification.from_pretrained(resolve("textgym/tiny-lm"), num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id
    train = pairs[0].select(range(64))
    rows = [{"chosen": c, "rejected": r} for c, r in map(pair_texts, train)]
    config = trl.RewardConfig(output_dir=str(tmp_path / "trl"), max_steps=4, per_device_train_batch_size=8,
                              use_cpu=True, bf16=False, report_to=[], save_strategy="no", logging_steps=2)
    import datasets

    trainer = trl.RewardTrainer(model=model, args=config, train_dataset=datasets.Dataset.from_list(rows),
                                processing_class=tokenizer)
    trainer.train()
    trainer.save_model(str(tmp_path / "trl"))
    reward = RewardModel(str(tmp_path / "trl"))
    scores = reward(["\n\nHuman: hi\n\nAssistant:"] * 2, [" hello there", " go away"])
    assert scores.shape == (2,) and np.isfinite(scores).all()
