"""TextGenerationEnv: the Gymnasium contract, reference scoring, rewards, info keys and bad input."""

from __future__ import annotations

import warnings

import datasets
import gymnasium as gym
import numpy as np
import pytest
import torch

import textgym  # noqa: F401  (registers the environments)
from textgym.envs import PromptTruncatedWarning, TextGenerationEnv
from textgym.models.tiny import random_causal_lm

EOS = 0


def make(env_kwargs, **overrides):
    """Make the unwrapped TextGeneration env from ``env_kwargs`` with ``overrides`` applied."""
    return gym.make("textgym/TextGeneration-v0", **{**env_kwargs, **overrides}).unwrapped


def run_episode(env, actions, seed=0, options=None):
    """Reset, then step ``actions`` until the episode ends; return each step's results."""
    obs, info = env.reset(seed=seed, options=options)
    steps = []
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(action)
        steps.append((obs, reward, terminated, truncated, info))
        if terminated or truncated:
            break
    return steps


def teacher_forced_logprobs(lm, prompt_ids, completion_ids):
    """Log pi_ref of each completion token from one plain forward over the whole sequence."""
    ids = torch.tensor([list(prompt_ids) + list(completion_ids)])
    with torch.no_grad():
        logprobs = torch.log_softmax(lm(ids).logits[0, :-1].float(), -1)  # (T - 1, V)
    targets = ids[0, 1:]
    return logprobs[torch.arange(len(targets)), targets][-len(completion_ids):].numpy()


def test_the_model_defaults_to_the_embedded_tiny_lm():
    """Without ``model`` the reference is ``textgym/tiny-lm`` with its own tokenizer, as documented."""
    from textgym.rewards import LengthReward

    env = TextGenerationEnv(prompts=["Hi"], reward_fn=LengthReward(3), max_context=16, max_new_tokens=4)
    assert env.reference.name_or_path == "textgym/tiny-lm"


def test_observation_is_left_padded_context(env_kwargs, tokenizer):
    """The observation is the context left-padded with EOS and masked, growing by each action."""
    env = make(env_kwargs)
    obs, info = env.reset(options={"prompt": "w1 w2 w3"})
    assert info == {"prompt": "w1 w2 w3"}
    assert obs["input_ids"].tolist() == [EOS] * 13 + [1, 2, 3]
    assert obs["attention_mask"].tolist() == [0] * 13 + [1, 1, 1]
    obs, *_ = env.step(7)
    assert obs["input_ids"][-4:].tolist() == [1, 2, 3, 7]
    assert obs["attention_mask"].sum() == 4
    assert env.observation_space.contains(obs)


@pytest.mark.parametrize("ref_scoring", ["step", "episode"])
def test_ref_logprobs_equal_teacher_forced_forward_with_real_eos(env_kwargs, lm, ref_scoring):
    """With pad == EOS, a real EOS at the end must be scored, not masked away as padding."""
    env = make(env_kwargs, ref_scoring=ref_scoring)
    steps = run_episode(env, [5, 9, EOS, 3], options={"prompt": "w4 w4"})
    assert len(steps) == 3
    _, _, terminated, truncated, info = steps[-1]
    assert terminated and not truncated
    assert info["completion_ids"].tolist() == [5, 9, EOS]
    assert steps[-1][0]["attention_mask"][-1] == 1  # the EOS is a real token of the context
    expected = teacher_forced_logprobs(lm, [4, 4], [5, 9, EOS])
    np.testing.assert_allclose(info["ref_logprobs"], expected, atol=1e-4)
    if ref_scoring == "step":
        np.testing.assert_allclose([s[4]["ref_logprob"] for s in steps], expected, atol=1e-4)


def test_long_episode_ref_logprobs_match(env_kwargs, lm):
    """A 30-token episode's reference log-probs match one teacher-forced forward."""
    env = make(env_kwargs, max_context=40, max_new_tokens=30)
    rng = np.random.default_rng(3)
    actions = rng.integers(1, 48, 30)
    info = run_episode(env, actions, options={"prompt": "w1 w2 w3 w4 w5"})[-1][4]
    np.testing.assert_allclose(info["ref_logprobs"], teacher_forced_logprobs(lm, [1, 2, 3, 4, 5], actions), atol=1e-4)


def test_reward_is_kl_shaping_plus_final_score(env_kwargs):
    """Each step's reward is kl_coef times the reference log-prob, the last adds the score; terms sum to it."""
    env = make(env_kwargs, kl_coef=0.2)
    steps = run_episode(env, [3, 3, 5, 8, 9, 10], options={"prompt": "w1"})
    rewards = np.array([s[1] for s in steps])
    info = steps[-1][4]
    assert steps[-1][3] and not steps[-1][2]  # truncated at max_new_tokens
    assert info["score"] == 3.0  # "w3 w3 w5" hits the keywords three times
    assert info["completion"] == "w3 w3 w5 w8 w9 w10"
    np.testing.assert_allclose(rewards[:-1], 0.2 * info["ref_logprobs"][:-1])
    np.testing.assert_allclose(rewards[-1], 0.2 * info["ref_logprobs"][-1] + 3.0)
    assert info["reward_terms"]["keyword[w3,w5]"] == 3.0
    assert sum(info["reward_terms"].values()) == pytest.approx(rewards.sum())
    assert info["reward_terms"]["kl_ref"] == pytest.approx(0.2 * info["ref_logprobs"].sum())


def test_step_and_episode_modes_give_equal_returns(env_kwargs):
    """Scoring per step or per episode (all at the end) gives the same return."""
    returns = {}
    for mode in ("step", "episode"):
        env = make(env_kwargs, ref_scoring=mode)
        rewards = [s[1] for s in run_episode(env, [11, 12, 13, 14, 15, 16], seed=4)]
        if mode == "episode":
            assert rewards[:-1] == [0.0] * 5
        returns[mode] = sum(rewards)
    assert returns["step"] == pytest.approx(returns["episode"], abs=1e-5)


def test_info_keys_are_the_documented_ones(env_kwargs):
    """Reset, step and final info hold exactly the documented keys in both scoring modes."""
    env = make(env_kwargs, action_mask=np.ones(48, np.int8))
    _, info = env.reset(seed=0)
    assert set(info) == {"prompt", "action_mask"}
    steps = run_episode(env, [1] * 6)
    assert set(steps[0][4]) == {"ref_logprob", "action_mask"}
    assert set(steps[-1][4]) == {"ref_logprob", "action_mask", "score", "prompt", "completion", "completion_ids",
                                 "ref_logprobs", "reward_terms"}
    env = make(env_kwargs, ref_scoring="episode")
    steps = run_episode(env, [1] * 6)
    assert steps[0][4] == {}
    assert "ref_logprob" not in steps[-1][4] and len(steps[-1][4]["ref_logprobs"]) == 6


def test_action_mask_is_reported_and_enforced(env_kwargs):
    """The action mask is reported in info, guides sampling, and a masked-out action raises."""
    mask = np.zeros(48, np.int8)
    mask[[3, 5, EOS]] = 1
    env = make(env_kwargs, action_mask=mask)
    _, info = env.reset(seed=0)
    np.testing.assert_array_equal(info["action_mask"], mask)
    assert env.action_space.sample(info["action_mask"]) in (0, 3, 5)
    with pytest.raises(ValueError, match="excluded by the action mask"):
        env.step(4)


def test_prompts_drawn_with_np_random_and_from_a_dataset(env_kwargs):
    """Prompts are drawn reproducibly from the seed, from a list or a dataset column."""
    env = make(env_kwargs)
    first = [env.reset(seed=s)[1]["prompt"] for s in range(8)]
    again = [env.reset(seed=s)[1]["prompt"] for s in range(8)]
    assert first == again and len(set(first)) > 1
    dataset = datasets.Dataset.from_dict({"text": ["w1 w2", "w3"]})
    env = make(env_kwargs, prompts=dataset, prompt_column="text")
    assert {env.reset(seed=s)[1]["prompt"] for s in range(10)} == {"w1 w2", "w3"}


def test_render_ansi_shows_context(env_kwargs):
    """ANSI rendering shows the decoded context."""
    env = make(env_kwargs, render_mode="ansi")
    env.reset(options={"prompt": "w1 w2"})
    env.step(3)
    assert env.render() == "w1 w2 w3"


def test_empty_prompt_starts_from_bos(env_kwargs):
    """An empty prompt starts the context with one BOS token."""
    env = make(env_kwargs)
    obs, _ = env.reset(options={"prompt": ""})
    assert obs["attention_mask"].sum() == 1 and obs["input_ids"][-1] == EOS


# ------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("action", [48, -1, 10**9])
def test_out_of_range_action(env_kwargs, action):
    """An action outside the vocabulary raises "not a token id"."""
    env = make(env_kwargs)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="not a token id"):
        env.step(action)


@pytest.mark.parametrize("action", [1.0, "w1", True, np.array([1, 2]), None])
def test_non_integer_action(env_kwargs, action):
    """An action that is not one integer raises TypeError."""
    env = make(env_kwargs)
    env.reset(seed=0)
    with pytest.raises(TypeError, match="one integer token id"):
        env.step(action)


def test_step_before_reset_and_after_end(env_kwargs):
    """Stepping before reset or after the episode ended asks for a reset."""
    env = make(env_kwargs)
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(1)
    env.reset(seed=0)
    env.step(EOS)
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(1)


def test_prompt_longer_than_window(env_kwargs):
    """A prompt longer than the window keeps its last tokens with a warning, or raises with ``"error"``."""
    long_prompt = " ".join(f"w{i}" for i in range(1, 21))  # 20 tokens, window leaves 10
    env = make(env_kwargs)
    with pytest.warns(PromptTruncatedWarning, match="20 tokens does not fit"):
        obs, _ = env.reset(options={"prompt": long_prompt})
    assert obs["input_ids"][-10:].tolist() == list(range(11, 21))
    env = make(env_kwargs, prompt_overflow="error")
    with pytest.raises(ValueError, match="does not fit the window"):
        env.reset(options={"prompt": long_prompt})


def test_bad_construction(env_kwargs, tokenizer):
    """Bad prompts, a mismatched model, window sizes, column, scoring mode or reward are refused at construction."""
    with pytest.raises(ValueError, match="prompt set is empty"):
        make(env_kwargs, prompts=[])
    with pytest.raises(TypeError, match="list of strings"):
        make(env_kwargs, prompts="w1 w2")
    with pytest.raises(ValueError, match="do not belong together"):
        make(env_kwargs, model=random_causal_lm(20, 1, 16))
    with pytest.raises(ValueError, match="exceed max_new_tokens"):
        make(env_kwargs, max_context=6, max_new_tokens=6)
    with pytest.raises(ValueError, match="positions"):
        make(env_kwargs, max_context=65)
    with pytest.raises(ValueError, match="no column 'prompt'"):
        make(env_kwargs, prompts=datasets.Dataset.from_dict({"text": ["w1"]}))
    with pytest.raises(ValueError, match="ref_scoring"):
        make(env_kwargs, ref_scoring="lazy")
    with pytest.raises(TypeError, match="RewardFunction"):
        make(env_kwargs, reward_fn=lambda p, c: 0)


@pytest.mark.parametrize("ref_scoring", ["step", "episode"])
def test_token_credit_places_each_part_at_the_token_that_earned_it(env_kwargs, ref_scoring, word_parts):
    """credit="token": score_parts holds each part at the token that completed it; the step rewards stay the same."""
    steps = {}
    for credit in ("end", "token"):
        env = make(env_kwargs, reward_fn=word_parts("w3"), credit=credit, ref_scoring=ref_scoring)
        steps[credit] = run_episode(env, [3, 8, 3, 5, 9, 10], options={"prompt": "w1"})
    info = steps["token"][-1][4]
    assert info["completion"] == "w3 w8 w3 w5 w9 w10" and info["score"] == 2.0
    assert info["score_parts"].tolist() == [1, 0, 1, 0, 0, 0]
    assert "score_parts" not in steps["end"][-1][4]
    assert [s[1] for s in steps["token"]] == pytest.approx([s[1] for s in steps["end"]])
    env = make(env_kwargs, reward_fn=word_parts("w3"), credit="token")
    info = run_episode(env, [3, EOS], options={"prompt": "w1"})[-1][4]
    assert info["score_parts"].tolist() == [1, 0]  # the EOS earns nothing: the word was complete before it


def test_token_credit_needs_a_reward_with_parts_and_one_completion(env_kwargs, word_parts):
    """credit="token" is refused for a reward without parts, in a conversation, and for unknown values."""
    from textgym.envs.text_tictactoe import TicTacToeTurns

    with pytest.raises(TypeError, match="parts method"):
        make(env_kwargs, credit="token")  # a KeywordReward
    with pytest.raises(ValueError, match="credit must be one of"):
        make(env_kwargs, credit="dense")
    with pytest.raises(ValueError, match="conversation"):
        make(env_kwargs, reward_fn=word_parts("w3"), credit="token", turns=TicTacToeTurns())


def test_unknown_reset_option(env_kwargs):
    """An unknown reset option is refused."""
    env = make(env_kwargs)
    with pytest.raises(ValueError, match="unknown reset option"):
        env.reset(options={"propmt": "w1"})


def test_nan_reward_names_the_reward(env_kwargs):
    """A reward that returns NaN raises an error naming the reward."""
    class Broken:
        name = "broken"

        def __call__(self, prompts, completions):
            return np.full(len(prompts), np.nan)

    env = make(env_kwargs, reward_fn=Broken())
    env.reset(seed=0)
    with pytest.raises(ValueError, match="reward 'broken' returned nan for prompt"):
        env.step(EOS)


def test_no_warnings_in_a_plain_episode(env_kwargs):
    """A plain episode emits no warnings."""
    env = make(env_kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run_episode(env, [1, 2, 3, 4, 5, 6])


def test_direct_construction_matches_make(env_kwargs):
    """Constructing the env directly gives the same rewards as ``gym.make``."""
    direct = TextGenerationEnv(**env_kwargs)
    made = make(env_kwargs)
    a = [s[1] for s in run_episode(direct, [1, 2, 3, 4, 5, 6], seed=2)]
    b = [s[1] for s in run_episode(made, [1, 2, 3, 4, 5, 6], seed=2)]
    assert a == b



def test_public_accessors_show_what_the_env_was_built_with(env_kwargs):
    """``reference``, ``reward_fn``, ``prompts`` and the lengths are public, on the single and the vector env."""
    envs = gym.make_vec("textgym/TextGeneration-v0", num_envs=2, vectorization_mode="vector_entry_point", **env_kwargs)
    for env in (make(env_kwargs), envs):
        assert env.reference is env_kwargs["model"] and env.reward_fn is env_kwargs["reward_fn"]
        assert list(env.prompts) == env_kwargs["prompts"]
        assert (env.max_context, env.max_new_tokens) == (16, 6)


def test_built_directly_the_env_needs_its_prompts(env_kwargs):
    """The env knows no task: built without prompts it says so (the registered ids fill in a task's)."""
    with pytest.raises(TypeError, match="prompts must be a list of strings"):
        TextGenerationEnv(**{**env_kwargs, "prompts": None})

# ------------------------------------------------------------------------------ bad input, found by users
@pytest.mark.parametrize("kl_coef", [float("nan"), -1.0, float("inf")])
def test_kl_coef_must_be_finite_and_not_negative(env_kwargs, kl_coef):
    """A NaN, negative or infinite kl_coef is refused at construction and on assignment; a string too."""
    with pytest.raises(ValueError, match="kl_coef must be a finite number >= 0"):
        make(env_kwargs, kl_coef=kl_coef)
    env = make(env_kwargs)
    with pytest.raises(ValueError, match="kl_coef must be a finite number >= 0"):
        env.kl_coef = kl_coef
    with pytest.raises(TypeError, match="kl_coef must be a number"):
        make(env_kwargs, kl_coef="0.1x")


@pytest.mark.parametrize(("prompts", "message"), [
    ([1, 2, 3], r"prompts\[0\] is 1 \(int\), not a string"),
    (["w1", None], r"prompts\[1\] is None \(NoneType\), not a string"),
    ([b"w1"], r"prompts\[0\] is b'w1' \(bytes\), not a string"),
    ([["w1", "w2"]], r"prompts\[0\] is \['w1', 'w2'\] \(list\), not a string"),
    (b"w1 w2", "must be a list of strings"),
])
def test_prompts_that_are_not_strings_are_named_at_construction(env_kwargs, prompts, message):
    """A prompt that is not a string is named with its index and type at construction."""
    with pytest.raises(TypeError, match=message):
        make(env_kwargs, prompts=prompts)


def test_a_dataset_column_of_numbers_is_refused(env_kwargs):
    """A dataset prompt column of numbers is refused, naming the column and its type."""
    with pytest.raises(TypeError, match="the prompt column 'prompt' holds Value\\('int64'\\).*not strings"):
        make(env_kwargs, prompts=datasets.Dataset.from_dict({"prompt": [1, 2]}))


def test_a_model_vocabulary_padded_past_the_tokenizer_keeps_actions_to_the_tokenizer(env_kwargs, tokenizer):
    """A model padded past the tokenizer keeps actions to the tokenizer and scores over its ids only."""
    padded = random_causal_lm(64, 1, 16, n_positions=64)  # 64 logits for a 48-token tokenizer, as Qwen2 pads
    env = make(env_kwargs, model=padded, ref_scoring="step")
    assert env.action_space.n == len(tokenizer) == 48
    env.reset(options={"prompt": "w1 w2 w3"})
    with pytest.raises(ValueError, match="action 50 is not a token id: the action space has ids 0..47"):
        env.step(50)
    _, _, _, _, info = env.step(5)
    with torch.no_grad():
        logits = padded(torch.tensor([[1, 2, 3]])).logits[0, -1, :48]
    assert info["ref_logprob"] == pytest.approx(torch.log_softmax(logits, -1)[5].item(), abs=1e-5)


def test_a_reward_that_raises_ends_the_episode(env_kwargs):
    """A reward that raises propagates and ends the episode; a reset starts a new one."""
    class Failing:
        name = "failing"

        def __call__(self, prompts, completions):
            raise RuntimeError("the reward server is down")

    env = make(env_kwargs, reward_fn=Failing(), max_new_tokens=3)
    env.reset(seed=0)
    env.step(1)
    env.step(1)
    with pytest.raises(RuntimeError, match="the reward server is down"):
        env.step(1)
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(1)  # not a fourth token of a three-token episode
    obs, _ = env.reset(seed=0)
    assert env.step(1)[2:4] == (False, False)


@pytest.mark.slow
def test_async_vector_env_after_torch_work_does_not_hang(tmp_path):
    """Forked workers of a parent that ran torch ops used to hang forever in their first layer norm."""
    import subprocess
    import sys
    script = tmp_path / "run.py"
    script.write_text(
        "import torch, gymnasium as gym, textgym\n"
        "torch.nn.functional.layer_norm(torch.randn(64, 512), (512,))\n"
        "torch.ones(300, 300) @ torch.ones(300, 300)\n"
        "envs = gym.make_vec('textgym/TextGeneration-v0', num_envs=2, vectorization_mode='async')\n"
        "envs.reset(seed=0)\n"
        "obs, *_ = envs.step(envs.action_space.sample())\n"
        "print('stepped', obs['input_ids'].shape)\n"
        "envs.close()\n")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=240)
    assert result.returncode == 0 and "stepped (2, 64)" in result.stdout, result.stderr[-2000:]


@pytest.mark.parametrize("ref_scoring", ["step", "episode"])
@pytest.mark.filterwarnings("ignore::textgym.rewards.DeadRewardWarning")
def test_under_an_action_mask_the_reference_is_scored_over_the_allowed_tokens(env_kwargs, lm, ref_scoring):
    """A policy that is the reference, sampling the allowed tokens only, pays a KL of 0 per token."""
    from agents.rollout import Rollout
    from agents.sampling import LMSampler

    allowed = np.zeros(48, np.int8)
    allowed[[0, 3, 5, 9, 17, 30]] = 1
    envs = gym.make_vec("textgym/TextGeneration-v0", num_envs=4, vectorization_mode="vector_entry_point",
                        **{**env_kwargs, "action_mask": allowed, "ref_scoring": ref_scoring, "temperature": 1.5})
    episodes = Rollout(envs, LMSampler(lm, 4, pad_id=0, seed=0, temperature=1.5), seed=0).collect(16)
    tokens = np.concatenate([e.completion_ids for e in episodes])
    log_ratios = np.concatenate([e.logprobs - e.ref_logprobs for e in episodes])
    assert set(tokens) <= {0, 3, 5, 9, 17, 30} and np.abs(log_ratios).max() < 1e-5


@pytest.mark.parametrize("temperature", [0, -1.0, float("nan"), "1"])
def test_the_temperature_must_be_a_positive_number(env_kwargs, temperature):
    """The env's temperature (of the reference's log-probs) is named when it is not a finite number > 0."""
    with pytest.raises(ValueError, match="temperature must be"):
        gym.make("textgym/TextGeneration-v0", **env_kwargs, temperature=temperature)


def test_the_reference_is_scored_at_the_temperature(env_kwargs, lm):
    """``info["ref_logprob"]`` is the reference's ``log softmax(logits / temperature)``; ``temperature`` reads back."""
    env = gym.make("textgym/TextGeneration-v0", **env_kwargs, temperature=0.5)
    obs, _ = env.reset(seed=0)
    context = torch.from_numpy(obs["input_ids"][obs["attention_mask"] == 1])[None]
    with torch.no_grad():
        expected = torch.log_softmax(lm(context).logits[0, -1] / 0.5, -1)[7].item()
    assert env.unwrapped.temperature == 0.5
    assert env.step(7)[4]["ref_logprob"] == pytest.approx(expected, abs=1e-5)
