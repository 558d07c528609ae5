"""The teaching task: the tiny language of :mod:`textgym.models.bigram`, rewarded for every "good".

Its reference "LM" is an exact bigram table, sentences start from BOS, and the reward is 1 per
"good": the word a policy learns to overuse when nothing holds it to the reference.
"""

from __future__ import annotations

from textgym.models.bigram import tiny_language
from textgym.rewards import KeywordReward
from textgym.tasks import Task

TASK = Task("tiny", lambda split: [""], lambda: KeywordReward(["good"]), max_new_tokens=12, max_context=16,
            model=tiny_language)
