"""The helpfulness task's grading: which tips answer the question asked, and a labeler's edit."""

from __future__ import annotations

import pytest

from textgym.data import synthetic
from textgym.tasks.helpfulness import strike_off_topic, tips_given


def test_tips_given_tells_on_topic_from_off_topic_answers():
    """``tips_given`` counts the best answers' tips as own, off-topic ones as other; non-HH prompts give None."""
    rows = synthetic.dialogues(n=200, seed=2)["test"]
    for row in rows:
        for completion, rank in zip(row["completions"], row["ranking"], strict=True):
            own, other = tips_given(row["prompt"], completion)
            if rank == 1:
                assert own >= 2 and other == 0
            elif rank == 3 and completion.strip() not in synthetic.OFF_TOPIC:
                assert own == 0 and other >= 2
    assert tips_given("Comment: hello\nReply:", " close the blinds during the day") is None


@pytest.mark.parametrize(("answer", "edited"), [
    (" Try to skip coffee after lunch and pick a dessert you can buy. Good luck!",
     " Try to skip coffee after lunch. Good luck!"),
    (" Sure. You could pick a dessert you can buy, skip coffee after lunch and keep your bedroom dark and cool.",
     " Sure. You could skip coffee after lunch and keep your bedroom dark and cool."),
    (" I suggest you skip coffee after lunch. Try to pick a dessert you can buy. I like trains a lot.",
     " I suggest you skip coffee after lunch."),
    (" Try to skip coffee after lunch.", None),  # nothing off topic
    (" Try to pick a dessert you can buy.", None),  # no tip for the question would be left
    (" Try to skip coffee after lunch to pick a dessert you can buy.", None),  # no clean edit
])
def test_strike_off_topic_edits_out_other_questions_tips(answer, edited):
    """A labeler's edit: other questions' tips and stray facts go, the question's own tips stay."""
    prompt = "\n\nHuman: How do I sleep better?\n\nAssistant:"
    assert strike_off_topic(prompt, answer) == edited
    if edited is not None:
        assert tips_given(prompt, edited)[1] == 0
