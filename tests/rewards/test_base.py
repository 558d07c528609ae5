"""score_batch: every reward call is checked for shape, NaN/inf and a dead signal."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from textgym.rewards import DeadRewardWarning, KeywordReward, LengthReward, RewardFunction, score_batch


class Const:
    """A reward that returns the given ``values``, whatever it is asked to score."""

    def __init__(self, values):
        self.values = values
        self.name = "const"

    def __call__(self, prompts, completions):
        """Return the fixed values."""
        return self.values


def test_rule_rewards_are_reward_functions():
    """The keyword and length rewards satisfy the RewardFunction protocol."""
    assert isinstance(KeywordReward(["a"]), RewardFunction)
    assert isinstance(LengthReward(3), RewardFunction)


def test_non_finite_scores_name_reward_and_input():
    """An inf or NaN score is an error naming the reward and the prompt and completion it scored."""
    with pytest.raises(ValueError, match=r"reward 'const' returned inf for prompt 'p2' and completion 'c2'"):
        score_batch(Const(np.array([1.0, np.inf])), ["p1", "p2"], ["c1", "c2"])
    with pytest.raises(ValueError, match="returned nan"):
        score_batch(Const([np.nan]), ["p"], ["c"])


def test_a_reward_that_raises_is_named_with_its_cause():
    """An exception inside a reward (or a term of a sum) names that reward and keeps the original as the cause."""
    from textgym.rewards import RewardError, WeightedSum, score_terms

    class Broken:
        name = "broken"

        def __call__(self, prompts, completions):
            return np.array([1.0 / 0 for _ in completions])

    with pytest.raises(RewardError, match=r"reward 'broken' raised ZeroDivisionError: .*division by zero .*scoring "
                                          r"2 completions; the first: prompt 'p', completion 'c1'") as info:
        score_batch(Broken(), ["p", "p"], ["c1", "c2"])
    assert isinstance(info.value.__cause__, ZeroDivisionError)
    with pytest.raises(RewardError, match="reward 'broken' raised"):
        score_terms(WeightedSum({LengthReward(target=1): 1.0, Broken(): 1.0}), ["p"], ["c"])


def test_wrong_shape_and_length():
    """Scores of the wrong shape, or unequal numbers of prompts and completions, are refused."""
    with pytest.raises(ValueError, match="shape \\(2,\\)"):
        score_batch(Const(np.zeros(3)), ["a", "b"], ["c", "d"])
    with pytest.raises(ValueError, match="2 prompts but 1 completions"):
        score_batch(Const(np.zeros(1)), ["a", "b"], ["c"])


def test_all_equal_batch_warns_single_does_not():
    """A batch scored all alike warns of a dead reward; one completion or differing scores do not."""
    with pytest.warns(DeadRewardWarning, match="reward 'const' gave every completion of a batch the same score"):
        score_batch(Const(np.full(3, 0.5)), ["a"] * 3, ["b"] * 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        score_batch(Const(np.array([0.5])), ["a"], ["b"])
        score_batch(Const(np.array([0.5, 1.0])), ["a"] * 2, ["b"] * 2)


def test_keyword_reward_whole_words_and_cap():
    """Keywords count as whole words, case-insensitively, up to the cap; no keyword is refused."""
    reward = KeywordReward(["good"], cap=2)
    np.testing.assert_array_equal(reward(["p"] * 3, ["good goodness", "good good good", "Good."]), [1, 2, 1])
    with pytest.raises(ValueError, match="at least one keyword"):
        KeywordReward([])


def test_length_reward():
    """The length reward is minus the distance to the target word count; a negative target is refused."""
    np.testing.assert_array_equal(LengthReward(2)(["p"] * 3, ["", "a b", "a b c d"]), [-2, 0, -2])
    with pytest.raises(ValueError, match=">= 0 words"):
        LengthReward(-1)


class GivenParts(Const):
    """A reward whose ``parts`` are the given list, whatever it is asked to score."""

    def parts(self, prompts, completions):
        """Return the fixed parts."""
        return self.values


def test_score_parts_checks_what_a_reward_returns():
    """Parts are summed into checked scores; a wrong count, offsets outside the text or a NaN part are named."""
    from textgym.rewards import score_parts

    good = [([1, 2], [0.5, 1.0]), ([], [])]
    scores, parts = score_parts(GivenParts(good), ["p", "p"], ["ab", ""])
    assert scores.tolist() == [1.5, 0.0] and parts[0][0].dtype == np.int64
    with pytest.raises(ValueError, match="parts for 1 completions, not 2"):
        score_parts(GivenParts(good[:1]), ["p", "p"], ["ab", ""])
    with pytest.raises(ValueError, match="ends at character 3, outside its 2 characters"):
        score_parts(GivenParts([([3], [1.0])]), ["p"], ["ab"])
    with pytest.raises(ValueError, match="2 offsets"):
        score_parts(GivenParts([([1, 2], [1.0])]), ["p"], ["ab"])
    with pytest.raises(ValueError, match="'const' returned nan"):
        score_parts(GivenParts([([1], [float("nan")])]), ["p"], ["ab"])
    with pytest.raises(TypeError, match="no parts method"):
        score_parts(Const([1.0]), ["p"], ["ab"])
