"""textgym loop: rounds of feedback, reward model and RL, resumable at any step, with stopping criteria."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from textgym.app.config import LoopConfig, RLConfig, SFTConfig
from textgym.app.feedback import Item, label_simulated
from textgym.app.loop import check_loop_config, run_loop
from textgym.data.preferences import read_rankings
from textgym.tasks.helpfulness import utility

TINY = LoopConfig(sft=SFTConfig(examples=48, epochs=1), seed_pairs=64, rm_epochs=2, rounds=1, prompts_per_round=4, k=3,
                  rl=RLConfig(total_steps=192), eval_prompts=4, max_new_tokens=8)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::textgym.rewards.DeadRewardWarning")
def test_rounds_resume_without_losing_or_repeating_a_ranking(tmp_path):
    """A loop extended by a round, or killed inside one, reuses every finished step and asks each prompt once."""
    cfg = dataclasses.replace(TINY, out=str(tmp_path / "loop"))
    rows = run_loop(cfg, progress=False)
    assert [r["round"] for r in rows] == [0, 1] and rows[1]["labels"] == 4
    first = (tmp_path / "loop" / "round-01" / "round.json").read_text()
    rows = run_loop(dataclasses.replace(cfg, rounds=2), progress=False)
    assert [r["round"] for r in rows] == [0, 1, 2] and rows[2]["labels"] == 8
    assert (tmp_path / "loop" / "round-01" / "round.json").read_text() == first  # not redone
    round2 = tmp_path / "loop" / "round-02"
    (round2 / "round.json").unlink()  # killed after RL, before the evaluation was written
    rankings = read_rankings(round2 / "rankings.jsonl")
    again = run_loop(dataclasses.replace(cfg, rounds=2), progress=False)
    assert read_rankings(round2 / "rankings.jsonl") == rankings  # no prompt asked twice, none lost
    assert again[2]["labels"] == 8
    report = (tmp_path / "loop" / "report.md").read_text()
    assert "| 2 | 8 |" in report and (tmp_path / "loop" / "rounds.png").stat().st_size > 1000
    assert all(np.isfinite([r["utility"], r["judge"], r["kl_to_sft"]]).all() for r in again)
    trained = json.loads((round2 / "reward_model" / "reward_metrics.json").read_text())
    assert trained["config"]["epochs"] == 2 and trained["train_pairs"] == 64 + 8 * 3  # seed pairs + 3 per ranking


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::textgym.rewards.DeadRewardWarning")
def test_a_labeler_who_stops_early_stops_the_loop_and_the_rerun_goes_on(tmp_path, monkeypatch):
    """Half the prompts ranked, then quit: no reward model is trained; the rerun asks only the rest."""
    import textgym.app.loop as loop

    real = loop.feedback_source

    def half(cfg, task):
        rank = real(cfg, task)
        return lambda items, out: rank(items[:2], out)

    cfg = dataclasses.replace(TINY, out=str(tmp_path / "loop"))
    monkeypatch.setattr(loop, "feedback_source", half)
    assert [r["round"] for r in run_loop(cfg, progress=False)] == [0]
    first = read_rankings(tmp_path / "loop" / "round-01" / "rankings.jsonl")
    assert len(first) == 2 and not (tmp_path / "loop" / "round-01" / "reward_model").exists()
    monkeypatch.setattr(loop, "feedback_source", real)
    rows = run_loop(cfg, progress=False)
    assert rows[-1]["round"] == 1 and rows[-1]["labels"] == 4
    assert read_rankings(tmp_path / "loop" / "round-01" / "rankings.jsonl")[:2] == first


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::textgym.rewards.DeadRewardWarning")
def test_a_judge_threshold_stops_the_loop(tmp_path):
    """A threshold the first round meets ends the loop there; reward models pool, and RL pays, as the config says."""
    rows = run_loop(dataclasses.replace(TINY, out=str(tmp_path / "loop"), rounds=3, judge_threshold=0.0,
                                        rm_pooling="answer-sum", credit="token"), progress=False)
    assert [r["round"] for r in rows] == [0, 1]
    assert not (tmp_path / "loop" / "round-02").exists()
    rl = json.loads((tmp_path / "loop" / "round-01" / "rl" / "config.json").read_text())["config"]
    assert rl["credit"] == "token"
    for round_ in ("round-00", "round-01"):
        config = json.loads((tmp_path / "loop" / round_ / "reward_model" / "config.json").read_text())
        assert config["reward_pooling"] == "answer-sum"


@pytest.mark.parametrize(("change", "message"), [
    ({"k": 1}, "k must be >= 2"), ({"feedback": "crowd"}, "unknown feedback"), ({"task": "sentiment"}, "no RLHF"),
    ({"feedback": "judge:nonsense"}, "nonsense"), ({"rounds": 0}, "rounds must be >= 1"),
    ({"rm_epochs": 0}, "rm_epochs must be > 0"),
    ({"rm_pooling": "mean"}, "rm_pooling must be one of last, answer-sum"),
    ({"credit": "dense"}, "credit must be end or token"),
    ({"corrections": True, "feedback": "terminal"}, "corrections come from the simulated labeler only"),
])
def test_bad_loop_configs_are_named_before_anything_is_created(tmp_path, change, message):
    """Each bad value is an error that names it, and no folder is created."""
    with pytest.raises(ValueError, match=message):
        check_loop_config(dataclasses.replace(TINY, out=str(tmp_path / "loop"), **change))
    assert not (tmp_path / "loop").exists()


def test_a_loop_folder_refuses_another_config(tmp_path):
    """Resuming with a changed budget is an error naming the field; rounds and thresholds may change."""
    out = tmp_path / "loop"
    out.mkdir()
    (out / "loop.json").write_text(json.dumps(dataclasses.asdict(dataclasses.replace(TINY, out=str(out)))))
    with pytest.raises(ValueError, match="rl.total_steps: saved 192, now 999"):
        run_loop(dataclasses.replace(TINY, out=str(out), rl=RLConfig(total_steps=999)), progress=False)


def test_a_loop_folder_from_before_a_new_field_resumes_at_its_default(tmp_path):
    """A saved config without a field added since reads as that field's default: the loop goes on."""
    from textgym.app.loop import start_folder

    out = tmp_path / "loop"
    out.mkdir()
    saved = dataclasses.asdict(dataclasses.replace(TINY, out=str(out), rm_epochs=LoopConfig.rm_epochs))
    del saved["rm_epochs"]
    (out / "loop.json").write_text(json.dumps(saved))
    start_folder(dataclasses.replace(TINY, out=str(out), rm_epochs=LoopConfig.rm_epochs), out)
    with pytest.raises(ValueError, match="rm_epochs: saved 1.0, now 3"):
        start_folder(dataclasses.replace(TINY, out=str(out), rm_epochs=3), out)


def test_the_simulated_labeler_ranks_by_the_hidden_utility_with_seeded_noise(tmp_path):
    """Noise 0 ranks by utility (off-topic tips below a dismissive answer); noisy rankings repeat per item."""
    prompt = "\n\nHuman: How do I sleep better?\n\nAssistant:"
    answers = [" Try to skip coffee after lunch.", " Who cares?",
               " Try this: book the movers early and pack a bag with essentials for the first night."]
    assert utility([prompt] * 3, answers).tolist()[0] > utility([prompt] * 3, answers).tolist()[1]
    label_simulated([Item(0, prompt, answers)], tmp_path / "exact.jsonl", utility, noise=0.0, show=lambda _: None)
    assert read_rankings(tmp_path / "exact.jsonl")[0]["ranking"] == [1, 2, 3]
    items = [Item(i, prompt, answers) for i in range(40)]
    for name in ("a", "b"):
        label_simulated(items, tmp_path / f"{name}.jsonl", utility, noise=2.0, seed=1, show=lambda _: None)
    noisy = [row["ranking"] for row in read_rankings(tmp_path / "a.jsonl")]
    assert noisy == [row["ranking"] for row in read_rankings(tmp_path / "b.jsonl")]
    assert 0 < sum(r != [1, 2, 3] for r in noisy) < 40  # noise flips some rankings, not all


def test_the_simulated_labeler_corrects_what_it_can_fix(tmp_path):
    """With the task's corrections, an answer with another question's tip gets its edit; the others none."""
    from textgym.tasks import get_task

    prompt = "\n\nHuman: How do I sleep better?\n\nAssistant:"
    answers = [" Try to skip coffee after lunch.", " Try to skip coffee after lunch and pick a dessert you can buy.",
               " Who cares?"]
    label_simulated([Item(0, prompt, answers)], tmp_path / "r.jsonl", utility, show=lambda _: None,
                    correct=get_task("helpfulness").correct)
    row = read_rankings(tmp_path / "r.jsonl")[0]
    assert row["corrections"] == [{"index": 1, "completion": " Try to skip coffee after lunch."}]
