"""The commands refuse bad input up front, with a message that names it; a diverged or damaged run is handled."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from textgym.app.cli import main
from textgym.app.config import TrainConfig
from textgym.app.harness import train

pytestmark = pytest.mark.filterwarnings("ignore::textgym.rewards.DeadRewardWarning")

TINY = ["--env", "Sentiment-v0", "--num-envs", "8", "--batch-episodes", "8", "--max-new-tokens", "4",
        "--total-steps", "64", "--checkpoint-every", "1", "--eval-prompts", "0", "--no-tensorboard", "--threads", "1"]


# ---------------------------------------------------------------------------------------------- train's config
@pytest.mark.parametrize(("flags", "message"), [
    (["--gamma", "-5"], "gamma must be between 0 and 1, got -5.0"),
    (["--gae-lambda", "50"], "gae_lambda must be between 0 and 1, got 50.0"),
    (["--max-new-tokens", "0"], "max_new_tokens must be >= 1, got 0"),
    (["--kl-horizon", "0"], "kl_horizon must be >= 1, got 0"),
    (["--target-kl", "-0.1"], "target_kl must be >= 0, got -0.1"),
])
def test_out_of_bounds_values_are_refused(tmp_path, capsys, flags, message):
    """A value outside its field's declared bounds exits 2, names the field and the bounds, and creates nothing."""
    assert main(["train", *flags, "--out", str(tmp_path / "run")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_bad_value_is_named_before_torch_is_imported(tmp_path):
    """Config checks run before the heavy imports: ``--kl-coef nan`` answers without importing torch or the agents."""
    code = ("import sys\nfrom textgym.app.cli import main\n"
            f"assert main(['train', '--kl-coef', 'nan', '--out', {str(tmp_path / 'run')!r}]) == 2\n"
            "heavy = sorted(m for m in ('torch', 'transformers', 'agents.lm') if m in sys.modules)\n"
            "assert not heavy, heavy\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "kl_coef must be a finite number, got nan" in done.stderr


def test_an_unknown_flag_shows_the_subcommands_usage(capsys):
    """``textgym train --bogus-flag`` prints train's usage, not the top level's."""
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--bogus-flag"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert "usage: textgym train" in err and "textgym train: error: unrecognized arguments: --bogus-flag" in err


@pytest.mark.parametrize(("name", "text", "message"), [
    ("bad.json", '{"env": ', "config file {path} is not valid JSON: Expecting value: line 1"),
    ("bad.toml", "kl_coef = = 1\n", "config file {path} is not valid TOML: Invalid value (at line 1"),
    ("list.json", "[1, 2]", "config file {path} must hold a table of settings (a JSON object"),
])
def test_a_malformed_config_file_is_named(tmp_path, capsys, name, text, message):
    """A config file that does not parse, or holds a list, exits 2 with a message naming the file."""
    path = tmp_path / name
    path.write_text(text)
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "run")]) == 2
    assert message.format(path=path) in capsys.readouterr().err


def test_an_agent_file_without_the_class_says_so(tmp_path, capsys):
    """``--agent file.py:Nope`` names the class the file lacks."""
    agent_file = tmp_path / "mine.py"
    agent_file.write_text("class Other:\n    pass\n")
    assert main(["train", "--agent", f"{agent_file}:Nope", "--out", str(tmp_path / "run")]) == 2
    assert f"{agent_file} has no 'Nope'" in capsys.readouterr().err


def test_too_many_envs_for_the_memory_are_refused_before_allocating(tmp_path, capsys):
    """``--num-envs 1000000`` is refused with a memory estimate at once, before any folder or buffer exists."""
    assert main(["train", "--num-envs", "1000000", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "num_envs=1,000,000 needs at least" in err and "GiB are free on cpu; use at most --num-envs" in err
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------------------- resuming
def _tiny_config(out: Path, **changes) -> TrainConfig:
    return TrainConfig(**{**dict(env="Sentiment-v0", num_envs=8, batch_episodes=8, max_new_tokens=4, total_steps=64,
                                 checkpoint_every=1, eval_prompts=0, out=str(out), tensorboard=False, threads=1),
                          **changes})


def test_a_moved_run_with_a_damaged_newest_checkpoint_resumes_from_the_one_before(tmp_path):
    """A run folder moved elsewhere resumes; a truncated newest checkpoint is skipped with a warning naming it."""
    first = tmp_path / "first"
    train(_tiny_config(first))
    moved = tmp_path / "moved"
    shutil.move(first, moved)
    newest = moved / "checkpoints" / "update-000002"
    weights = newest / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.warns(UserWarning, match=r"checkpoint .*update-000002 cannot be loaded .*resuming from the one "
                                         r"before, update-000001 \(the damaged one is kept as damaged-update-000002\)"):
        train(_tiny_config(moved, total_steps=96), resume=True)
    rows = (moved / "metrics.csv").read_text().splitlines()[1:]
    assert [int(row.split(",")[1]) for row in rows] == [1, 2, 3]  # update 2 trained again, from update 1
    assert sorted(p.name for p in (moved / "checkpoints").iterdir()) == ["damaged-update-000002", "update-000002",
                                                                         "update-000003"]
    assert json.loads((moved / "config.json").read_text())["config"]["out"] == str(moved)


def test_a_damaged_saved_config_is_named_on_resume(tmp_path, capsys):
    """``--resume`` of a folder whose config.json does not parse names the file."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text('{"config": {"env": ')
    assert main(["train", "--out", str(out), "--resume"]) == 2
    assert f"{out / 'config.json'} is not valid JSON" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- divergence
def test_a_diverging_run_stops_keeps_its_last_good_checkpoint_and_exits_non_zero(tmp_path, capsys):
    """The first non-finite loss stops the run with exit 1; the finite checkpoints stay, no policy is saved."""
    agent_file = tmp_path / "diverging.py"
    agent_file.write_text(
        "from agents.reinforce import REINFORCE\n\n"
        "class Diverging(REINFORCE):\n"
        "    \"\"\"REINFORCE whose loss turns NaN in its third update.\"\"\"\n\n"
        "    def loss(self, mb):\n"
        "        loss, stats = super().loss(mb)\n"
        "        return (loss * float('nan') if self.updates >= 2 else loss), stats\n")
    out = tmp_path / "run"
    assert main(["train", *TINY, "--total-steps", "160", "--agent", f"{agent_file}:Diverging",
                 "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "training diverged after 2 updates: the loss is nan" in err
    assert f"The last good checkpoint, {out / 'checkpoints' / 'update-000002'}, is kept" in err
    assert not (out / "policy").exists() and not (out / "eval.json").exists()
    weights = load_file(out / "checkpoints" / "update-000002" / "model.safetensors")
    assert all(np.isfinite(value.numpy()).all() for value in weights.values())


@pytest.mark.parametrize("flags", [["--learning-rate", "1e6"], ["--kl-coef", "1e30"]])
def test_a_huge_learning_rate_or_kl_coef_exits_non_zero(tmp_path, capsys, flags):
    """``--learning-rate 1e6`` and ``--kl-coef 1e30`` stop with exit 1 instead of saving a NaN policy."""
    out = tmp_path / "run"
    assert main(["train", *TINY, *flags, "--out", str(out)]) == 1
    assert "training diverged" in capsys.readouterr().err
    assert not (out / "policy").exists()


# ---------------------------------------------------------------------------------------------- eval
@pytest.mark.parametrize(("flags", "message"), [
    (["--model", "textgym/tiny-lm", "--num-prompts", "0"], "--num-prompts must be >= 1"),
    (["--model", "textgym/tiny-lm", "--max-new-tokens", "0"], "--max-new-tokens must be >= 1"),
    (["--model", "a=textgym/tiny-lm", "--model", "a=textgym/tiny-lm"], "--model names 'a' more than once"),
    (["--model", "textgym/tiny-lm", "--model", "textgym/tiny-lm"], "--model names 'textgym/tiny-lm' more than once"),
])
def test_eval_refuses_bad_arguments_before_loading(tmp_path, capsys, flags, message):
    """Zero prompts or tokens, or one name for two models, exit 2 and write nothing."""
    assert main(["eval", *flags, "--out", str(tmp_path / "eval")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "eval").exists()


def test_eval_never_replaces_an_earlier_report(tmp_path, capsys):
    """``textgym eval --out`` refuses a folder that already holds something, as ``train`` does."""
    out = tmp_path / "eval"
    out.mkdir()
    (out / "report.md").write_text("an earlier report")
    assert main(["eval", "--model", "textgym/tiny-lm", "--out", str(out)]) == 2
    assert "already exists: choose another --out" in capsys.readouterr().err
    assert (out / "report.md").read_text() == "an earlier report"


def test_evaluate_policy_refuses_zero_prompts(lm, tokenizer):
    """The library call names ``num_prompts`` instead of failing on an empty sequence."""
    from textgym.rewards import LengthReward
    from textgym.tasks.evaluation import evaluate_policy

    with pytest.raises(ValueError, match="num_prompts must be a whole number >= 1"):
        evaluate_policy(lm, tokenizer, "sentiment", LengthReward(target=3), num_prompts=0)


# ---------------------------------------------------------------------------------------------- label
@pytest.mark.parametrize(("flags", "message"), [
    (["-k", "1"], "-k must be >= 2 (a ranking compares at least 2 completions), got 1"),
    (["-k", "0"], "-k must be >= 2"),
    (["--num", "-1"], "--num must be >= 1"),
    (["--max-new-tokens", "0"], "--max-new-tokens must be >= 1"),
])
def test_label_refuses_what_it_could_not_read_back(tmp_path, capsys, flags, message):
    """``label`` refuses up front what would write a rankings file its own resume then refuses."""
    output = tmp_path / "rankings.jsonl"
    assert main(["label", "--model", "textgym/tiny-lm", *flags, "--judge", "helpfulness",
                 "--output", str(output)]) == 2
    assert message in capsys.readouterr().err
    assert not output.exists()


@pytest.mark.parametrize(("rows", "message"), [
    ([{"prompt": "a", "completions": ["x", ""]}], ":1: completion 2 is empty"),
    ([{"prompt": "a", "completions": ["x", "  "]}], ":1: completion 2 is empty"),
    ([{"prompt": "a", "completions": [5, None]}], ":1: completion 1 must be a string, got int"),
    ([{"prompt": "a", "completions": ["x", None]}], ":1: completion 2 must be a string, got NoneType"),
    ([{"prompt": "a", "completions": ["x"]}], ":1: 'completions' must be a list of at least 2 answers"),
    ([{"id": "abc", "prompt": "a", "completions": ["x", "y"]}], ":1: 'id' must be a whole number, got 'abc'"),
    ([{"id": True, "prompt": "a", "completions": ["x", "y"]}], ":1: 'id' must be a whole number, got True"),
    ([{"id": 1, "prompt": "a", "completions": ["x", "y"]}, {"id": 1, "prompt": "b", "completions": ["u", "v"]}],
     ":2: id 1 is also the id of line 1"),
])
def test_label_input_rows_are_checked(tmp_path, capsys, rows, message):
    """Rows with empty, non-text or too few completions, a non-integer id, or a repeated id exit 2, naming the line."""
    source, output = tmp_path / "in.jsonl", tmp_path / "rankings.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert main(["label", "--input", str(source), "--judge", "length:3", "--output", str(output)]) == 2
    assert f"{source}{message}" in capsys.readouterr().err
    assert not output.exists()


def test_label_output_that_is_a_folder_is_refused(tmp_path, capsys):
    """An ``--output`` that is a folder is named, with the file to pass instead."""
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"prompt": "a", "completions": ["x", "y"]}) + "\n")
    assert main(["label", "--input", str(source), "--judge", "length:3", "--output", str(tmp_path)]) == 2
    assert f"--output {tmp_path} is a folder: name the rankings file" in capsys.readouterr().err


def test_running_out_of_memory_while_resuming_sets_no_checkpoint_aside(tmp_path):
    """Out of memory is the machine's trouble, not the checkpoint's: it is raised, and nothing is renamed."""
    from textgym.app.harness import resume_newest

    class Folder:
        out, set_aside_calls = tmp_path, []

        def set_aside(self, path):
            self.set_aside_calls.append(path)
            return path

    def load(path):
        raise MemoryError("no room")

    folder = Folder()
    with pytest.raises(MemoryError):
        resume_newest(folder, [tmp_path / "update-000002", tmp_path / "update-000001"], load)
    assert folder.set_aside_calls == []
