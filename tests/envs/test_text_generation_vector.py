"""TextGenerationVectorEnv: lockstep batching must equal N single environments."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

import textgym  # noqa: F401

EOS = 0


def make_vec(env_kwargs, num_envs, **overrides):
    """Make the vector TextGeneration env of ``num_envs`` slots from ``env_kwargs`` with ``overrides`` applied."""
    return gym.make_vec("textgym/TextGeneration-v0", num_envs=num_envs, vectorization_mode="vector_entry_point",
                        **{**env_kwargs, **overrides})


def action_table(num_envs, steps, seed=0):
    """Random token actions with frequent EOS, so episodes end at different steps."""
    rng = np.random.default_rng(seed)
    actions = rng.integers(1, 48, (steps, num_envs))
    actions[rng.random((steps, num_envs)) < 0.15] = EOS
    return actions


def single_rollouts(env_kwargs, num_envs, actions, seed, **overrides):
    """Slot i as its own env: reset(seed=seed + i), then plain reset() after each episode (SAME_STEP)."""
    out = []
    for i in range(num_envs):
        env = gym.make("textgym/TextGeneration-v0", **{**env_kwargs, **overrides}).unwrapped
        obs, info = env.reset(seed=seed + i)
        rows = []
        for action in actions[:, i]:
            obs_next, reward, terminated, truncated, step_info = env.step(int(action))
            if terminated or truncated:
                final = (obs_next, step_info)
                obs_next, reset_info = env.reset()
                rows.append((obs_next, reward, terminated, truncated, reset_info, final))
            else:
                rows.append((obs_next, reward, terminated, truncated, step_info, None))
        out.append(rows)
    return out


@pytest.mark.filterwarnings("ignore::textgym.rewards.DeadRewardWarning")
@pytest.mark.parametrize("ref_scoring", ["step", "episode"])
def test_vector_equals_single_envs(env_kwargs, ref_scoring):
    """Each slot gives the same observations, rewards, ends, infos and final infos as its own single env."""
    num_envs, steps, seed = 4, 20, 7
    actions = action_table(num_envs, steps)
    expected = single_rollouts(env_kwargs, num_envs, actions, seed, ref_scoring=ref_scoring)
    envs = make_vec(env_kwargs, num_envs, ref_scoring=ref_scoring)
    assert envs.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    obs, info = envs.reset(seed=seed)
    ended = 0
    for t in range(steps):
        obs, rewards, terminated, truncated, info = envs.step(actions[t])
        for i in range(num_envs):
            e_obs, e_reward, e_term, e_trunc, e_info, e_final = expected[i][t]
            for key in ("input_ids", "attention_mask"):
                np.testing.assert_array_equal(obs[key][i], e_obs[key])
            assert rewards[i] == pytest.approx(e_reward, abs=1e-5)
            assert (terminated[i], truncated[i]) == (e_term, e_trunc)
            if e_final is None:
                if ref_scoring == "step":
                    assert info["_ref_logprob"][i] and (
                        info["ref_logprob"][i] == pytest.approx(e_info["ref_logprob"], abs=1e-5))
                continue
            ended += 1
            assert info["prompt"][i] == e_info["prompt"]
            final_obs, final_info = e_final
            np.testing.assert_array_equal(info["final_obs"][i]["input_ids"], final_obs["input_ids"])
            assert info["final_info"]["score"][i] == final_info["score"]
            assert info["final_info"]["completion"][i] == final_info["completion"]
            np.testing.assert_array_equal(info["final_info"]["completion_ids"][i], final_info["completion_ids"])
            np.testing.assert_allclose(info["final_info"]["ref_logprobs"][i], final_info["ref_logprobs"], atol=1e-5)
    assert ended >= 8  # the action table ends episodes at many different steps


def test_one_reward_call_per_step_for_all_ending_episodes(env_kwargs):
    """Episodes that end on the same step are scored in one reward call."""
    calls = []

    class Counting:
        name = "counting"

        def __call__(self, prompts, completions):
            calls.append(len(completions))
            return np.arange(len(completions), dtype=float)

    envs = make_vec(env_kwargs, 5, reward_fn=Counting(), max_new_tokens=3)
    envs.reset(seed=0)
    for _ in range(3):
        envs.step(np.full(5, 7))
    assert calls == [5]


def test_reset_options_prompt_per_slot(env_kwargs):
    """A list of prompts in the reset options sets each slot's prompt; a wrong count is refused."""
    envs = make_vec(env_kwargs, 2)
    obs, info = envs.reset(options={"prompt": ["w1", "w2 w3"]})
    assert info["prompt"].tolist() == ["w1", "w2 w3"]
    assert obs["attention_mask"].sum(1).tolist() == [1, 2]
    with pytest.raises(ValueError, match="3 prompts for 2 envs"):
        envs.reset(options={"prompt": ["w1", "w2", "w3"]})


def test_vector_bad_actions(env_kwargs):
    """Stepping before reset, or with a wrong shape, non-integer or out-of-vocabulary actions, raises."""
    envs = make_vec(env_kwargs, 3)
    with pytest.raises(RuntimeError, match="reset"):
        envs.step(np.ones(3, int))
    envs.reset(seed=0)
    with pytest.raises(TypeError, match="shape \\(3,\\)"):
        envs.step(np.ones(2, int))
    with pytest.raises(TypeError, match="integer token ids"):
        envs.step(np.ones(3))
    with pytest.raises(ValueError, match="not a token id"):
        envs.step(np.array([1, 2, 99]))


def test_vector_render(env_kwargs):
    """ANSI rendering returns each slot's decoded context."""
    envs = make_vec(env_kwargs, 2, render_mode="ansi")
    envs.reset(options={"prompt": "w1"})
    envs.step(np.array([2, 3]))
    assert envs.render() == ("w1 w2", "w1 w3")


@pytest.mark.filterwarnings("ignore::textgym.rewards.DeadRewardWarning")
def test_a_list_of_seeds_seeds_each_group(env_kwargs):
    """``seed=[s, s + 1]`` draws what ``seed=s`` does (group g gets ``s + g``); a wrong count is refused."""
    envs = make_vec(env_kwargs, 4, group_size=2, prompts=[f"w{i}" for i in range(1, 40)])
    _, by_int = envs.reset(seed=3)
    _, by_list = envs.reset(seed=[3, 4])
    assert by_list["prompt"].tolist() == by_int["prompt"].tolist()
    with pytest.raises(ValueError, match="3 seeds for 2 groups"):
        envs.reset(seed=[1, 2, 3])


def test_groups_answer_the_same_prompts_whenever_their_slots_get_there(env_kwargs):
    """The slots of a group answer the same prompt each round, whenever they get there; rounds differ."""
    envs = make_vec(env_kwargs, 6, group_size=3, prompts=[f"w{i}" for i in range(1, 40)])
    obs, info = envs.reset(seed=3)
    rounds = {}  # group id -> prompts its episodes answered
    for slot in range(6):
        rounds.setdefault(info["group_id"][slot], []).append(info["prompt"][slot])
    actions = action_table(6, 40, seed=1)
    for t in range(40):
        obs, _, terminated, truncated, info = envs.step(actions[t])
        for slot in np.flatnonzero(terminated | truncated):
            rounds.setdefault(info["group_id"][slot], []).append(info["prompt"][slot])
    assert len(rounds) >= 10
    for group_id, prompts in rounds.items():
        assert len(set(prompts)) == 1, (group_id, prompts)  # one prompt per (group, round)
        assert len(prompts) <= 3
    assert sum(len(p) == 3 for p in rounds.values()) >= 6  # most rounds were completed by all three slots
    assert len({p[0] for p in rounds.values()}) > 3  # and rounds differ
    with pytest.raises(ValueError, match="group_size=4 must divide num_envs=6"):
        make_vec(env_kwargs, 6, group_size=4)


def test_kl_coef_is_one_value_the_env_uses_and_agents_may_set(env_kwargs):
    """Setting ``kl_coef`` on the vector env changes the shaping its rewards use; NaN is refused."""
    envs = make_vec(env_kwargs, 2, kl_coef=0.1, ref_scoring="step")
    envs.reset(seed=0)
    envs.kl_coef = 0.5
    _, rewards, *_ , info = envs.step(np.array([3, 4]))
    np.testing.assert_allclose(rewards, 0.5 * info["ref_logprob"])
    with pytest.raises(ValueError, match="finite number >= 0"):
        envs.kl_coef = float("nan")
