"""textgym rewards inside TRL's trainers: called the way TRL calls them, they score and return what TRL expects."""

from __future__ import annotations

import datasets
import numpy as np
import pytest

from textgym.models.tiny import random_causal_lm, word_tokenizer
from textgym.rewards import KeywordReward, WeightedSum, score_batch, score_terms
from textgym.rewards.rules import LengthReward


def test_called_the_way_trl_calls_reward_functions():
    """Called with TRL's keyword arguments and extra columns, or with chat messages, a reward scores the text."""
    reward = KeywordReward(["good"])
    scores = reward(prompts=["p", "q"], completions=["good good", "bad"], completion_ids=[[1, 1], [2]],
                    trainer_state=None, topic=["a", "b"])
    assert scores.tolist() == [2.0, 0.0]
    assert reward.__name__ == "keyword[good]"
    chat = reward(prompts=[[{"role": "user", "content": "good?"}]],
                  completions=[[{"role": "assistant", "content": "good, very good"}]])
    assert chat.tolist() == [2.0]  # conversations are scored as text


def test_grpo_trainer_trains_two_steps_on_a_textgym_reward(tmp_path):
    """TRL's GRPOTrainer trains two steps on a textgym reward and logs finite rewards under its name."""
    trl = pytest.importorskip("trl")
    words = [f"w{i}" for i in range(1, 32)]
    tokenizer = word_tokenizer(words)
    random_causal_lm(len(tokenizer), 1, 16, n_positions=64).save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    args = trl.GRPOConfig(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, num_generations=4,
                          max_completion_length=4, max_steps=2, use_cpu=True, bf16=False, report_to=[],
                          save_strategy="no", logging_steps=1, seed=0)
    trainer = trl.GRPOTrainer(model=str(tmp_path / "model"), reward_funcs=[KeywordReward(["w3"])], args=args,
                              train_dataset=datasets.Dataset.from_dict({"prompt": ["w1 w2", "w4"] * 4}))
    trainer.train()
    logged = [row for row in trainer.state.log_history if "reward" in row]
    assert len(logged) == 2 and all(np.isfinite(row["reward"]) for row in logged)
    assert any(key.startswith("rewards/keyword[w3]") for key in logged[0])


class Counting(LengthReward):
    """A length reward that counts how often it scores a batch."""
    calls = 0

    def score(self, prompts, completions):
        """Count the call, then score as the length reward does."""
        Counting.calls += 1
        return super().score(prompts, completions)


def test_a_weighted_sum_is_scored_once_per_batch():
    """A weighted sum calls each term once per batch, and its terms add up to its scores."""
    combo = WeightedSum({Counting(2): 1.0, KeywordReward(["a"]): 0.5})
    scores, terms = score_terms(combo, ["p", "p"], ["a b", "a b c"])
    assert Counting.calls == 1
    assert scores.tolist() == [0.5, -0.5] and sum(terms.values()).tolist() == scores.tolist()


class Wordy:
    """A reward that wrongly returns text instead of numbers."""
    name = "wordy"

    def __call__(self, prompts, completions):
        """Return the word "high" for every completion."""
        return ["high"] * len(completions)


def test_a_reward_returning_text_is_an_error_naming_it():
    """A reward that returns text is a TypeError naming the reward and what it returned."""
    with pytest.raises(TypeError, match=r"reward 'wordy' returned \['high'\], not numbers"):
        score_batch(Wordy(), ["p"], ["c"])
