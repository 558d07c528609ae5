"""The reward library: each reward scores what it says, and bad input is a clear error."""

from __future__ import annotations

import numpy as np
import pytest

from textgym.rewards import (
    BleuReward,
    DistinctN,
    LexiconSentiment,
    RepetitionPenalty,
    RewardFunction,
    RewardModel,
    RougeReward,
    WeightedSum,
    score_batch,
    score_terms,
)
from textgym.rewards.named import make_reward
from textgym.rewards.rules import KeywordReward, LengthReward


def test_lexicon_sentiment_is_an_independent_judge():
    """The lexicon judge scores praise above 0.5, neutral text near 0 and complaints below -0.5."""
    judge = LexiconSentiment()
    assert isinstance(judge, RewardFunction)
    scores = judge(["", "", ""], ["I loved it, superb and delightful.", "It was a table.", "Dreadful, I hated it."])
    assert scores[0] > 0.5 and abs(scores[1]) < 0.1 and scores[2] < -0.5


def test_rouge_and_bleu_against_references():
    """ROUGE and BLEU score against each prompt's references; an unknown prompt or no references raise."""
    refs = {"q1": ["close the blinds during the day", "run a fan"], "q2": "rinse the rice"}
    rouge = RougeReward(refs, variant="rouge1")
    scores = rouge(["q1", "q1", "q2"], ["close the blinds during the day", "buy boats", "rinse rice"])
    assert scores[0] == 1.0 and scores[1] == 0.0 and 0.5 < scores[2] < 1
    bleu = BleuReward(refs)
    assert bleu(["q1"], ["close the blinds during the day"])[0] == pytest.approx(1.0)
    with pytest.raises(KeyError, match="no reference text for the prompt 'q3'"):
        rouge(["q3"], ["x"])
    with pytest.raises(ValueError, match="references is empty"):
        BleuReward({})


def test_repetition_and_distinct():
    """The repetition penalty is minus the share of repeated n-grams; distinct-n is the share of unique ones."""
    assert RepetitionPenalty(n=2)(["p"], ["a b a b a b"])[0] == pytest.approx(-(1 - 2 / 5))
    assert DistinctN(n=1)(["p", "p"], ["", "x x y"]).tolist() == [0.0, 2 / 3]


def test_weighted_sum_reports_every_term():
    """A weighted sum reports each weighted term by name and sums them; duplicate names are refused."""
    combo = WeightedSum({KeywordReward(["fun"]): 2.0, LengthReward(1): 1.0})
    scores, terms = score_terms(combo, ["p", "p"], ["fun", "fun fun fun"])
    assert terms == {"keyword[fun]": pytest.approx([2.0, 6.0]), "length[1]": pytest.approx([0.0, -2.0])}
    np.testing.assert_allclose(scores, [2.0, 4.0])
    with pytest.raises(ValueError, match="distinct reward names"):
        WeightedSum({LengthReward(1): 1.0, LengthReward(1): 2.0})


def test_weighted_sum_names_a_nan_term():
    """A term returning a non-finite score is named in the weighted sum's error."""
    class Broken:
        name = "broken"

        def __call__(self, prompts, completions):
            return np.full(len(prompts), np.inf)

    with pytest.raises(ValueError, match="reward 'broken' returned inf"):
        WeightedSum({Broken(): 1.0, LengthReward(1): 1.0})(["p"], ["x"])


def test_empty_batch_and_mismatched_lengths():
    """An empty batch, or unequal numbers of prompts and completions, is refused."""
    with pytest.raises(ValueError, match="was given no completions"):
        score_batch(LengthReward(1), [], [])
    with pytest.raises(ValueError, match="3 prompts but 2 completions"):
        score_batch(LexiconSentiment(), ["a", "b", "c"], ["x", "y"])


def test_reward_model_needs_a_scalar_head():
    """A classifier with two labels is refused as a reward model, pointing to ClassifierReward."""
    with pytest.raises(ValueError, match="num_labels=1.*has 2.*ClassifierReward"):
        RewardModel("textgym/sentiment-classifier")


def test_named_rewards():
    """Reward specs build named rewards; unknown names, bad numbers and incomplete classifier specs are refused."""
    assert make_reward("keyword:great,fun").name == "keyword[great,fun]"
    assert make_reward("distinct:3").name == "distinct[3]"
    assert make_reward("classifier:textgym/toxicity-classifier:polite").name == "classifier[polite]"
    with pytest.raises(ValueError, match="unknown reward 'vibes'; known rewards: lexicon-sentiment, classifier:..."):
        make_reward("vibes")
    with pytest.raises(ValueError, match="whole number"):
        make_reward("length:many")
    with pytest.raises(ValueError, match="classifier:MODEL:LABEL"):
        make_reward("classifier:textgym/toxicity-classifier")
