"""The algorithms away from their defaults: KL placement, steps per batch, policies per batch, credit, hooks."""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch

import textgym  # noqa: F401
from agents import agent_class
from agents.grpo import GRPO
from agents.lm import LMConfig
from agents.reinforce import REINFORCE
from agents.rloo import RLOO
from agents.rollout import Episode, EpisodeBatch, Rollout, complete, evaluate
from textgym.models.tiny import random_causal_lm
from textgym.rewards import KeywordReward

pytestmark = pytest.mark.filterwarnings("ignore::textgym.rewards.DeadRewardWarning")
PROMPTS = ["w1 w2", "w3", "w4 w6 w7"]


def make(tokenizer, lm, num_envs=8, group_size=1, **overrides):
    """A vector TextGeneration env on a copy of ``lm`` that rewards ``w5``, with ``overrides`` applied."""
    kwargs = dict(model=copy.deepcopy(lm), tokenizer=tokenizer, prompts=PROMPTS, reward_fn=KeywordReward(["w5"]),
                  max_context=16, max_new_tokens=5, kl_coef=0.01, ref_scoring="episode")
    return gym.make_vec("textgym/TextGeneration-v0", num_envs=num_envs, group_size=group_size,
                        vectorization_mode="vector_entry_point", **{**kwargs, **overrides})


def count_forwards(lm):
    """Record the batch size of every trunk forward of ``lm``; returns the list it appends to."""
    calls, trunk = [], lm.transformer.forward
    lm.transformer.forward = lambda *a, **k: (calls.append(k["input_ids"].shape[0]), trunk(*a, **k))[1]
    return calls


# ------------------------------------------------------------------------------------------ defaults per algorithm
def test_config_fields_left_none_take_the_algorithms_defaults(tokenizer, lm, tmp_path):
    """GRPO puts the KL in the loss, REINFORCE takes one step per batch, others keep theirs; explicit values win."""
    assert GRPO(lm, tokenizer).cfg.kl_in_loss and not RLOO(lm, tokenizer).cfg.kl_in_loss
    assert not GRPO(lm, tokenizer, LMConfig(kl_in_loss=False)).cfg.kl_in_loss
    steps = REINFORCE(lm, tokenizer).cfg
    assert (steps.update_epochs, steps.num_minibatches) == (1, 1)
    assert (RLOO(lm, tokenizer).cfg.update_epochs, RLOO(lm, tokenizer).cfg.num_minibatches) == (2, 2)
    agent = GRPO(copy.deepcopy(lm), tokenizer)
    agent.save(tmp_path / "grpo")
    assert GRPO.load(tmp_path / "grpo").cfg == agent.cfg  # the saved config holds the values used


@pytest.mark.slow
def test_textgym_train_builds_grpo_with_its_kl_in_the_loss():
    """``textgym train --agent grpo`` makes a GRPO with the KL in the loss unless ``--no-kl-in-loss`` is given."""
    from accelerate import Accelerator

    from textgym.app.config import TrainConfig
    from textgym.app.harness import check_config, load_agent

    for given, expected in ((None, True), (False, False)):
        cfg = TrainConfig(agent="grpo", num_envs=4, batch_episodes=4, kl_in_loss=given)
        agent = load_agent(cfg, check_config(cfg), None, Accelerator())
        assert agent.cfg.kl_in_loss is expected and cfg.kl_in_loss is given  # the run's config keeps "the algorithm's"


# ------------------------------------------------------------------------------------------ GRPO's KL
def other_lm(tokenizer):
    """A reference unlike the conftest's ``lm``: a KL above 0."""
    return random_causal_lm(len(tokenizer), n_layer=2, n_embd=32, n_positions=64, seed=1)


def tied_rows(batch):
    """(B,) bool: the episodes whose group scored alike."""
    return torch.tensor([batch.scores[batch.groups == g].unique().numel() == 1 for g in batch.groups])


def test_grpo_tied_groups_get_zero_advantages_and_kl_coef_changes_the_loss_only(tokenizer, lm):
    """By default a tied group's advantages are exactly 0 whatever the KL, and ``kl_coef`` moves the loss only."""
    agent = GRPO(copy.deepcopy(lm), tokenizer, LMConfig(batch_episodes=16))
    envs = make(tokenizer, lm, group_size=4, model=other_lm(tokenizer))
    batch = EpisodeBatch.from_episodes(agent.prepare(envs).collect(16), agent.pad_id)
    results = []
    for kl_coef in (0.01, 1.0):
        envs.unwrapped.kl_coef = kl_coef
        agent.prepare(envs)
        agent.advantages(batch, agent.rewards(batch))
        with torch.no_grad():
            results.append((batch.advantages.clone(), agent.loss(batch)[0]))
    tied = tied_rows(batch)
    assert tied.any() and (~tied).any()
    assert results[0][0][tied].eq(0).all() and results[1][0][tied].eq(0).all()
    torch.testing.assert_close(results[0][0], results[1][0], rtol=0, atol=0)
    assert results[0][1] != results[1][1]


def test_grpo_with_the_kl_in_the_reward_normalises_kl_noise(tokenizer, lm):
    """``kl_in_loss=False`` (the KL in the return) gives tied groups advantages: the documented alternative."""
    agent = GRPO(copy.deepcopy(lm), tokenizer, LMConfig(batch_episodes=16, kl_in_loss=False))
    envs = make(tokenizer, lm, group_size=4, model=other_lm(tokenizer))
    batch = EpisodeBatch.from_episodes(agent.prepare(envs).collect(16), agent.pad_id)
    agent.advantages(batch, agent.rewards(batch))
    tied = tied_rows(batch)
    assert batch.advantages[tied].abs().max() > 0.1


# ------------------------------------------------------------------------------------------ REINFORCE's steps
def test_reinforce_takes_one_on_policy_step_per_batch(tokenizer, lm):
    """By default one forward and one optimizer step per batch, at the behaviour policy (ratio 1)."""
    model = copy.deepcopy(lm)
    agent = REINFORCE(model, tokenizer, LMConfig(batch_episodes=8, learning_rate=1e-2))
    envs = make(tokenizer, lm)
    batch = EpisodeBatch.from_episodes(agent.prepare(envs).collect(8), agent.pad_id)
    with torch.no_grad():
        logprobs, _, _ = evaluate(agent.policy, batch, agent.num_actions)
    torch.testing.assert_close(logprobs * batch.token_mask, batch.logprobs * batch.token_mask, atol=1e-4, rtol=0)
    calls = count_forwards(model)
    row = agent.update(batch)
    assert calls == [8] and row["losses/approx_kl"] < 1e-8


@pytest.mark.slow
def test_reinforce_learns_at_its_default_one_step_per_batch(tokenizer):
    """The keyword task of ``test_lm_agents`` at REINFORCE's defaults: from under 0.5 to a mean over 3 of 6."""
    torch.manual_seed(0)
    lm = random_causal_lm(len(tokenizer), 2, 32, n_positions=64, seed=0)
    envs = make(tokenizer, lm, num_envs=16, max_new_tokens=6)
    rows = REINFORCE(lm, tokenizer, LMConfig(learning_rate=3e-3, batch_episodes=32)).learn(envs, total_steps=6000)
    assert rows[0]["objective/score"] < 0.5 and np.mean([row["objective/score"] for row in rows[-5:]]) > 3.0


def test_reinforce_corrects_extra_steps_with_the_importance_ratio_and_honours_target_kl(tokenizer, lm):
    """Off the behaviour policy the loss is ``-A * pi / pi_old`` (by hand), and ``target_kl`` stops the epochs."""
    agent = REINFORCE(copy.deepcopy(lm), tokenizer, LMConfig(batch_episodes=8, norm_adv=False))
    batch = EpisodeBatch.from_episodes(agent.prepare(make(tokenizer, lm)).collect(8), agent.pad_id)
    agent.advantages(batch, agent.rewards(batch))
    batch.logprobs = batch.logprobs - 0.5  # as if the behaviour policy were further from these tokens
    with torch.no_grad():
        loss, stats = agent.loss(batch)
        logprobs, _, _ = evaluate(agent.policy, batch, agent.num_actions)
    mask = batch.token_mask
    expected = -(batch.advantages * (logprobs - batch.logprobs).exp() * mask).sum() / mask.sum()
    torch.testing.assert_close(loss, expected)
    assert stats["losses/approx_kl"].item() == pytest.approx(np.exp(0.5) - 1 - 0.5, rel=1e-3)
    forwards = []
    for target_kl in (None, 1e-12):
        model = copy.deepcopy(lm)
        agent = REINFORCE(model, tokenizer, LMConfig(batch_episodes=8, update_epochs=4, learning_rate=1e-2,
                                                     target_kl=target_kl))
        batch = EpisodeBatch.from_episodes(agent.prepare(make(tokenizer, lm)).collect(8), agent.pad_id)
        forwards.append(count_forwards(model))
        agent.update(batch)
    assert forwards == [[8] * 4, [8] * 2]  # epoch 1 is at the behaviour policy; epoch 2 measures its KL and stops


# ------------------------------------------------------------------------------------------ one policy per batch
class Checked(REINFORCE):
    """REINFORCE that records, per batch, how far its behaviour log-probs are from the current weights'."""

    def advantages(self, batch: EpisodeBatch, rewards: torch.Tensor) -> None:
        """Record the largest gap, then REINFORCE's advantages."""
        with torch.no_grad():
            logprobs, _, _ = evaluate(self.policy, batch, self.num_actions)
        self.gaps.append(float(((logprobs - batch.logprobs) * batch.token_mask).abs().max()))
        super().advantages(batch, rewards)


class Scripted:
    """A sampler whose slot 0 ends every episode at once (EOS) while the other slots write until truncated."""

    last_values = None

    def act(self, obs, episode_start, action_mask=None, deterministic=False):
        """Token 5 everywhere, EOS (0) in slot 0."""
        self.last_logprobs = np.zeros(len(episode_start))
        return np.where(np.arange(len(episode_start)) == 0, 0, 5)


def test_a_batch_holds_the_episodes_started_first_not_the_first_to_finish(tokenizer, lm):
    """A batch is each slot's next episodes, fixed before sampling: short answers do not crowd out long ones."""
    rollout = Rollout(make(tokenizer, lm, num_envs=4, max_new_tokens=3), Scripted(), seed=0)
    assert [len(e.completion_ids) for e in rollout.collect(4)] == [1, 3, 3, 3]
    assert [len(e.completion_ids) for e in rollout.collect(4)] == [1, 3, 3, 3]


def test_every_token_of_a_batch_was_sampled_by_the_weights_of_its_update(tokenizer, lm):
    """Across updates, each batch's behaviour log-probs equal teacher forcing under the weights it is updated from."""
    agent = Checked(copy.deepcopy(lm), tokenizer, LMConfig(batch_episodes=4, learning_rate=3e-2))
    agent.gaps = []
    rows = agent.learn(make(tokenizer, lm, num_envs=4, prompts=["w1 w2 w3"]), total_steps=100)
    assert len(rows) >= 4 and max(agent.gaps) < 1e-4, agent.gaps


# ------------------------------------------------------------------------------------------ per-token credit
def credit_batch(token_scores):
    """Two groups of two episodes of three tokens, scores placed by ``token_scores`` (None: at the end)."""
    scores = [1.0, 3.0, 2.0, 2.0]
    placed = [None, None, None, None] if token_scores is None else token_scores
    episodes = [Episode(np.array([1]), np.array([4, 5, 6]), np.zeros(3), score, np.zeros(3), token_scores=place,
                        group=row // 2) for row, (score, place) in enumerate(zip(scores, placed, strict=True))]
    return EpisodeBatch.from_episodes(episodes, pad_id=0)


def test_reinforce_pays_each_part_of_the_score_from_its_token_back(tokenizer, lm):
    """REINFORCE's advantage at a token is what was earned at it and after it (hand-computed reward-to-go)."""
    agent = REINFORCE(lm, tokenizer)
    batch = credit_batch([np.array([1.0, 0.0, 0.0]), np.array([0.0, 2.0, 1.0]), None, None])
    agent.advantages(batch, agent.rewards(batch))
    assert batch.advantages.tolist() == [[1.0, 0.0, 0.0], [3.0, 3.0, 1.0], [2.0, 2.0, 2.0], [2.0, 2.0, 2.0]]


@pytest.mark.parametrize("name", ["rloo", "grpo"])
def test_group_baselines_compare_whole_completions_wherever_the_score_was_earned(tokenizer, lm, name):
    """RLOO's and GRPO's advantages are the same with the score paid in parts or at the end (documented)."""
    agent = agent_class(name)(lm, tokenizer)
    advantages = []
    for placed in ([np.array([1.0, 0.0, 0.0]), np.array([0.0, 2.0, 1.0]), np.array([2.0, 0, 0]), None], None):
        batch = credit_batch(placed)
        agent.advantages(batch, agent.rewards(batch))
        advantages.append(batch.advantages)
    torch.testing.assert_close(advantages[0], advantages[1])
    assert advantages[0][0, 0] < 0 < advantages[0][1, 0]


# ------------------------------------------------------------------------------------------ hooks for new algorithms
def test_the_batch_carries_its_prompts_and_complete_answers_them_as_the_env_scores(tokenizer, lm):
    """Episodes keep their prompt text and length; ``complete`` answers prompts greedily, in order, env-scored."""
    agent = REINFORCE(copy.deepcopy(lm), tokenizer, LMConfig(batch_episodes=8))
    envs = make(tokenizer, lm, num_envs=4, group_size=2, reward_fn=KeywordReward(["w1", "w9"]))
    episodes = agent.prepare(envs).collect(8)
    batch = EpisodeBatch.from_episodes(episodes, agent.pad_id)
    assert set(batch.prompts) <= set(PROMPTS) and [e.prompt for e in episodes] == list(batch.prompts)
    assert EpisodeBatch.concat([batch, batch]).prompts == batch.prompts * 2
    assert batch.prompt_lengths.tolist() == [len(tokenizer(p)["input_ids"]) for p in batch.prompts]
    prompts = ["w1 w2", "w3", "w4 w6 w7"]
    first, again = complete(envs, agent.sampler, prompts), complete(envs, agent.sampler, prompts)
    assert [e.prompt for e in first] == prompts
    assert [e.completion_ids.tolist() for e in first] == [e.completion_ids.tolist() for e in again]
    for episode in first:  # the greedy answer: the most likely token at every step
        ids = torch.tensor([[*episode.prompt_ids, *episode.completion_ids]])
        with torch.no_grad():
            best = agent.model(ids).logits[0, len(episode.prompt_ids) - 1:-1].argmax(-1)
        assert best.tolist() == episode.completion_ids.tolist()
        text = tokenizer.decode(episode.completion_ids, skip_special_tokens=True)
        assert episode.score == KeywordReward(["w1", "w9"])([episode.prompt], [text])[0]


def test_textgym_train_refuses_groups_of_one_for_group_baselines_before_building_anything():
    """``textgym train --agent grpo --group-size 1`` fails at the config check, with the same message as the agent."""
    from textgym.app.config import TrainConfig
    from textgym.app.harness import check_config

    with pytest.raises(ValueError, match="GRPO compares the completions of one prompt .* group_size=1"):
        check_config(TrainConfig(agent="grpo", group_size=1))


def test_the_train_command_leaves_unset_algorithm_defaults_unset_and_takes_kl_in_loss_both_ways(monkeypatch, capsys,
                                                                                             tmp_path):
    """``--kl-in-loss`` / ``--no-kl-in-loss`` set it; left out, the run's config says None (the algorithm's)."""
    from textgym.app import harness
    from textgym.app.cli import main

    seen = []
    monkeypatch.setattr(harness, "train", lambda cfg, resume: seen.append(cfg) or {"minutes": 0.0})
    for flags in ([], ["--kl-in-loss"], ["--no-kl-in-loss"]):
        assert main(["train", "--agent", "grpo", *flags]) == 0
    assert [(c.kl_in_loss, c.update_epochs, c.num_minibatches) for c in seen] == [
        (None, None, None), (True, None, None), (False, None, None)]
    monkeypatch.undo()
    assert main(["train", "--agent", "grpo", "--group-size", "1", "--out", str(tmp_path / "run")]) == 2
    assert "group_size=1" in capsys.readouterr().err
