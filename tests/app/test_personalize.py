"""textgym personalize: a reward model and LoRA adapters per simulated user on one base, resumable."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from textgym.app.config import PersonalizeConfig, RLConfig, SFTConfig
from textgym.app.personalize import check_personalize_config, run_personalization
from textgym.models import load_causal_lm
from textgym.tasks.helpfulness import brief_utility, utility

TINY = PersonalizeConfig(prompts=4, k=3, rl=dataclasses.replace(PersonalizeConfig().rl, total_steps=128),
                         eval_prompts=6, max_new_tokens=8, sft=SFTConfig(examples=32, epochs=1))


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::textgym.rewards.DeadRewardWarning")
def test_each_user_gets_a_reward_model_and_adapters_on_one_base_and_a_rerun_redoes_nothing(tmp_path):
    """Every figure of the report is there and consistent; a rerun reuses every step's result."""
    cfg = dataclasses.replace(TINY, out=str(tmp_path / "p"))
    result = run_personalization(cfg, progress=False)
    users = ["brief", "thorough"]
    assert result["users"] == users
    for user in users:
        folder = tmp_path / "p" / "users" / user
        assert (folder / "reward_model" / "config.json").is_file()
        assert json.loads((folder / "rl" / "policy" / "adapter_config.json").read_text())["r"] == cfg.lora_r
        assert len((folder / "rankings.jsonl").read_text().splitlines()) == cfg.prompts
    for judge in users:  # two adapters: one's wins are the other's losses
        assert result["win_rate"][judge]["brief"] + result["win_rate"][judge]["thorough"] == pytest.approx(1.0)
        assert set(result["mean_utility"][judge]) == {"sft", *users}
    memory = result["memory"]
    assert memory["adapters"]["weights_mib"] < memory["full_models"]["weights_mib"]  # one base, not two
    report = (tmp_path / "p" / "report.md").read_text()
    assert "| brief |" in report and "| full models |" in report
    assert (tmp_path / "p" / "personalize.png").stat().st_size > 1000
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "p" / "users").rglob("*.safetensors")}
    again = run_personalization(cfg, progress=False)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # nothing retrained
    assert again["win_rate"] == result["win_rate"]
    moved = tmp_path / "elsewhere"
    (tmp_path / "p").rename(moved)  # the folder carries its base: each user's adapters load from anywhere
    model = load_causal_lm(moved / "users" / "brief" / "rl" / "policy")
    assert hasattr(model, "peft_config")
    assert Path(model.get_base_model().name_or_path).resolve() == (moved / "sft").resolve()


@pytest.mark.parametrize(("change", "message"), [
    ({"users": "brief"}, "at least two"), ({"users": "brief,chatty"}, "unknown users"), ({"k": 1}, "k must be >= 2"),
    ({"task": "sentiment"}, "no simulated users"), ({"rl": RLConfig(total_steps=0)}, "rl.total_steps must be >= 1"),
])
def test_bad_personalize_configs_are_named_before_anything_is_created(tmp_path, change, message):
    """Each bad value is an error that names it, and no folder is created."""
    with pytest.raises(ValueError, match=message):
        check_personalize_config(dataclasses.replace(TINY, out=str(tmp_path / "p"), **change))
    assert not (tmp_path / "p").exists()


def test_the_two_users_disagree_on_long_friendly_answers():
    """The brief user prefers one tip; the thorough one prefers several tips in a friendly frame."""
    prompt = "\n\nHuman: How do I sleep better?\n\nAssistant:"
    one = " Skip coffee after lunch."
    full = " Here are a few ideas: skip coffee after lunch, keep your bedroom dark and cool and get some sunlight in " \
           "the morning. I hope that helps!"
    brief, thorough = brief_utility([prompt] * 2, [one, full]), utility([prompt] * 2, [one, full])
    assert brief[0] > brief[1] and thorough[1] > thorough[0]
    assert np.all(brief_utility([prompt], [" Who cares?"]) < 0)
