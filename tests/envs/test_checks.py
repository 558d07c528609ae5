"""Every registered textgym id passes Gymnasium's and stable-baselines3's env checkers."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import textgym

pytestmark = pytest.mark.filterwarnings("ignore::textgym.rewards.DeadRewardWarning")


@pytest.mark.parametrize("env_id", sorted(textgym.ENV_IDS))
def test_gymnasium_check_env(env_id):
    """Every registered id works with no arguments (the embedded kit) and passes the checker."""
    check_env(gym.make(env_id).unwrapped, skip_render_check=False)


@pytest.mark.parametrize("env_id", sorted(textgym.ENV_IDS))
def test_sb3_check_env(env_id):
    """Every registered id passes stable-baselines3's env checker."""
    sb3_check_env(gym.make(env_id), warn=False)


@pytest.mark.parametrize("env_id", sorted(textgym.ENV_IDS))
def test_vector_form_of_every_id(env_id):
    """Every id's vector form resets and steps to observations inside its observation space."""
    envs = gym.make_vec(env_id, num_envs=2, vectorization_mode="vector_entry_point")
    obs, _ = envs.reset(seed=0)
    assert envs.observation_space.contains(obs)
    obs, *_ = envs.step(envs.action_space.sample())
    assert envs.observation_space.contains(obs)


def _plain(obs):
    return {k: v.tolist() for k, v in obs.items()} if isinstance(obs, dict) else obs.tolist()


def rollout(env, seed, steps=30):
    """Return the trace of ``steps`` random masked actions from ``reset(seed)``, resetting at episode ends."""
    obs, info = env.reset(seed=seed)
    env.action_space.seed(seed)
    trace = [_plain(obs), sorted(info)]
    for _ in range(steps):
        mask = info.get("action_mask")
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample(mask))
        trace.append((_plain(obs), round(reward, 6), terminated, truncated))
        if terminated or truncated:
            obs, info = env.reset()
            trace.append(_plain(obs))
    return trace


@pytest.mark.parametrize("env_id", sorted(textgym.ENV_IDS))
def test_same_seed_double_rollout_matches(env_id):
    """Two rollouts with the same seed give the same observations, rewards and episode ends."""
    assert rollout(gym.make(env_id), seed=11) == rollout(gym.make(env_id), seed=11)


CALLS = st.one_of(
    st.tuples(st.just("reset"), st.one_of(st.none(), st.integers(0, 2**31)),
              st.one_of(st.none(), st.just({"prompt": "w1 w2"}), st.just({"prompt": ""}),
                        st.just({"bogus": 1}), st.just({"prompt": 3}))),
    st.tuples(st.just("step"), st.one_of(st.integers(-5, 60), st.floats(-2, 60), st.none(), st.booleans()),
              st.none()),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(calls=st.lists(CALLS, max_size=25))
def test_random_call_sequences_raise_only_documented_errors(env_kwargs, calls):
    """Random reset/step sequences with bad arguments give valid results or only the documented errors."""
    env = gym.make("textgym/TextGeneration-v0", **env_kwargs).unwrapped
    running = False
    for name, arg, options in calls:
        try:
            if name == "reset":
                obs, _ = env.reset(seed=arg, options=options)
                running = True
                assert env.observation_space.contains(obs)
            else:
                obs, reward, terminated, truncated, _ = env.step(arg)
                assert running, "step succeeded without a running episode"
                assert np.isfinite(reward) and env.observation_space.contains(obs)
                running = not (terminated or truncated)
        except RuntimeError as err:
            assert name == "step" and not running and "reset" in str(err)
        except TypeError as err:
            assert "integer token id" in str(err) or "options['prompt']" in str(err)
        except ValueError as err:
            assert "not a token id" in str(err) or "unknown reset option" in str(err)
