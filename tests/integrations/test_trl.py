"""TRL's GRPOTrainer on textgym envs through TextgymRollout: what TRL receives, the KL switch, and learning."""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

trl = pytest.importorskip("trl")

from textgym.integrations.episodes import play_episodes  # noqa: E402
from textgym.integrations.trl import TextgymRollout, env_objective, env_score, prompt_dataset  # noqa: E402
from textgym.models import load_causal_lm, load_tokenizer  # noqa: E402
from textgym.models.logprobs import completion_logprobs  # noqa: E402

ROOT = Path(__file__).parent.parent.parent


@pytest.fixture(autouse=True)
def _quiet_trl(monkeypatch):
    """TRL warns that rollout_func is experimental on every trainer; these tests know."""
    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")


class Recording(TextgymRollout):
    """The rollout, plus what it returned and the policy's teacher-forced log-probs at that moment."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.outputs, self.teacher = [], []

    def __call__(self, prompts, trainer):
        """Roll out, then score the same tokens by teacher forcing with the model as it was (at TRL's temperature)."""
        out = super().__call__(prompts, trainer)
        model = trainer.accelerator.unwrap_model(trainer.model)
        self.outputs.append(out)
        with torch.no_grad():
            rows = []
            for prompt, completion in zip(out["prompt_ids"], out["completion_ids"], strict=True):
                logits = model(input_ids=torch.tensor([[*prompt, *completion]])).logits[0, len(prompt) - 1:-1]
                scores = torch.log_softmax(logits.float() / trainer.args.temperature, -1)  # (C, V)
                rows.append(scores.gather(1, torch.tensor(completion)[:, None]).squeeze(1))
        self.teacher.append(rows)
        return out


class Capturing(trl.GRPOTrainer):
    """GRPOTrainer that keeps the inputs of every loss it computes (what TRL built from the rollout)."""

    def compute_loss(self, model, inputs, *args, **kwargs):
        """Keep the inputs, then compute TRL's loss."""
        self.seen = [*getattr(self, "seen", []), {k: v for k, v in inputs.items() if torch.is_tensor(v)}]
        return super().compute_loss(model, inputs, *args, **kwargs)


def config(tmp_path, **overrides):
    """A small CPU GRPOConfig: 8 completions (2 prompts x 4) per step, dropout off."""
    values = dict(output_dir=str(tmp_path / "out"), per_device_train_batch_size=8, num_generations=4, max_steps=2,
                  use_cpu=True, bf16=False, report_to=[], save_strategy="no", logging_steps=1, seed=0,
                  disable_dropout=True, learning_rate=1e-3)
    return trl.GRPOConfig(**{**values, **overrides})


def train_two_steps(tmp_path, kit, task, rollout, reward_funcs=(env_score,), **overrides):
    """Two GRPO steps of the kit's ``kit`` model on ``task``'s prompts through ``rollout``."""
    trainer = Capturing(model=load_causal_lm(kit), processing_class=load_tokenizer(kit),
                        reward_funcs=list(reward_funcs), args=config(tmp_path, **overrides),
                        train_dataset=prompt_dataset(task, repeat=16 if task == "tictactoe" else 1),
                        rollout_func=rollout)
    trainer.train()
    return trainer


def check_what_trl_received(trainer, rollout):
    """Check TRL's loss saw the rollout's ids, its env mask as tool mask, and the policy's own log-probs."""
    rows = [(tuple(p), tuple(c), lp, m, teacher)
            for out, teach in zip(rollout.outputs, rollout.teacher, strict=True)
            for p, c, lp, m, teacher in zip(out["prompt_ids"], out["completion_ids"], out["logprobs"],
                                            out["env_mask"], teach, strict=True)]
    for _, _, logprobs, mask, teacher in rows:
        agent = np.asarray(mask) == 1
        np.testing.assert_allclose(np.asarray(logprobs)[agent], teacher.numpy()[agent], atol=1e-4)
        assert np.all(np.asarray(logprobs)[~agent] == 0.0)
    by_ids = {(p, c): (lp, m) for p, c, lp, m, _ in rows}
    checked = 0
    for inputs in trainer.seen:
        for i in range(len(inputs["completion_ids"])):
            prompt = tuple(inputs["prompt_ids"][i][inputs["prompt_mask"][i] == 1].tolist())
            length = int(inputs["completion_mask"][i].sum())
            completion = tuple(inputs["completion_ids"][i][:length].tolist())
            logprobs, mask = by_ids[(prompt, completion)]
            assert inputs["tool_mask"][i][:length].tolist() == list(mask)
            np.testing.assert_allclose(inputs["sampling_per_token_logps"][i][:length].numpy(), logprobs, atol=1e-6)
            checked += 1
    assert checked == 16  # two steps of 8 completions


def test_grpo_trains_two_steps_on_sentiment(tmp_path):
    """Single turn: TRL gets every completion token as the agent's, with the policy's log-probs and the env's score."""
    rollout = Recording("textgym/Sentiment-v0", max_new_tokens=6)
    trainer = train_two_steps(tmp_path, "textgym/tiny-lm", "sentiment", rollout)
    check_what_trl_received(trainer, rollout)
    out = rollout.outputs[0]
    assert all(set(mask) == {1} for mask in out["env_mask"])
    assert all(1 <= len(c) <= 6 for c in out["completion_ids"])
    assert np.allclose(out["env_return"], out["score"]) and np.allclose(out["objective"], out["score"])  # kl_coef 0
    logged = [row for row in trainer.state.log_history if "rewards/env_score/mean" in row]
    assert len(logged) == 2
    assert logged[0]["rewards/env_score/mean"] == pytest.approx(np.mean(out["score"]), abs=1e-5)


def test_grpo_trains_two_steps_on_text_tictactoe_with_the_env_tokens_masked(tmp_path):
    """Multi-turn: the opponent's moves and the boards the env writes are masked; the agent's cells are not."""
    rollout = Recording("textgym/TextTicTacToe-v0")
    trainer = train_two_steps(tmp_path, "textgym/tictactoe-lm", "tictactoe", rollout)
    check_what_trl_received(trainer, rollout)
    move = load_tokenizer("textgym/tictactoe-lm").convert_tokens_to_ids("move")
    for out in rollout.outputs:
        for prompt, completion, mask, turns, score in zip(out["prompt_ids"], out["completion_ids"], out["env_mask"],
                                                          out["turn_rewards"], out["score"], strict=True):
            context = [*prompt, *completion]
            after_move = [int(context[len(prompt) + i - 1] == move) for i in range(len(completion))]
            assert list(mask) == after_move  # the agent writes exactly the cell after each "move" cue
            assert 0 in mask or len(completion) == 1
            assert sum(turns) == score and score in (-1.0, 0.0, 1.0)


def refusal(tmp_path, rollout, kit="textgym/tiny-lm", task="sentiment", reward_funcs=(env_score,), **overrides):
    """Call ``rollout`` as TRL would, with an untrained GRPOTrainer under ``overrides``."""
    trainer = trl.GRPOTrainer(model=load_causal_lm(kit), processing_class=load_tokenizer(kit),
                              reward_funcs=list(reward_funcs), args=config(tmp_path, **overrides),
                              train_dataset=prompt_dataset(task), rollout_func=rollout)
    return rollout(["", ""] if task == "tictactoe" else ["The movie", "The film"], trainer)


def test_the_kl_is_counted_once(tmp_path):
    """The env's KL with TRL's beta is refused; the env's KL without env_objective warns; TRL's alone is quiet."""
    with pytest.raises(ValueError, match="counted twice"):
        refusal(tmp_path, TextgymRollout("textgym/Sentiment-v0", kl_coef=0.05, max_new_tokens=2), beta=0.05)
    with pytest.warns(UserWarning, match="reaches no reward"):
        refusal(tmp_path, TextgymRollout("textgym/Sentiment-v0", kl_coef=0.05, max_new_tokens=2))
    with pytest.raises(ValueError, match="temperature=0.5 is not the trainer's 0.7"):
        refusal(tmp_path, TextgymRollout("textgym/Sentiment-v0", kl_coef=0.05, max_new_tokens=2, temperature=0.5),
                reward_funcs=[env_objective], temperature=0.7)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*reaches no reward")
        out = refusal(tmp_path, TextgymRollout("textgym/Sentiment-v0", max_new_tokens=2), beta=0.05)
    assert np.allclose(out["env_return"], out["score"])  # kl_coef 0: the env adds no KL of its own


def test_the_envs_kl_reaches_the_reward_through_env_objective(tmp_path):
    """With kl_coef: objective = score - kl_coef * kl = env_return - kl_coef * sum(logprobs), by the env's reference."""
    rollout = Recording("textgym/Sentiment-v0", kl_coef=0.5, max_new_tokens=4)
    trainer = train_two_steps(tmp_path, "textgym/tiny-lm", "sentiment", rollout, reward_funcs=[env_objective],
                              max_steps=1)
    out = rollout.outputs[0]
    for score, kl, logprobs, refs, env_return, objective in zip(
            out["score"], out["kl"], out["logprobs"], out["ref_logprobs"], out["env_return"], out["objective"],
            strict=True):
        assert kl == pytest.approx(sum(logprobs) - sum(refs))
        assert env_return == pytest.approx(score + 0.5 * sum(refs))
        assert objective == pytest.approx(score - 0.5 * kl)
    assert trainer.state.log_history[0]["rewards/env_objective/mean"] == pytest.approx(np.mean(out["objective"]),
                                                                                        abs=1e-4)


def test_a_temperature_other_than_one_samples_and_scores_at_that_temperature(tmp_path):
    """With TRL's KL (kl_coef 0), temperature 0.5 is honoured: TRL gets the log-probs of the tempered policy."""
    rollout = Recording("textgym/Sentiment-v0", max_new_tokens=4)
    trainer = train_two_steps(tmp_path, "textgym/tiny-lm", "sentiment", rollout, temperature=0.5)
    check_what_trl_received(trainer, rollout)  # the teacher-forced log-probs are taken at temperature 0.5
    model = load_causal_lm("textgym/tiny-lm")  # the first rollout's model: at temperature 1 its log-probs differ
    out = rollout.outputs[0]
    plain = completion_logprobs(model, out["prompt_ids"], out["completion_ids"], pad_id=0)
    assert not np.allclose(np.concatenate(out["logprobs"]), torch.cat(plain).numpy(), atol=1e-2)


@pytest.mark.parametrize(("setting", "value"), [("top_p", 0.9), ("top_k", 5), ("min_p", 0.1),
                                               ("repetition_penalty", 1.1), ("generation_kwargs", {"a": 1})])
def test_sampling_settings_the_rollout_cannot_honour_are_refused(tmp_path, setting, value):
    """Each sampling setting the rollout cannot honour is refused by name rather than ignored."""
    with pytest.raises(ValueError, match=setting):
        refusal(tmp_path, TextgymRollout("textgym/Sentiment-v0"), **{setting: value})


def test_bad_arguments_are_refused_clearly(tmp_path):
    """An unknown id, a toy env, a bad kl_coef, another tokenizer, masked truncation on a game, chat prompts."""
    with pytest.raises(ValueError, match="unknown environment id"):
        TextgymRollout("textgym/Nope-v0")
    for bad in (-1, float("nan"), "0.1"):
        with pytest.raises(ValueError, match="kl_coef"):
            TextgymRollout("textgym/Sentiment-v0", kl_coef=bad)
    with pytest.raises(TypeError, match="not a textgym text environment"):
        refusal(tmp_path, TextgymRollout("textgym/TicTacToe-v0"), kit="textgym/tictactoe-lm", task="tictactoe")
    with pytest.raises(ValueError, match="processing_class"):
        refusal(tmp_path, TextgymRollout("textgym/Sentiment-v0"), kit="textgym/tictactoe-lm")
    with pytest.raises(ValueError, match="mask_truncated_completions"):
        refusal(tmp_path, TextgymRollout("textgym/TextTicTacToe-v0"), kit="textgym/tictactoe-lm", task="tictactoe",
                mask_truncated_completions=True)
    trainer = trl.GRPOTrainer(model=load_causal_lm("textgym/tiny-lm"), reward_funcs=[env_score], args=config(tmp_path),
                              processing_class=load_tokenizer("textgym/tiny-lm"), train_dataset=prompt_dataset())
    with pytest.raises(TypeError, match="text prompts"):
        TextgymRollout("textgym/Sentiment-v0")([[{"role": "user", "content": "The movie"}]] * 2, trainer)


def test_the_seed_fixes_the_rollouts(tmp_path):
    """The same seed plays the same episodes; another seed other ones; None takes the trainer's args.seed."""
    def tokens(**seed):
        return refusal(tmp_path, TextgymRollout("textgym/Sentiment-v0", max_new_tokens=6, **seed))["completion_ids"]

    assert tokens(seed=5) == tokens(seed=5) != tokens(seed=6)
    assert tokens() == tokens(seed=0)  # config() sets args.seed=0


def test_prompt_dataset_holds_a_tasks_prompts():
    """Each split's prompts, repeated; a bad repeat is refused."""
    from textgym.tasks import get_task

    assert prompt_dataset("sentiment", split="test")["prompt"] == get_task("sentiment").prompts("test")
    assert prompt_dataset("tictactoe", repeat=3)["prompt"] == ["", "", ""]
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="repeat"):
            prompt_dataset("tictactoe", repeat=bad)


def test_only_the_integration_imports_trl():
    """TRL is an optional extra: no module of textgym or agents but textgym/integrations/trl.py imports it."""
    for file in [*sorted((ROOT / "textgym").rglob("*.py")), *sorted((ROOT / "agents").rglob("*.py"))]:
        if file == ROOT / "textgym" / "integrations" / "trl.py":
            continue
        for node in ast.walk(ast.parse(file.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            assert not any(n == "trl" or n.startswith("trl.") for n in names), file


def tictactoe_score(model, games=256, seed=123):
    """The mean score of ``model``'s games against the random opponent, played by textgym's episode runner."""
    envs = gym.make_vec("textgym/TextTicTacToe-v0", num_envs=games, vectorization_mode="vector_entry_point",
                        opponent="random")
    episodes = play_episodes(envs, model, [""] * games, seed=seed, generator=torch.Generator().manual_seed(seed))
    return float(np.mean([e.score for e in episodes]))


@pytest.mark.slow
def test_grpo_with_textgym_rollouts_learns_text_tictactoe(tmp_path):
    """From a fixed seed, 30 GRPO steps with textgym's rollouts raise the kit LM's score against random play.

    Measured: -0.65 before, -0.20 after (256 games); the bar is a rise of 0.2.
    """
    model = load_causal_lm("textgym/tictactoe-lm")
    before = tictactoe_score(model)
    trainer = trl.GRPOTrainer(
        model=model, processing_class=load_tokenizer("textgym/tictactoe-lm"), reward_funcs=[env_score],
        args=config(tmp_path, per_device_train_batch_size=32, num_generations=8, max_steps=30, learning_rate=3e-3),
        train_dataset=prompt_dataset("tictactoe", repeat=960),
        rollout_func=TextgymRollout("textgym/TextTicTacToe-v0", opponent="random"))
    trainer.train()
    after = tictactoe_score(trainer.model)
    assert after > before + 0.2, (before, after)


def test_the_envs_reference_is_scored_at_the_trainers_temperature(tmp_path):
    """Policy = reference before any update: at temperature 0.7 on both sides the env's KL is 0 per completion."""
    out = refusal(tmp_path, TextgymRollout("textgym/Sentiment-v0", kl_coef=0.05, max_new_tokens=4),
                  reward_funcs=[env_objective], temperature=0.7)
    assert np.allclose(out["kl"], 0, atol=1e-4)
    assert not np.allclose(out["ref_logprobs"][0], 0)
