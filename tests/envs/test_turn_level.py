"""TurnLevel: an episode played a turn at a time equals its token-level twin, token for token."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import textgym  # noqa: F401
from textgym.envs import TurnLevel
from textgym.envs.turns import Reply, Turns
from textgym.models import load_causal_lm, load_tokenizer


class Echo(Turns):
    """Three turns ended by ``w9``; each reply is two words and pays 0.5, the third turn ends the game with 1."""

    end_of_turn = "w9"
    max_turn_tokens = 4

    def begin(self, prompt, rng):
        """Open with two words."""
        return {"turns": 0}, Reply("w1 w2")

    def reply(self, state, text):
        """Two words and 0.5, or the end with 1 after the third turn."""
        state["turns"] += 1
        return Reply(reward=1.0, done=True) if state["turns"] == 3 else Reply("w3 w4", reward=0.5)


def token_level(env, turns, seed):
    """Play ``turns`` (lists of ids; a callable of the info for the next turn) one token per step."""
    obs, info = env.reset(seed=seed)
    context = obs["input_ids"][obs["attention_mask"] == 1].tolist()
    rewards, refs, masks = [], [], [info.get("action_mask")]
    for turn in turns:
        for token in turn(info) if callable(turn) else turn:
            obs, reward, terminated, truncated, info = env.step(int(token))
            rewards.append(reward)
            refs.append(info["ref_logprob"])
            if terminated or truncated:
                return context, rewards, refs, masks, info
        masks.append(info.get("action_mask"))
    raise AssertionError("the episode did not end")


def turn_level(env, turns, seed):
    """The same turns, one step each, through TurnLevel."""
    wrapped = TurnLevel(env)
    obs, info = wrapped.reset(seed=seed)
    context, rewards, refs, masks, replies = obs.tolist(), [], [], [info.get("action_mask")], []
    for turn in turns:
        action = turn(info) if callable(turn) else turn
        obs, reward, terminated, truncated, info = wrapped.step(action)
        assert reward == pytest.approx(sum(info["action_rewards"]))
        rewards += info["action_rewards"].tolist()
        refs += info["action_ref_logprobs"].tolist()
        replies.append(obs.tolist())
        if terminated or truncated:
            return context, rewards, refs, masks, info, replies
        assert info["turn_over"]
        masks.append(info.get("action_mask"))
    raise AssertionError("the episode did not end")


def assert_twins(token, turn):
    """Same starting context, per-token rewards and KL terms, masks, completion ids, agent mask and score."""
    context, rewards, refs, masks, final = token
    t_context, t_rewards, t_refs, t_masks, t_final, _ = turn
    assert t_context == context
    assert t_rewards == rewards and t_refs == refs
    assert len(t_masks) == len(masks)
    for mine, theirs in zip(t_masks, masks, strict=True):
        assert (mine is None and theirs is None) or np.array_equal(mine, theirs)
    for key in ("completion_ids", "ref_logprobs", "agent_mask", "turn_rewards"):
        if key in final:
            np.testing.assert_array_equal(t_final[key], final[key])
    assert t_final["score"] == final["score"] and t_final["reward_terms"] == final["reward_terms"]


def test_a_single_turn_episode_equals_its_token_level_twin(env_kwargs, tokenizer):
    """One completion, written as one action (ids or text), equals the same tokens stepped one by one."""
    kwargs = {**env_kwargs, "kl_coef": 0.1}
    ids = tokenizer("w3 w8 w5 w3 w1 w2", add_special_tokens=False)["input_ids"]
    token = token_level(gym.make("textgym/TextGeneration-v0", **kwargs), [ids], seed=4)
    turn = turn_level(gym.make("textgym/TextGeneration-v0", **kwargs), [ids], seed=4)
    assert_twins(token, turn)
    text = turn_level(gym.make("textgym/TextGeneration-v0", **kwargs), ["w3 w8 w5 w3 w1 w2"], seed=4)
    assert_twins(token, text)
    assert token[4]["reward_terms"]["kl_ref"] != 0 and turn[4]["action_ids"].tolist() == ids


def test_a_conversation_equals_its_token_level_twin(env_kwargs, tokenizer):
    """Multi-token turns of a conversation: the replies the wrapper observes are the env's tokens, in place."""
    kwargs = {**env_kwargs, "turns": Echo(), "max_context": 32, "max_new_tokens": 16, "kl_coef": 0.1}
    turns = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in ("w5 w6 w9", "w7 w9", "w8 w8 w8 w9")]
    token = token_level(gym.make("textgym/TextGeneration-v0", **kwargs), turns, seed=0)
    turn = turn_level(gym.make("textgym/TextGeneration-v0", **kwargs), turns, seed=0)
    assert_twins(token, turn)
    replies, final = turn[5], turn[4]
    reply = tokenizer("w3 w4", add_special_tokens=False)["input_ids"]
    assert replies == [reply, reply, []]
    assert final["completion_ids"].tolist() == [*turns[0], *reply, *turns[1], *reply, *turns[2]]
    assert final["turn_rewards"].sum() == 2.0 and final["score"] == 2.0 + 3.0  # and w5, w3, w3: the keyword reward


@pytest.mark.parametrize("illegal", ["mask", "loss"])
def test_a_text_tictactoe_game_equals_its_token_level_twin(illegal):
    """TextTicTacToe-v0: each move is a turn; the opponent's move and board are the observation."""
    model, tokenizer = load_causal_lm("textgym/tictactoe-lm"), load_tokenizer("textgym/tictactoe-lm")
    cells = [tokenizer.convert_tokens_to_ids(str(cell)) for cell in range(1, 10)]

    def lowest_cell(info):
        allowed = [c for c in cells if info.get("action_mask") is None or info["action_mask"][c]]
        return [allowed[0]]

    kwargs = dict(model=model, tokenizer=tokenizer, opponent="random", illegal=illegal, kl_coef=0.1)
    token = token_level(gym.make("textgym/TextTicTacToe-v0", **kwargs), [lowest_cell] * 5, seed=2)
    turn = turn_level(gym.make("textgym/TextTicTacToe-v0", **kwargs), [lowest_cell] * 5, seed=2)
    assert_twins(token, turn)
    final, replies = turn[4], turn[5]
    rebuilt = [t for move, reply in zip(final["completion_ids"][final["agent_mask"] == 1], replies, strict=True)
               for t in [int(move), *reply]]
    assert rebuilt == final["completion_ids"].tolist()  # each observation is exactly the env's tokens after a move
    assert tokenizer.decode(replies[0]).split()[0] == "O"


def test_actions_that_are_not_a_turn_are_refused(env_kwargs, tokenizer):
    """Too many tokens for the turn ends the episode with a clear error; empty, 2-D and float actions are refused."""
    env = TurnLevel(gym.make("textgym/TextGeneration-v0", **{**env_kwargs, "turns": Echo(), "max_context": 32,
                                                             "max_new_tokens": 16}))
    env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step([5])  # a turn may take several actions
    assert obs.tolist() == [] and not info["turn_over"] and not terminated
    with pytest.raises(ValueError, match="turn ended after 1 of the action's 2 tokens"):
        env.step(tokenizer("w9 w5", add_special_tokens=False)["input_ids"])
    with pytest.raises(RuntimeError, match="reset"):
        env.step([5])
    env.reset(seed=0)
    for bad, error in (([], ValueError), ("", ValueError), ([[5, 6]], TypeError), ([0.5], TypeError)):
        with pytest.raises(error, match="action"):
            env.step(bad)
    with pytest.raises(TypeError, match="TurnLevel wraps a textgym text environment"):
        TurnLevel(gym.make("textgym/TicTacToe-v0"))


def test_episode_scoring_pays_at_the_end_and_has_no_per_token_ref_logprobs(env_kwargs, tokenizer):
    """With ref_scoring="episode" the turn's reward is the episode's return, and the KL terms are in the final info."""
    kwargs = {**env_kwargs, "kl_coef": 0.1}
    ids = tokenizer("w3 w8 w5 w3 w1 w2", add_special_tokens=False)["input_ids"]
    step_env = TurnLevel(gym.make("textgym/TextGeneration-v0", **kwargs))
    episode_env = TurnLevel(gym.make("textgym/TextGeneration-v0", ref_scoring="episode", **kwargs))
    step_env.reset(seed=1)
    episode_env.reset(seed=1)
    _, step_return, *_, step_info = step_env.step(ids)
    _, episode_return, *_, episode_info = episode_env.step(ids)
    assert "action_ref_logprobs" not in episode_info and episode_info["action_rewards"][:-1].tolist() == [0.0] * 5
    assert episode_return == pytest.approx(step_return, abs=1e-5)
    np.testing.assert_allclose(episode_info["ref_logprobs"], step_info["action_ref_logprobs"], atol=1e-5)
