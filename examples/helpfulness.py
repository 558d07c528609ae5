"""Helpfulness on hh-rlhf-format prompts, with the perplexity evaluation of seed 003.

Prompts come from a file in Anthropic/hh-rlhf's format (``chosen``/``rejected`` transcripts;
``--data Anthropic/hh-rlhf`` loads the real one when the hub is reachable; offline, the embedded
dialogues are exported in that format first). The reward is the embedded helpfulness classifier.
Before and after PPO: reward, and the perplexity of held-out chosen answers given their questions.

Run: ``python examples/helpfulness.py`` (about two minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import gymnasium as gym

import textgym  # noqa: F401  (registers the environments)
from agents.lm import LMConfig
from agents.lm_ppo import LMPPO
from textgym.data.export import write_hh_rlhf
from textgym.data.loaders import load_hh_rlhf
from textgym.eval.text import perplexity, sample_completions
from textgym.models import load_causal_lm, load_tokenizer
from textgym.rewards import ClassifierReward


def main() -> None:
    """Train on hh-rlhf prompts; compare reward and held-out perplexity before and after."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="hh-rlhf hub name or JSONL folder (default: the embedded dialogues)")
    parser.add_argument("--steps", type=int, default=24_576, help="environment steps (generated tokens)")
    parser.add_argument("--out", default="runs/helpfulness")
    args = parser.parse_args()
    data = args.data or write_hh_rlhf(Path(args.out) / "hh-rlhf", n=2000)
    train, test = load_hh_rlhf(data, "train"), load_hh_rlhf(data, "test")
    tokenizer, reference = load_tokenizer("textgym/tiny-lm"), load_causal_lm("textgym/tiny-lm")
    reward = ClassifierReward("textgym/helpfulness-classifier", label="helpful", text="prompt+completion")
    envs = gym.make_vec("textgym/TextGeneration-v0", num_envs=16, vectorization_mode="vector_entry_point",
                        model=reference, tokenizer=tokenizer, prompts=list(train["prompt"]), reward_fn=reward,
                        kl_coef=0.05, max_new_tokens=40, max_context=96, ref_scoring="episode")
    agent = LMPPO(load_causal_lm("textgym/tiny-lm"), tokenizer,
                  LMConfig(learning_rate=5e-5, batch_episodes=32, num_minibatches=2, update_epochs=2))
    agent.learn(envs, args.steps)
    prompts = list(dict.fromkeys(test["prompt"]))[:64]
    chosen_prompts = list(test["prompt"])[:300]  # the rows are TRL-ready: prompt, then chosen and rejected answers
    chosen = [prompt + answer for prompt, answer in zip(chosen_prompts, test["chosen"], strict=False)]
    for name, model in (("before", reference), ("after", agent.model)):
        texts = [tokenizer.decode(c, skip_special_tokens=True)
                 for c in sample_completions(model, tokenizer, prompts, 40, seed=0)]
        print(f"{name:>6}: reward {reward(prompts, texts).mean():+.3f}, perplexity of held-out chosen answers "
              f"{perplexity(model, tokenizer, chosen, chosen_prompts):.3f}\n        e.g. {prompts[0].strip()!r}"
              f" -> {texts[0].strip()!r}")


if __name__ == "__main__":
    main()
