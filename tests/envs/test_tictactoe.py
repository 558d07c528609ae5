"""Tic-tac-toe: rules, opponents, solver, exact evaluation, batched equality, bad input."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import textgym  # noqa: F401
from textgym.envs.tictactoe import TicTacToeEnv, legal_moves, optimal_moves, render_rgb, solve, winner
from textgym.envs.tictactoe_vector import TicTacToeVectorEnv
from textgym.eval.tictactoe import agent_positions, exact_outcomes, sampled_outcomes


def perfect(obs, mask):
    """A deterministic optimal player: the first optimal move."""
    return np.array([optimal_moves(tuple(int(x) for x in o[:9] - o[9:]))[0] for o in obs])


def first_legal(obs, mask):
    """A naive player: the first legal cell."""
    return mask.argmax(1)


def test_rules():
    """Three in a row wins for either side, a full board without one is a draw, and empty cells are legal."""
    assert winner((1, 1, 1, 0, 0, 0, 0, 0, 0)) == 1 and winner((-1, 0, 0, 0, -1, 0, 0, 0, -1)) == -1
    assert winner((1, -1, 1, 1, -1, -1, -1, 1, 1)) == 0
    assert legal_moves((1, 0, -1, 0, 0, 0, 0, 0, 1)) == [1, 3, 4, 5, 6, 7]


def test_solver_knows_the_game():
    """The solver finds perfect play a draw, blocks a fork with an edge, and lists all draw-keeping moves."""
    assert solve((0,) * 9) == 0  # perfect play draws
    assert optimal_moves((-1, 0, 0, 0, 1, 0, 0, 0, -1)) == [1, 3, 5, 7]  # block the fork with an edge
    assert optimal_moves((1, 0, 0, 0, -1, 0, 0, 0, 0)) == [1, 2, 3, 5, 6, 7, 8]  # all draw-keeping moves


def test_exact_evaluation():
    """Exact evaluation over 4520 positions: perfect play draws minimax and never loses; the naive player loses."""
    assert len(agent_positions()) == 4520
    vs_minimax = exact_outcomes(perfect, "minimax")["mean"]
    assert vs_minimax == {"win": 0.0, "draw": 1.0, "loss": 0.0}
    vs_random = exact_outcomes(perfect, "random")
    assert vs_random["agent_first"]["loss"] == 0 and vs_random["agent_first"]["win"] > 0.99
    naive = exact_outcomes(first_legal, "minimax")["mean"]
    assert naive["loss"] > 0.9 and sum(naive.values()) == pytest.approx(1.0)


def test_sampled_evaluation_agrees_with_exact():
    """Outcomes sampled over 2000 games agree with the exact ones within 3.5 points."""
    exact = exact_outcomes(first_legal, "random")["mean"]
    sampled = sampled_outcomes(first_legal, "random", games=2000, seed=1)
    for key in exact:
        assert sampled[key] == pytest.approx(exact[key], abs=0.035)


def test_minimax_opponent_never_loses_and_varies():
    """The minimax opponent never loses and breaks ties at random among its optimal replies."""
    env = TicTacToeEnv(opponent="minimax", first="agent")
    rng = np.random.default_rng(0)
    results, openings = set(), set()
    for seed in range(100):
        obs, info = env.reset(seed=seed)
        obs, _, _, _, info = env.step(4)  # after the centre, every corner is an optimal reply
        openings.add(tuple(env.board))
        terminated = False
        while not terminated:
            obs, reward, terminated, _, info = env.step(int(rng.choice(np.flatnonzero(info["action_mask"]))))
        results.add(info["result"])
    assert "win" not in results and len(openings) == 4  # random tie-break among optimal replies


def test_info_and_observation_from_the_agents_side():
    """Reset info and the observation show the board from the agent's side after the opponent's opening."""
    env = TicTacToeEnv(opponent="random", first="opponent")
    obs, info = env.reset(seed=0)
    assert set(info) == {"action_mask", "opponent", "agent_first"} and not info["agent_first"]
    assert obs[9:].sum() == 1 and obs[:9].sum() == 0 and info["action_mask"].sum() == 8
    assert np.array_equal(env.action_masks(), info["action_mask"])


def test_illegal_move_policies():
    """An illegal move loses by default, or raises with ``illegal="error"``."""
    env = TicTacToeEnv(opponent="random", first="agent")
    env.reset(seed=0)
    env.step(4)
    occupied = int(np.flatnonzero(env.action_masks() == 0)[0])
    obs, reward, terminated, truncated, info = env.step(occupied)
    assert (reward, terminated, info["result"], info["illegal"]) == (-1.0, True, "loss", True)
    env = TicTacToeEnv(opponent="random", first="agent", illegal="error")
    env.reset(seed=0)
    env.step(4)
    with pytest.raises(ValueError, match="occupied"):
        env.step(4)


def test_bad_input():
    """Stepping before reset or after the end, off-board or non-integer cells, and unknown opponents raise."""
    env = TicTacToeEnv()
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="outside the board"):
        env.step(9)
    with pytest.raises(ValueError, match="one integer cell"):
        env.step(1.5)
    with pytest.raises(ValueError, match="unknown opponent 'grandmaster'"):
        TicTacToeEnv(opponent="grandmaster")
    env = TicTacToeEnv(opponent="random", first="agent")
    env.reset(seed=0)
    for cell in (0, 1, 2, 3, 4, 5, 6, 7, 8):
        if env.action_masks()[cell]:
            *_, terminated, _, _ = env.step(cell)
            if terminated:
                break
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(int(np.flatnonzero(env.action_masks())[0]) if env.action_masks().any() else 0)


def test_callable_opponent_for_self_play():
    """A callable opponent is reported as ``"callable"`` and plays its own choice."""
    env = TicTacToeEnv(opponent=lambda obs, mask: int(np.flatnonzero(mask)[-1]), first="agent")
    obs, info = env.reset(seed=0)
    assert info["opponent"] == "callable"
    obs, *_ = env.step(0)
    assert obs[9 + 8] == 1  # the callable took the last free cell


def test_render():
    """ANSI rendering shows the X and O, and RGB rendering colours each mark's cell."""
    env = TicTacToeEnv(opponent="random", first="agent", render_mode="ansi")
    env.reset(seed=0)
    env.step(4)
    text = env.render()
    assert text.count("X") == 1 and text.count("O") == 1
    image = render_rgb((1, -1, 0, 0, 0, 0, 0, 0, 0))
    assert image.shape == (96, 96, 3) and image.dtype == np.uint8
    assert (image[:32, :32] == (30, 80, 220)).all(-1).any() and (image[:32, 32:64] == (220, 40, 40)).all(-1).any()


@pytest.mark.parametrize("opponent", ["random", "minimax", "mix"])
def test_batched_equals_single_envs_game_for_game(opponent):
    """The batched env plays game for game what single envs seeded seed + i play, with the same final infos."""
    num_envs, seed = 5, 11
    batched = gym.make_vec("textgym/TicTacToe-v0", num_envs=num_envs, vectorization_mode="vector_entry_point",
                           opponent=opponent)
    singles = [TicTacToeEnv(opponent=opponent) for _ in range(num_envs)]
    obs, info = batched.reset(seed=seed)
    assert np.array_equal(obs, np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(singles)]))
    rng = np.random.default_rng(0)
    games = 0
    for _ in range(150):
        actions = np.array([rng.choice(np.flatnonzero(m)) for m in info["action_mask"]])
        obs, rewards, terminated, truncated, info = batched.step(actions)
        for i, env in enumerate(singles):
            s_obs, s_reward, s_term, _, s_info = env.step(int(actions[i]))
            assert (s_reward, s_term) == (rewards[i], terminated[i])
            if s_term:
                games += 1
                assert info["final_info"]["result"][i] == s_info["result"]
                assert np.array_equal(info["final_obs"][i], s_obs)
                s_obs, _ = env.reset()
            assert np.array_equal(s_obs, obs[i])
    assert games > 100


def test_batched_bad_input():
    """The batched env refuses stepping before reset, off-board cells and unknown opponents."""
    envs = TicTacToeVectorEnv(2, illegal="error")
    with pytest.raises(RuntimeError, match="reset"):
        envs.step(np.array([0, 0]))
    envs.reset(seed=0)
    with pytest.raises(ValueError, match="outside the board"):
        envs.step(np.array([0, 9]))
    with pytest.raises(ValueError, match="unknown opponent"):
        TicTacToeVectorEnv(2, opponent="grandmaster")
