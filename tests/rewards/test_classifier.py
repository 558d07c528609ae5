"""ClassifierReward on the embedded classifiers."""

from __future__ import annotations

import numpy as np
import pytest

from textgym.data import synthetic
from textgym.rewards import ClassifierReward, RewardFunction, score_batch


def test_sentiment_logit_separates_held_out_reviews():
    """The positive logit separates held-out reviews: its sign matches the label for at least 95%."""
    test = synthetic.reviews()["test"].select(range(200))
    reward = ClassifierReward("textgym/sentiment-classifier", label="positive")
    assert isinstance(reward, RewardFunction) and reward.name == "classifier[positive]"
    scores = score_batch(reward, [""] * len(test), test["text"])
    labels = np.array(test["label"])
    assert scores[labels == 1].min() > np.median(scores[labels == 0])
    assert ((scores > 0) == (labels == 1)).mean() >= 0.95


def test_prompt_plus_completion_and_probability():
    """Scoring prompt + completion as a probability puts the helpful answer above 0.5, the dismissive below."""
    reward = ClassifierReward("textgym/helpfulness-classifier", label="helpful", output="probability",
                              text="prompt+completion")  # trained on question + answer
    row = synthetic.dialogues()["test"][0]
    helpful, dismissive = (row["completions"][row["ranking"].index(rank)] for rank in (1, 4))
    scores = reward([row["prompt"]] * 2, [helpful, dismissive])
    assert 0 <= scores[1] < 0.5 < scores[0] <= 1


def test_empty_completion_is_scored():
    """An empty completion gets a finite score."""
    reward = ClassifierReward("textgym/sentiment-classifier", label="positive")
    assert np.isfinite(reward(["x"], [""])).all()


def test_unknown_label_lists_the_labels():
    """An unknown label is refused with the classifier's labels."""
    with pytest.raises(ValueError, match=r"no label 'happy'; its labels are \['negative', 'positive'\]"):
        ClassifierReward("textgym/sentiment-classifier", label="happy")


@pytest.fixture(scope="module")
def word_reward_model():
    """A random one-layer GPT-2 reward model on the offline word tokenizer (a fast tokenizer, pad == EOS == 0)."""
    import torch
    from transformers import GPT2Config, GPT2ForSequenceClassification

    from textgym.models.tiny import word_tokenizer

    tokenizer = word_tokenizer([f"w{i}" for i in range(1, 12)])
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_layer=1, n_embd=16, n_head=2, n_positions=32, num_labels=1,
                        pad_token_id=0)
    return GPT2ForSequenceClassification(config).eval(), tokenizer


@pytest.mark.parametrize("pooling", ["last", "answer-sum"])
def test_a_reward_models_parts_sum_to_its_score_and_end_where_their_tokens_end(word_reward_model, pooling):
    """One part per answer token, at the character where the token ends; the parts add up to the score."""
    from textgym.rewards import RewardModel

    model, tokenizer = word_reward_model
    model.config.reward_pooling = pooling
    reward = RewardModel(model, tokenizer, batch_size=2)  # two batches, one of them ragged
    prompts, completions = ["w1 w2"] * 3, [" w3 w4 w5", " w6", ""]
    parts = reward.parts(prompts, completions)
    scores = reward(prompts, completions)
    np.testing.assert_allclose([values.sum() for _, values in parts], scores, rtol=1e-5, atol=1e-6)
    assert [ends.tolist() for ends, _ in parts[:2]] == [[3, 6, 9], [3]]
    assert len(parts[2][0]) == (0 if pooling == "answer-sum" else 1)  # the last token's score needs a place
    if pooling == "last":  # a potential-based shaping: the parts so far are the score of the answer so far
        so_far = reward(["w1 w2"] * 3, [" w3", " w3 w4", " w3 w4 w5"])
        np.testing.assert_allclose(np.cumsum(parts[0][1]), so_far, rtol=1e-5, atol=1e-6)


def test_parts_need_a_fast_tokenizer(word_reward_model):
    """Parts need each token's characters: a tokenizer without offsets is refused with what to do."""
    from textgym.rewards import RewardModel

    model, tokenizer = word_reward_model

    class Slow:
        is_fast = False

    reward = RewardModel(model, tokenizer)
    reward.tokenizer = Slow()
    with pytest.raises(ValueError, match="fast tokenizer"):
        reward.parts(["w1"], [" w2"])
