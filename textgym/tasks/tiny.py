"""The teaching task: the tiny language of :mod:`textgym.models.bigram`, rewarded for every "good".

Its reference "LM" is an exact bigram table, sentences start from BOS, and the reward is 1 per
"good": the word a policy learns to overuse when nothing holds it to the reference. Registered as
``textgym/TinyLanguage-v0``.
"""

from __future__ import annotations

from textgym.tasks.base import Task


def model():
    """The exact bigram reference and its word tokenizer (:func:`textgym.models.bigram.tiny_language`)."""
    from textgym.models.bigram import tiny_language

    return tiny_language()


def reward():
    """1 per "good" (a :class:`textgym.rewards.KeywordReward`)."""
    from textgym.rewards import KeywordReward

    return KeywordReward(["good"])


TASK = Task("tiny", lambda split: [""], reward, max_new_tokens=12, max_context=16, env_id="textgym/TinyLanguage-v0",
            model=model)
