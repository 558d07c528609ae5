"""textgym train: config files and flags, metrics, atomic checkpoints, exact resume after SIGKILL, bad input."""

from __future__ import annotations

import csv
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from textgym.app.cli import main
from textgym.app.config import TrainConfig, load_config_file
from textgym.app.harness import TIMING_METRICS, train

pytestmark = pytest.mark.filterwarnings("ignore::textgym.rewards.DeadRewardWarning")

TINY = ["--env", "Sentiment-v0", "--num-envs", "8", "--batch-episodes", "8", "--max-new-tokens", "6",
        "--total-steps", "480", "--checkpoint-every", "1", "--eval-prompts", "4", "--learning-rate", "1e-4",
        "--threads", "1"]


def command(out: Path, *extra: str) -> list[str]:
    """The ``textgym train`` command line of the tiny run."""
    return [sys.executable, "-m", "textgym.app.cli", "train", *TINY, "--out", str(out), *extra]


def training_rows(out: Path) -> list[dict]:
    """metrics.csv without the timing columns."""
    with open(out / "metrics.csv") as handle:
        return [{k: v for k, v in row.items() if k not in TIMING_METRICS} for row in csv.DictReader(handle)]


@pytest.mark.slow
def test_resume_after_sigkill_reaches_the_same_weights_and_metrics(tmp_path):
    """A run killed by SIGKILL resumes to the same metrics, weights and eval, with no half-written checkpoint."""
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    subprocess.run(command(whole), check=True, capture_output=True)
    process = subprocess.Popen(command(killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (killed / "checkpoints" / "update-000002").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(random.Random(0).uniform(0.0, 0.3))  # somewhere in the middle of later updates or checkpoints
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "eval.json").exists(), "the run finished before it was killed: make it longer"
    subprocess.run(command(killed, "--resume"), check=True, capture_output=True)
    assert training_rows(killed) == training_rows(whole) and len(training_rows(whole)) >= 5
    weights_whole, weights_killed = (load_file(p / "policy" / "model.safetensors") for p in (whole, killed))
    assert all((weights_whole[k] == weights_killed[k]).all() for k in weights_whole)  # bit for bit
    ends = [json.loads((p / "eval.json").read_text()) for p in (whole, killed)]
    assert ends[0]["train"] == ends[1]["train"]
    assert ends[0]["eval"]["policy"]["reward_scores"] == ends[1]["eval"]["policy"]["reward_scores"]
    assert [p.name for p in (killed / "checkpoints").iterdir()] != []
    assert not list((killed / "checkpoints").glob(".tmp-*"))


@pytest.mark.slow
def test_run_folder_config_metrics_tensorboard_and_plots(tmp_path):
    """A run saves its config (flags over the file), metrics, TensorBoard scalars, a plot and a loadable policy."""
    out = tmp_path / "run"
    config = tmp_path / "cfg.toml"
    config.write_text('agent = "rloo"\nkl_coef = 0.2\nseed = 3\n')
    assert main(["train", "--config", str(config), *TINY, "--kl-coef", "0.1", "--out", str(out)]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["config"]["agent"] == "rloo" and saved["config"]["seed"] == 3  # from the file
    assert saved["config"]["kl_coef"] == 0.1  # the flag wins over the file
    assert saved["derived"]["task"] == "sentiment" and saved["derived"]["max_new_tokens"] == 6
    header = (out / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"objective/score", "objective/kl", "losses/policy_loss", "losses/approx_kl", "charts/SPS",
            "charts/episodic_return"} <= set(header)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tb"))
    events.Reload()
    assert {"objective/score", "objective/kl", "losses/policy_loss"} <= set(events.Tags()["scalars"])
    assert len(events.Scalars("objective/score")) == len(training_rows(out))
    assert (out / "reward_scores.png").stat().st_size > 1000
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(out / "policy")  # plain transformers loads the result


def test_train_samples_and_scores_the_reference_at_its_temperature_top_k_and_top_p(tmp_path):
    """``--temperature``, ``--top-k`` and ``--top-p`` reach the agent and the env's reference (else learn refuses)."""
    out = tmp_path / "run"
    assert main(["train", *TINY, "--total-steps", "48", "--eval-prompts", "0", "--temperature", "0.8", "--top-k",
                 "20", "--top-p", "0.9", "--out", str(out)]) == 0
    saved = json.loads((out / "config.json").read_text())["config"]
    assert (saved["temperature"], saved["top_k"], saved["top_p"]) == (0.8, 20, 0.9)


@pytest.mark.slow
def test_a_run_folder_is_never_overwritten_or_resumed_with_another_config(tmp_path, capsys):
    """Refuse to overwrite a run or resume it with another config; evaluation settings may change on resume."""
    out = tmp_path / "run"
    cfg = TrainConfig(env="Sentiment-v0", num_envs=8, batch_episodes=8, max_new_tokens=4, total_steps=64,
                      eval_prompts=0, out=str(out), tensorboard=False, threads=1)
    train(cfg)
    with pytest.raises(FileExistsError, match="already holds a run: pass --resume"):
        train(cfg)
    with pytest.raises(ValueError, match=r"different config \(kl_coef: saved 0.05, now 0.3\)"):
        train(TrainConfig(**{**cfg.__dict__, "kl_coef": 0.3}), resume=True)
    assert main(["train", "--env", "Sentiment-v0", "--kl-coef", "0.3", "--out", str(out), "--resume"]) == 2
    assert "cannot resume" in capsys.readouterr().err
    evaluated = train(TrainConfig(**{**cfg.__dict__, "eval_prompts": 2, "keep_checkpoints": 1, "threads": 2}),
                      resume=True)  # as may the threads (a loop resumed with --threads resumes its RL)
    assert len(evaluated["eval"]["policy"]["reward_scores"]) == 2  # evaluation settings may change on resume
    saved = json.loads((out / "config.json").read_text())
    del saved["config"]["credit"]  # a run started before textgym had this setting resumes with its default
    (out / "config.json").write_text(json.dumps(saved))
    train(TrainConfig(**{**cfg.__dict__, "total_steps": 128}), resume=True)


@pytest.mark.parametrize(("flags", "message"), [
    (["--env", "Poetry-v0"], "unknown text env 'Poetry-v0'; known text envs: textgym/TextGeneration-v0"),
    (["--env", "TicTacToe-v0"], "TicTacToe-v0 is a toy env"),
    (["--reward", "happiness"], "unknown reward 'happiness'; known rewards: helpfulness, lexicon-sentiment"),
    (["--agent", "dqn"], "unknown agent 'dqn'; known agents: ppo, rloo"),
    (["--total-steps", "0"], "total_steps must be >= 1"),
    (["--credit", "dense"], "credit must be end or token"),
    (["--credit", "token"], "credit=token needs a reward that scores per token: pass --reward rm:PATH"),
    (["--credit", "token", "--reward", "length:3"], "length:3 does not"),
    (["--temperature", "0"], "temperature must be > 0"), (["--top-k", "-1"], "top_k must be >= 0"),
    (["--top-p", "1.5"], "top_p must be <= 1"), (["--top-p", "0"], "top_p must be in (0, 1]"),
    (["--kl-setpoint", "0"], "kl_setpoint must be > 0"),
])
def test_unknown_names_list_the_known_ones(tmp_path, capsys, flags, message):
    """An unknown env, reward or agent, or zero steps, exits 2 with the known names and creates no folder."""
    assert main(["train", *flags, "--out", str(tmp_path / "run")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # nothing is created for a bad config


def test_config_file_errors(tmp_path):
    """An unknown key suggests the close one; a missing file or a format other than JSON/TOML is refused."""
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"env": "Sentiment-v0", "kl_coeff": 0.1}))
    with pytest.raises(ValueError, match=r"unknown key 'kl_coeff' \(did you mean 'kl_coef'\?\); known keys: env"):
        load_config_file(bad)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_config_file(tmp_path / "missing.toml")
    (tmp_path / "cfg.yaml").write_text("env: x")
    with pytest.raises(ValueError, match="write it as .json or .toml"):
        load_config_file(tmp_path / "cfg.yaml")


def test_eval_compares_models_and_writes_a_report(tmp_path, capsys):
    """``textgym eval`` writes each model's metrics (zero KL for the reference itself), a plot and a report."""
    out = tmp_path / "eval"
    assert main(["eval", "--model", "base=textgym/tiny-lm", "--model", "again=textgym/tiny-lm", "--task", "detox",
                 "--num-prompts", "6", "--max-new-tokens", "8", "--out", str(out)]) == 0
    results = json.loads((out / "eval.json").read_text())
    assert set(results) == {"base", "again"}
    assert {"reward", "kl_to_reference", "perplexity_heldout", "distinct_2", "judge/insult_rate",
            "toxicity_rate"} <= set(results["base"])
    assert results["base"]["kl_to_reference"] == pytest.approx(0.0, abs=1e-5)
    assert (out / "reward_scores.png").stat().st_size > 1000 and "| mean reward |" in (out / "report.md").read_text()


@pytest.mark.parametrize("command_name", ["train", "eval", "bench", "demo", "label"])
def test_every_subcommand_has_help(capsys, command_name):
    """Every subcommand's ``--help`` prints its usage and exits 0."""
    with pytest.raises(SystemExit) as exit_info:
        main([command_name, "--help"])
    assert exit_info.value.code == 0 and "usage: textgym " + command_name in capsys.readouterr().out


@pytest.mark.slow
def test_bench_writes_rows_summary_and_plot(tmp_path):
    """The benchmark returns a row per case, agent and seed, writes CSV, bars and plot, and refuses unknown cases."""
    import dataclasses

    from textgym.app.bench import run_benchmark
    from textgym.app.config import BenchConfig

    out = tmp_path / "bench"
    rows = run_benchmark(BenchConfig(cases="rule", agents="ppo,reference", seeds="0",
                                     rl=dataclasses.replace(BenchConfig().rl, total_steps=128), eval_prompts=4,
                                     out=str(out), threads=1))
    assert [(r["case"], r["agent"], r["seed"]) for r in rows] == [("rule", "ppo", 0), ("rule", "reference", 0)]
    assert all(r["tokens_per_s"] > 0 and r["peak_rss_mib"] > 50 and r["judge_metric"] == "judge/lexicon_sentiment"
               for r in rows)
    assert rows[1]["kl_to_reference"] == pytest.approx(0.0, abs=1e-5)
    assert len((out / "rewards.csv").read_text().splitlines()) == 3
    assert "## Quality bars" in (out / "rewards.md").read_text() and (out / "rewards.png").stat().st_size > 1000
    with pytest.raises(ValueError, match=r"unknown case \['poetry'\]; cases: sentiment-classifier"):
        run_benchmark(BenchConfig(cases="poetry", out=str(out)))
    assert BenchConfig().out == "runs/bench"  # run from the repository, it never overwrites benchmarks/results


def test_quality_bars_need_every_seed_and_the_judge():
    """A bar fails if the judge disagrees on any seed, or if perplexity drops too little below the base."""
    from textgym.app.bench import quality_bars

    def row(agent, seed, reward, judge, ppl=1.0):
        return {"case": "helpfulness-rm", "agent": agent, "seed": seed, "reward": reward, "judge": judge,
                "judge_metric": "judge/p_helpful", "perplexity_heldout": ppl}

    good = [row("ppo", 0, 2.0, 0.8, 1.2), row("reference", 0, 1.0, 0.5, 1.25),
            row("ppo", 1, 2.0, 0.8, 1.2), row("reference", 1, 1.0, 0.5, 1.25)]
    assert [line.split()[0] for line in quality_bars(good, base_ppl=1.5)] == ["PASS", "PASS"]
    judge_disagrees = good[:3] + [row("reference", 1, 1.0, 0.9, 1.25)]
    assert quality_bars(judge_disagrees, base_ppl=1.5)[0].startswith("FAIL")
    assert quality_bars(good, base_ppl=1.3)[1].startswith("FAIL")  # only 7.7% below the base


@pytest.mark.parametrize(("config", "message"), [
    ("num_envs = 2.5", "num_envs must be a whole number, got 2.5"),
    ('kl_coef = "0.1"', "kl_coef must be a number, got '0.1'"),
    ('total_steps = "lots"', "total_steps must be a whole number, got 'lots'"),
    ('tensorboard = "no"', "tensorboard must be true or false, got 'no'"),
    ("kl_coef = nan", "kl_coef must be a finite number"),
    ("kl_coef = -1.0", "kl_coef must be >= 0, got -1.0"),
    ("group_size = 3", "group_size=3 must divide num_envs=16"),
    ('model = "runs/x/policy"', "no such folder: 'runs/x/policy'"),
    ('reward = "rm:runs/my-rm"', "no such folder: 'runs/my-rm'"),
])
def test_a_bad_config_value_is_named_before_anything_is_created(tmp_path, capsys, monkeypatch, config, message):
    """A bad config value is named quickly, with exit 2, no run folder, and the same refusal on ``--resume``."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    (tmp_path / "cfg.toml").write_text(config + "\n")
    began = time.perf_counter()
    assert main(["train", "--config", "cfg.toml", "--out", "runs/run"]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "runs" / "run").exists() and time.perf_counter() - began < 30  # no hub retries
    assert main(["train", "--config", "cfg.toml", "--out", "runs/run", "--resume"]) == 2  # and nothing to refuse later


def test_resume_of_a_folder_without_a_run_is_an_error(tmp_path, capsys):
    """``--resume`` of a folder without a run exits 2 and creates nothing."""
    assert main(["train", "--out", str(tmp_path / "nothing"), "--resume"]) == 2
    assert "cannot resume" in capsys.readouterr().err
    assert not (tmp_path / "nothing").exists()


@pytest.mark.slow
def test_grpo_and_a_users_own_agent_train_checkpoint_and_resume(tmp_path):
    """GRPO and an agent from the user's file resume mid-run to the uninterrupted run's metrics and weights."""
    agent_file = tmp_path / "my_agents.py"
    agent_file.write_text(
        "from agents.reinforce import REINFORCE\n\n"
        "class Mine(REINFORCE):\n"
        "    \"\"\"REINFORCE under another name: the harness knows nothing of it.\"\"\"\n")
    for agent in ("grpo", f"{agent_file}:Mine"):
        whole, resumed = tmp_path / f"whole-{agent[:4]}", tmp_path / f"resumed-{agent[:4]}"
        flags = [*TINY, "--agent", agent, "--total-steps", "320", "--eval-prompts", "0", "--tensorboard",
                 "--no-tensorboard"]
        assert main(["train", *flags, "--out", str(whole)]) == 0
        assert main(["train", *flags, "--total-steps", "160", "--out", str(resumed)]) == 0
        assert main(["train", *flags, "--out", str(resumed), "--resume"]) == 0  # continue to 320 steps
        assert training_rows(resumed) == training_rows(whole)
        weights = [load_file(p / "policy" / "model.safetensors") for p in (whole, resumed)]
        assert all((weights[0][k] == weights[1][k]).all() for k in weights[0])
        saved = json.loads((whole / "config.json").read_text())["derived"]
        assert saved["group_size"] == (4 if agent == "grpo" else 1)


def test_the_config_check_loads_no_reward_and_a_run_builds_its_reward_once(tmp_path, monkeypatch):
    """``check_config`` leaves the reward alone; ``train`` builds it once, before the folder, and the env uses it."""
    import textgym.tasks.rewards as named
    from textgym.app.harness import check_config, make_run_reward

    missing = TrainConfig(reward=f"rm:{tmp_path / 'no-rm'}")
    check_config(missing)  # loads nothing: the missing reward model is named where the reward is built
    with pytest.raises((ValueError, FileNotFoundError), match="no such folder"):
        make_run_reward(missing)
    built = []
    monkeypatch.setattr(named, "make_reward", lambda spec, real=named.make_reward: built.append(spec) or real(spec))
    train(TrainConfig(env="Sentiment-v0", reward="length:3", num_envs=8, batch_episodes=8, max_new_tokens=4,
                      total_steps=32, eval_prompts=0, tensorboard=False, threads=1, out=str(tmp_path / "run")),
          progress=False)
    assert built == ["length:3"]
