"""textgym/TextTicTacToe-v0: a multi-turn text env whose own tokens are state, never actions."""

from __future__ import annotations

import re
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch

import textgym  # noqa: F401
from textgym.envs.text_tictactoe import TicTacToeTurns, transcript
from textgym.envs.tictactoe import winner
from textgym.eval.tictactoe import exact_outcomes_with_history, text_policy
from textgym.models import load_causal_lm, load_tokenizer

ID = "textgym/TextTicTacToe-v0"


@pytest.fixture(scope="module")
def kit():
    """The kit's tic-tac-toe LM and its word-level tokenizer."""
    return load_causal_lm("textgym/tictactoe-lm"), load_tokenizer("textgym/tictactoe-lm")


def cell_tokens(tokenizer):
    """Token ids of the cells 1-9."""
    return [tokenizer.convert_tokens_to_ids(str(cell)) for cell in range(1, 10)]


def play(env, actions_for, steps):
    """Step ``env`` (single) with ``actions_for(t)``; reset after each game; the rows seen."""
    rows = []
    for t in range(steps):
        obs, reward, terminated, truncated, info = env.step(int(actions_for(t)))
        final = (obs, info) if terminated or truncated else None
        if final:
            obs, info = env.reset()
        rows.append((obs, reward, terminated, truncated, final))
    return rows


RESTARTS = [((4, 0, 8), False), ((0, 4, 8, 2), True), ((1, 4, 7), False)]


@pytest.mark.parametrize("starts", [{}, {"random_moves": 2, "opening": "class"},
                                    {"restart_share": 0.5, "restarts": RESTARTS}],
                         ids=["plain", "exploring-starts", "restarts"])
def test_vector_equals_single_envs(kit, starts):
    """Slot i of the vector env plays the game a single env seeded seed + i plays, move for move."""
    model, tokenizer = kit
    cells = cell_tokens(tokenizer)
    actions = np.random.default_rng(0).choice(cells, size=(30, 3))  # illegal moves too: they lose
    envs = gym.make_vec(ID, num_envs=3, vectorization_mode="vector_entry_point", model=model, tokenizer=tokenizer,
                        **starts)
    envs.reset(seed=5)
    got = [envs.step(actions[t]) for t in range(30)]
    finished = 0
    for slot in range(3):
        env = gym.make(ID, model=model, tokenizer=tokenizer, **starts).unwrapped
        env.reset(seed=5 + slot)
        for t, (obs, reward, terminated, truncated, final) in enumerate(
                play(env, lambda t, slot=slot: actions[t, slot], 30)):
            v_obs, v_reward, v_term, v_trunc, v_info = got[t]
            np.testing.assert_array_equal(v_obs["input_ids"][slot], obs["input_ids"])
            assert v_reward[slot] == pytest.approx(reward, abs=1e-5)
            assert (v_term[slot], v_trunc[slot]) == (terminated, truncated)
            if final:
                finished += 1
                assert v_info["final_info"]["score"][slot] == final[1]["score"]
                np.testing.assert_array_equal(v_info["final_info"]["agent_mask"][slot], final[1]["agent_mask"])
    assert finished >= 6


def test_env_tokens_are_state_never_actions(kit):
    """Only the agent's tokens get a reference score (KL) and a step; the env's are marked in agent_mask."""
    model, tokenizer = kit
    env = gym.make(ID, model=model, tokenizer=tokenizer, opponent="random", first="agent", illegal="mask")
    obs, info = env.reset(seed=0)
    steps, rng = 0, np.random.default_rng(0)
    while True:
        action = rng.choice(np.flatnonzero(info["action_mask"]))
        obs, reward, terminated, truncated, info = env.step(int(action))
        steps += 1
        if terminated or truncated:
            break
    agent = info["agent_mask"].astype(bool)
    assert agent.sum() == steps and (~agent).sum() > 8 * (steps - 1)  # each reply: a move and a board
    assert np.all(info["ref_logprobs"][~agent] == 0) and np.all(info["ref_logprobs"][agent] <= 0)
    assert np.all(info["ref_logprobs"][agent][:2] < 0)  # over the empty cells: 0 only where one cell is left
    assert info["score"] in (-1.0, 0.0, 1.0) and info["turn_rewards"][~agent].sum() == 0
    kl = info["reward_terms"]["kl_ref"]
    assert kl == pytest.approx(0.05 * info["ref_logprobs"][agent].sum(), rel=1e-6)


def test_agent_turn_follows_the_transcript_the_exact_evaluation_reads(kit):
    """The env's context when the agent moves is the transcript text_policy scores (same tokens)."""
    model, tokenizer = kit
    env = gym.make(ID, model=model, tokenizer=tokenizer, opponent="random", first="agent", illegal="mask").unwrapped
    obs, info = env.reset(seed=3)
    moves, rng = [], np.random.default_rng(1)
    for _ in range(3):
        context = obs["input_ids"][obs["attention_mask"] == 1].tolist()
        agent_first = True
        assert context == tokenizer(transcript(moves, agent_first).strip())["input_ids"]
        cell = int(rng.choice(np.flatnonzero(info["action_mask"])))
        obs, _, terminated, _, info = env.step(cell)
        if terminated:
            break
        moves += [cell_tokens(tokenizer).index(cell), int(info["reply"].split()[1]) - 1]


def test_reference_and_sampler_caches_ingest_env_turns_incrementally(kit):
    """No forward re-encodes the context: after the prompt, each forward sees one move or one reply."""
    from agents.sampling import LMSampler

    model, tokenizer = kit
    widths = []
    hook = model.register_forward_pre_hook(lambda module, args, kwargs: widths.append(kwargs["input_ids"].shape[1]),
                                           with_kwargs=True)
    try:
        envs = gym.make_vec(ID, num_envs=4, vectorization_mode="vector_entry_point", model=model,
                            tokenizer=tokenizer, illegal="mask", ref_scoring="step")
        sampler = LMSampler(model, num_envs=4, pad_id=tokenizer.pad_token_id or 0, seed=0,
                            num_actions=envs.single_action_space.n)
        obs, info = envs.reset(seed=0)
        start = np.ones(4, bool)
        for _ in range(40):
            actions = sampler.act(obs, episode_start=start, action_mask=info["action_mask"])
            obs, _, terminated, truncated, info = envs.step(actions)
            start = terminated | truncated
    finally:
        hook.remove()
    reply = len(tokenizer(" O 5 board . . . / . . . / . . . move")["input_ids"]) + 1
    assert len(widths) > 80 and max(widths[2:]) <= reply  # the first two: the prompts, once each


def test_illegal_moves_lose_or_are_masked(kit):
    """``illegal="loss"``: an occupied cell or a non-cell word loses; ``"mask"``: only empty cells are allowed."""
    model, tokenizer = kit
    env = gym.make(ID, model=model, tokenizer=tokenizer, first="agent", kl_coef=0.0)
    env.reset(seed=0)
    word = tokenizer.convert_tokens_to_ids("board")
    _, reward, terminated, _, info = env.step(word)
    assert terminated and reward == -1.0 and info["score"] == -1.0
    env = gym.make(ID, model=model, tokenizer=tokenizer, first="opponent", illegal="mask")
    obs, info = env.reset(seed=0)
    allowed = {tokenizer.decode([t]) for t in np.flatnonzero(info["action_mask"])}
    taken = {w for w in tokenizer.decode(obs["input_ids"][obs["attention_mask"] == 1]).split() if w.isdigit()}
    assert len(allowed) == 8 and not allowed & taken
    with pytest.raises(ValueError, match="illegal"):
        TicTacToeTurns(illegal="ignore")


def parse(tokenizer, obs):
    """The transcript a prompt holds: the agent's cells, the opponent's, and the last board written."""
    words = tokenizer.decode(obs["input_ids"][obs["attention_mask"] == 1]).split()
    pairs = list(zip(words, words[1:], strict=False))  # (a word, the next)
    mine = [int(w) - 1 for prev, w in pairs if prev == "move" and w.isdigit()]
    theirs = [int(w) - 1 for prev, w in pairs if prev == "O" and w.isdigit()]
    last = len(words) - 1 - words[::-1].index("board")
    board = [{"X": 1, "O": -1, ".": 0}[w] for w in words[last + 1:] if w in "XO."]
    return mine, theirs, board, words


def test_exploring_starts_begin_games_in_progress(kit):
    """``random_moves=2``: games start after 0-2 random moves a side, written as the game so far.

    The prompt is an ordinary transcript (the agent's cells after ``move``, the opponent's after
    ``O``, each followed by the board), its last board holds exactly those marks, nobody has won,
    and the mask offers that board's empty cells; the agent's first action is its first token.
    """
    model, tokenizer = kit
    envs = gym.make_vec(ID, num_envs=96, vectorization_mode="vector_entry_point", model=model, tokenizer=tokenizer,
                        random_moves=2, illegal="mask", kl_coef=0.0)
    obs, info = envs.reset(seed=0)
    counts = set()
    for slot in range(envs.num_envs):
        row = {k: v[slot] for k, v in obs.items()}
        mine, theirs, board, words = parse(tokenizer, row)
        assert words[-1] == "move" and len(theirs) - len(mine) in (0, 1)
        expected = [0] * 9
        for cell in mine:
            expected[cell] = 1
        for cell in theirs:
            expected[cell] = -1
        assert board == expected and len(set(mine + theirs)) == len(mine + theirs)
        assert winner(board) == 0
        allowed = sorted(int(tokenizer.decode([t])) - 1 for t in np.flatnonzero(info["action_mask"][slot]))
        assert allowed == [c for c in range(9) if board[c] == 0]
        counts.add(len(mine))
    assert counts == {0, 1, 2}
    with pytest.raises(ValueError, match="random_moves must be 0 to 2"):
        TicTacToeTurns(random_moves=3)


def test_restarts_begin_a_share_of_the_games_at_the_given_positions(kit):
    """``restart_share``: that share of games begins at one of the restarts, its moves written as the prompt.

    The other games begin as usual; the longest restarts fit the window, and their games are played
    to the end (terminated, never truncated); setting ``restarts`` again replaces them.
    """
    from textgym.envs import PromptTruncatedWarning

    model, tokenizer = kit
    longest = [((0, 1, 2, 4, 3, 5, 7), False), ((0, 4, 8, 2, 6, 3), True)]  # 7 moves; the agent's 4th move
    texts = {tokenizer.decode(tokenizer(transcript(m, f).strip())["input_ids"]): (m, f) for m, f in RESTARTS + longest}
    rules = TicTacToeTurns("random", illegal="mask", restart_share=0.5, restarts=longest)
    rules.restarts = RESTARTS + longest
    assert rules.restarts == [((4, 0, 8), False), ((0, 4, 8, 2), True), ((1, 4, 7), False), *longest]
    envs = gym.make_vec(ID, num_envs=200, vectorization_mode="vector_entry_point", model=model, tokenizer=tokenizer,
                        turns=rules, kl_coef=0.0)
    assert envs.turns is rules
    with warnings.catch_warnings():
        warnings.simplefilter("error", PromptTruncatedWarning)
        obs, info = envs.reset(seed=0)
        begun = [texts.get(tokenizer.decode(obs["input_ids"][slot][obs["attention_mask"][slot] == 1]))
                 for slot in range(200)]
        assert 0.4 < np.mean([b is not None for b in begun]) < 0.6 and {b for b in begun if b} == set(texts.values())
        for slot, start in enumerate(begun):
            if start:  # the mask offers the empty cells of the restart's board
                allowed = sorted(int(tokenizer.decode([t])) - 1 for t in np.flatnonzero(info["action_mask"][slot]))
                assert allowed == sorted(set(range(9)) - set(start[0]))
        ended, rng = np.zeros(200, bool), np.random.default_rng(0)
        for _ in range(5):  # no game has more than 5 agent moves
            actions = [rng.choice(np.flatnonzero(mask)) for mask in info["action_mask"]]
            obs, _, terminated, truncated, info = envs.step(np.array(actions))
            assert not truncated.any()
            ended |= terminated
        assert ended.all()
    with pytest.raises(ValueError, match="not a game in progress"):
        rules.restarts = [((4, 0), False)]  # the opponent, not the agent, is to move
    with pytest.raises(ValueError, match="restart_share"):
        TicTacToeTurns(restart_share=1.5)
    with pytest.raises(ValueError, match="not both"):
        gym.make(ID, model=model, tokenizer=tokenizer, turns=rules, opponent="minimax")


@pytest.mark.parametrize(("restart", "message"), [
    (("45", True), "the moves must be a sequence of whole cell numbers 0-8, e.g. (4, 5), got '45'"),
    (((4.0, 5), False), "the moves must be a sequence of whole cell numbers"),
    (((True,), False), "the moves must be a sequence of whole cell numbers"),
    (((4,), "no"), "agent_first must be True or False, got 'no'"),
    (((4,), 0), "agent_first must be True or False, got 0"),
    (((4,),), "must be (moves, agent_first, ...)"),
])
def test_restarts_of_the_wrong_type_are_refused_not_coerced(restart, message):
    """A restart's moves must be whole cell numbers and its seat a bool: ``"45"`` is not cells 4, 5, nor "no" True."""
    with pytest.raises(ValueError, match=re.escape(message)):
        TicTacToeTurns(restarts=[restart])
    assert TicTacToeTurns(restarts=[(np.array([4, 0]), np.bool_(True))]).restarts == [((4, 0), True)]


def test_mistakes_are_the_non_optimal_moves_of_the_policys_own_games():
    """``mistakes_with_history``: none for a minimax player; for a weaker one, each listed move is not optimal."""
    from textgym.envs.text_tictactoe import board_after
    from textgym.envs.tictactoe import optimal_moves
    from textgym.eval.tictactoe import mistakes_with_history

    perfect = lambda games: [optimal_moves(tuple(board_after(m, f)))[0] for m, f in games]  # noqa: E731
    first_empty = lambda games: [[c for c in range(9) if c not in m][0] for m, _ in games]  # noqa: E731
    for opponent in ("random", "minimax"):
        assert mistakes_with_history(perfect, opponent) == []
        found = mistakes_with_history(first_empty, opponent)
        assert found and len(set((m, f) for m, f, _ in found)) == len(found)
        for moves, first, prob in found:
            assert first_empty([(moves, first)])[0] not in optimal_moves(tuple(board_after(moves, first)))
            assert 0 < prob <= 1
        TicTacToeTurns(restarts=[(m, f) for m, f, _ in found if len(m) <= 7])  # they are valid restarts
    own = mistakes_with_history(first_empty, "minimax", corrections=False)
    assert set(own) < set(found)  # the corrected lines hold more
    for moves, first, _ in own:  # the policy's own games: each mistake's line, the policy's moves
        board, mark = [0] * 9, 1 if first else -1
        for i, cell in enumerate(moves):
            if mark == 1:
                assert first_empty([(moves[:i], first)])[0] == cell
            board[cell], mark = mark, -mark
    losses = exact_outcomes_with_history(first_empty, "minimax")["agent_first"]["loss"]
    assert losses > 0 and any(first for _, first, _ in own)


def test_class_openings_give_the_centre_a_third_of_the_games(kit):
    """``opening="class"``: the centre, a corner or an edge, a third of the games each (by cell: 1/9, 4/9, 4/9)."""
    model, tokenizer = kit
    shares = {}
    for opening in ("cell", "class"):
        envs = gym.make_vec(ID, num_envs=900, vectorization_mode="vector_entry_point", model=model,
                            tokenizer=tokenizer, first="opponent", opening=opening, kl_coef=0.0)
        obs, _ = envs.reset(seed=0)
        first = np.array([parse(tokenizer, {k: v[slot] for k, v in obs.items()})[1][0] for slot in range(900)])
        shares[opening] = [np.isin(first, kind).mean() for kind in ((4,), (0, 2, 6, 8), (1, 3, 5, 7))]
    assert shares["class"] == pytest.approx([1 / 3] * 3, abs=0.06)
    assert shares["cell"] == pytest.approx([1 / 9, 4 / 9, 4 / 9], abs=0.06)
    with pytest.raises(ValueError, match="opening"):
        TicTacToeTurns(opening="centre")


def test_exact_evaluation_of_the_kit_lm(kit):
    """The pretrained LM plays legal random-looking moves: exact outcomes sum to 1 and it loses to minimax."""
    model, tokenizer = kit
    for legal_only in (False, True):
        policy = text_policy(model, tokenizer, legal_only=legal_only)
        for opponent in ("random", "minimax"):
            result = exact_outcomes_with_history(policy, opponent)["mean"]
            assert sum(result.values()) == pytest.approx(1.0)
            if opponent == "minimax":
                assert result["win"] == 0.0 and result["loss"] > 0.3


@torch.no_grad()
def test_lm_episodes_train_only_on_agent_tokens(kit):
    """Collected episodes mask the env's tokens out of the loss: their token_mask is the agent_mask."""
    from agents.lm_ppo import LMPPO
    from agents.rollout import EpisodeBatch, Rollout

    model, tokenizer = kit
    envs = gym.make_vec(ID, num_envs=4, vectorization_mode="vector_entry_point", model=model, tokenizer=tokenizer,
                        ref_scoring="episode")
    agent = LMPPO(load_causal_lm("textgym/tictactoe-lm"), tokenizer)
    agent.num_actions = envs.single_action_space.n
    episodes = Rollout(envs, agent.make_sampler(envs.num_envs, seed=0), seed=0).collect(8)
    batch = EpisodeBatch.from_episodes(episodes, agent.pad_id)
    for row, episode in enumerate(episodes):
        width = len(episode.completion_ids)
        assert episode.agent_mask is not None and 0 < episode.agent_mask.sum() < width
        np.testing.assert_array_equal(batch.token_mask[row, -width:].numpy(), episode.agent_mask)


@torch.no_grad()
def test_the_update_scores_masked_moves_as_the_sampler_drew_them(kit):
    """With ``illegal="mask"`` the PPO ratio starts at 1: teacher forcing uses the moves' masks, as sampling did.

    A random LM puts much of its mass on illegal words; scored without the mask, every agent token's
    log-probability would be lower than the one recorded while acting.
    """
    from agents.lm_ppo import LMPPO
    from agents.rollout import EpisodeBatch, Rollout, evaluate
    from textgym.models.tiny import random_causal_lm

    _, tokenizer = kit
    lm = random_causal_lm(len(tokenizer), 2, 32, n_positions=128, seed=0)
    envs = gym.make_vec(ID, num_envs=4, vectorization_mode="vector_entry_point", model=lm, tokenizer=tokenizer,
                        illegal="mask", kl_coef=0.0, ref_scoring="episode")
    agent = LMPPO(lm, tokenizer)
    agent.num_actions = envs.single_action_space.n
    episodes = Rollout(envs, agent.make_sampler(envs.num_envs, seed=0), seed=0).collect(8)
    for e in episodes:  # one mask per agent token, allowing the empty cells only
        assert e.action_masks.shape == (e.agent_mask.sum(), agent.num_actions)
        assert all(row.sum() <= 9 for row in e.action_masks)
    batch = EpisodeBatch.from_episodes(episodes, agent.pad_id)
    logprobs, entropy, _ = evaluate(agent.policy, batch, agent.num_actions, entropy=True)
    mask = batch.token_mask.bool()
    torch.testing.assert_close(logprobs[mask], batch.logprobs[mask], atol=1e-4, rtol=0)
    assert (entropy[mask] <= np.log(9) + 1e-4).all()  # over the empty cells, not the whole vocabulary


def test_symmetries_map_a_transcript_to_the_transcript_of_the_symmetric_game(kit):
    """Each token map turns a game's transcript into the transcript of the same game rotated or reflected."""
    from textgym.envs.tictactoe import SYMMETRIES, legal_moves, winner

    _, tokenizer = kit
    transform = TicTacToeTurns().symmetries(tokenizer)
    rng = np.random.default_rng(0)
    for agent_first in (True, False):
        moves, board, mover = [], [0] * 9, 1 if agent_first else -1
        while winner(board) == 0 and 0 in board:
            moves.append(int(rng.choice(legal_moves(board))))
            board[moves[-1]], mover = mover, -mover
        ids = np.array(tokenizer(transcript(moves, agent_first).strip())["input_ids"])
        variants = transform(ids)
        assert len(variants) == 7
        for perm, (new_ids, token_map) in zip(SYMMETRIES[1:], variants, strict=True):
            where = np.argsort(perm)  # old cell c is new cell where[c]
            expected = tokenizer(transcript([int(where[m]) for m in moves], agent_first).strip())["input_ids"]
            assert new_ids.tolist() == expected
            assert sorted(token_map.tolist()) == list(range(len(tokenizer)))  # a permutation of the vocabulary


@torch.no_grad()
def test_lm_ppo_trains_on_the_symmetric_copies_with_their_own_masks(kit):
    """``LMConfig(symmetries=True)``: 8 copies of each episode, each move's mask the empty cells of its own board."""
    from agents.config import LMConfig
    from agents.lm_ppo import LMPPO
    from agents.rollout import EpisodeBatch, Rollout

    model, tokenizer = kit
    envs = gym.make_vec(ID, num_envs=4, vectorization_mode="vector_entry_point", model=model, tokenizer=tokenizer,
                        illegal="mask", kl_coef=0.0, ref_scoring="episode")
    agent = LMPPO(load_causal_lm("textgym/tictactoe-lm"), tokenizer, LMConfig(symmetries=True))
    agent.num_actions = envs.single_action_space.n
    episodes = Rollout(envs, agent.make_sampler(envs.num_envs, seed=0), seed=0).collect(8)
    batch = EpisodeBatch.from_episodes(episodes, agent.pad_id)
    batch.advantages = batch.returns = torch.randn(batch.token_mask.shape)
    both = agent.with_symmetries(batch, envs)
    assert both.size == 8 * batch.size
    for name in ("advantages", "returns", "logprobs", "values", "token_mask"):  # the same decisions, seen rotated
        torch.testing.assert_close(getattr(both, name), getattr(batch, name).repeat(8, 1))
    assert not torch.equal(both.input_ids[batch.size:], batch.input_ids.repeat(7, 1))
    mask = both.token_mask.bool()
    cells = cell_tokens(tokenizer)
    width = both.num_tokens
    for row, t in zip(*torch.nonzero(mask, as_tuple=True), strict=True):
        words = tokenizer.convert_ids_to_tokens(both.input_ids[row, :both.input_ids.shape[1] - width + t].tolist())
        marks = [w for w in words[len(words) - 1 - words[::-1].index("board"):] if w in "XO."]  # the last board
        empty = {cells[c] for c, mark in enumerate(marks) if mark == "."}
        assert set(np.flatnonzero(both.action_mask[row, t].numpy())) == empty


def test_symmetries_leave_a_word_the_agent_wrote_alone(kit):
    """With ``illegal="loss"`` the agent may write ``board`` as a move; only the environment's boards move."""
    _, tokenizer = kit
    ids = np.array(tokenizer(transcript([4, 0], agent_first=True).strip() + " board")["input_ids"])
    for new_ids, _ in TicTacToeTurns().symmetries(tokenizer)(ids):
        assert len(new_ids) == len(ids) and new_ids[-1] == ids[-1]


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("ref_scoring", ["step", "episode"])
@pytest.mark.filterwarnings("ignore::textgym.rewards.DeadRewardWarning")
def test_a_masked_policy_equal_to_the_reference_pays_no_kl(kit, ref_scoring, temperature):
    """With ``illegal="mask"`` the reference is scored over the empty cells, as the policy samples: KL 0 there.

    Scored over the whole vocabulary, the reference's log-probs were lower by the mass it puts on
    illegal words: 0.165 nats per move of "KL" for a policy that is the reference itself.
    """
    from agents.rollout import Rollout
    from agents.sampling import LMSampler

    model, tokenizer = kit
    envs = gym.make_vec(ID, num_envs=4, vectorization_mode="vector_entry_point", model=model, tokenizer=tokenizer,
                        illegal="mask", ref_scoring=ref_scoring, temperature=temperature)
    sampler = LMSampler(model, 4, pad_id=tokenizer.pad_token_id, seed=0, temperature=temperature,
                        num_actions=envs.single_action_space.n)
    episodes = Rollout(envs, sampler, seed=0).collect(16)
    agent = np.concatenate([e.agent_mask for e in episodes]).astype(bool)
    log_ratios = np.concatenate([e.logprobs - e.ref_logprobs for e in episodes])[agent]  # (agent tokens,)
    assert len(log_ratios) > 40 and np.abs(log_ratios).max() < 1e-5
    assert np.concatenate([e.ref_logprobs for e in episodes])[agent].min() < -0.5  # real choices were scored
