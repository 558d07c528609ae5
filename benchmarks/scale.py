"""A Qwen2-0.5B-shaped model on one machine: PPO and RLOO updates with LoRA in bf16, against TRL's GRPO.

The model is Qwen2-0.5B's shape (hidden 896, 24 layers, 14 heads, 2 key/value heads, vocabulary
151,936, tied embeddings: 494M parameters), randomly initialised from ``Qwen2Config`` (no download),
in bf16. The tokenizer is a word-level one with as many tokens as the vocabulary, so every logit is
a real action. The policy is the model with LoRA adapters (r 16 on the attention projections); the
reference is the same weights with the adapters off (one copy of the base). One update is 8
completions of 32 new tokens for one 16-token prompt (a group of 8), one epoch, one minibatch,
KL coefficient 0.05, a keyword reward.

Each method runs in a fresh process, timing its second update (the first warms up): textgym PPO,
textgym RLOO, and TRL's ``GRPOTrainer`` on the same model, LoRA config and work (``beta`` 0.05, so
it also scores the reference, through the same disabled adapters). Reported: seconds per update
split into sampling, reference, reward and update (textgym; TRL's own profiling where it has it),
completions/s and their ratio to TRL's, the peak resident memory of the process, and on a GPU the
peak GPU memory; also the error of the bf16 model's log-probabilities against an fp32 copy.

A CPU without bf16 instructions emulates bf16 products; there the LM agents compute the frozen base's
linears in fp32 (:func:`textgym.models.precision.compute_frozen_in_fp32`), which the JSON records as
``frozen_linears_in_fp32``. bf16 speed depends on the kind of CPU, so the JSON keeps one entry per
kind (``by_cpu_kind``: native bf16, or emulated), each with the CPU's name and flags; a run replaces
its own kind's entry and keeps the others.

    python benchmarks/scale.py                  # CPU: 2 minutes on 2 cores with bf16 instructions, 20 without
    python benchmarks/scale.py --device cuda    # the same on a GPU; the same JSON, plus peak GPU memory

Writes ``benchmarks/results/scale.json`` (``scale-cuda.json`` on a GPU).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from textgym.app.files import cpu_flags, cpu_name, in_fresh_process

PROMPT_TOKENS, NEW_TOKENS, COMPLETIONS, KL, LR, RANK = 16, 32, 8, 0.05, 1e-5, 16
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]
VOCAB = 151_936


def build(folder: Path) -> None:
    """The random Qwen2-0.5B-shaped model in bf16 and its word-level tokenizer, saved to ``folder``."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    from textgym.models import no_progress_bars
    from textgym.models.tiny import word_tokenizer

    config = Qwen2Config(vocab_size=VOCAB, hidden_size=896, num_hidden_layers=24, num_attention_heads=14,
                         num_key_value_heads=2, intermediate_size=4864, max_position_embeddings=512,
                         tie_word_embeddings=True, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    with no_progress_bars():
        model.save_pretrained(folder)
    word_tokenizer([f"w{i}" for i in range(1, VOCAB)]).save_pretrained(folder)


def prompt_and_reward():
    """One 16-word prompt, and a reward counting the words of even number (half the vocabulary)."""
    import numpy as np

    from textgym.rewards.base import Reward

    class EvenWords(Reward):
        name = "even_words"

        def score(self, prompts: list[str], completions: list[str]) -> np.ndarray:
            return np.array([sum(int(w[1:]) % 2 == 0 for w in c.split() if w[1:].isdigit()) for c in completions],
                            dtype=float)

    rng = np.random.default_rng(0)
    return " ".join(f"w{i}" for i in rng.integers(1, VOCAB, PROMPT_TOKENS)), EvenWords()


def cpu_kind(device: str, native_bf16: bool) -> str:
    """The kind of machine a result stands for: a GPU, or a CPU with bf16 arithmetic or without it."""
    if device != "cpu":
        return device
    return "cpu, native bf16" if native_bf16 else "cpu, bf16 emulated"


def peaks(device: str) -> dict[str, float]:
    """Peak resident memory of this process (and of the GPU), GiB."""
    import torch

    from textgym.app.files import peak_rss_mib

    out = {"peak_rss_gib": peak_rss_mib() / 1024}
    if device.startswith("cuda"):
        out["peak_gpu_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def textgym_run(folder: str, algorithm: str, device: str, threads: int) -> dict:
    """Two updates of textgym's PPO or RLOO; the second one timed, split by phase."""
    import torch

    from agents import agent_class
    from agents.lm import LMConfig
    from agents.lora import AdapterDisabledReference, lora_policy
    from textgym.envs import TextGenerationVectorEnv
    from textgym.models import load_causal_lm, load_tokenizer
    from textgym.models.precision import Fp32CopyLinear, Fp32Linear

    torch.set_num_threads(threads)
    tokenizer = load_tokenizer(folder)
    policy = lora_policy(load_causal_lm(folder, dtype="bf16").to(device), r=RANK, alpha=2 * RANK,
                         target_modules=TARGETS)
    prompt, reward = prompt_and_reward()
    envs = TextGenerationVectorEnv(num_envs=COMPLETIONS, group_size=COMPLETIONS, model=AdapterDisabledReference(policy),
                                   tokenizer=tokenizer, prompts=[prompt], reward_fn=reward,
                                   max_context=PROMPT_TOKENS + NEW_TOKENS, max_new_tokens=NEW_TOKENS, kl_coef=KL,
                                   ref_scoring="episode")
    agent = agent_class(algorithm)(policy, tokenizer, LMConfig(learning_rate=LR, batch_episodes=COMPLETIONS,
                                                               num_minibatches=1, update_epochs=1))
    converted = sum(isinstance(m, (Fp32Linear, Fp32CopyLinear)) for m in policy.modules())  # the tied head's copy too
    clock: dict[str, float] = {}
    timed(envs.core, "score_reference", clock, "reference")
    timed(envs.core, "reward_fn", clock, "reward", attribute=True)
    timed(agent, "update", clock, "update")
    original = agent.make_sampler

    def sampler(*args, **kwargs):
        made = original(*args, **kwargs)
        timed(made, "act", clock, "sampling")
        return made

    agent.make_sampler = sampler
    stamps = []
    agent.learn(envs, COMPLETIONS * NEW_TOKENS * 2, lambda row: stamps.append((time.perf_counter(), dict(clock)))
                and False)
    (t0, c0), (t1, c1) = stamps[0], stamps[-1]
    split = {phase: c1.get(phase, 0.0) - c0.get(phase, 0.0) for phase in ("sampling", "reference", "reward", "update")}
    return {"method": f"textgym {algorithm}", "seconds_per_update": t1 - t0, "split_seconds": split,
            "completions_per_s": COMPLETIONS / (t1 - t0), "tokens": NEW_TOKENS, "frozen_linears_in_fp32": converted,
            **peaks(device)}


def timed(owner, name: str, clock: dict, phase: str, attribute: bool = False) -> None:
    """Wrap ``owner.name`` (a method, or a callable attribute) so its run time adds to ``clock[phase]``."""
    inner = getattr(owner, name)

    def wrapper(*args, **kwargs):
        began = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            clock[phase] = clock.get(phase, 0.0) + time.perf_counter() - began

    if attribute:  # a reward object: keep its name, wrap its call
        class Timed:
            name = inner.name

            def __call__(self, *args, **kwargs):
                return wrapper(*args, **kwargs)

        setattr(owner, name, Timed())
    else:
        setattr(owner, name, wrapper)


def trl_run(folder: str, device: str, threads: int) -> dict:
    """Two steps of TRL's GRPOTrainer on the same model, LoRA config and work; the second one timed."""
    import datasets
    import torch
    import trl
    from peft import LoraConfig
    from transformers import TrainerCallback

    torch.set_num_threads(threads)
    prompt, reward = prompt_and_reward()
    stamps: list[float] = []

    class Stamps(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            stamps.append(time.perf_counter())

    args = trl.GRPOConfig(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=COMPLETIONS,
                          num_generations=COMPLETIONS, max_completion_length=NEW_TOKENS, beta=KL, num_iterations=1,
                          learning_rate=LR, use_cpu=device == "cpu", bf16=device != "cpu", report_to=[],
                          logging_steps=1, save_strategy="no", max_steps=2, disable_dropout=True, seed=0,
                          model_init_kwargs={"dtype": torch.bfloat16})
    from textgym.models import load_tokenizer

    trainer = trl.GRPOTrainer(model=folder, processing_class=load_tokenizer(folder), reward_funcs=reward, args=args,
                              callbacks=[Stamps()],
                              train_dataset=datasets.Dataset.from_dict({"prompt": [prompt] * 4}),
                              peft_config=LoraConfig(r=RANK, lora_alpha=2 * RANK, target_modules=TARGETS,
                                                     task_type="CAUSAL_LM"))
    began = time.perf_counter()
    trainer.train()
    last = trainer.state.log_history[-2] if len(trainer.state.log_history) > 1 else {}
    split = {k.removeprefix("profiling/Time taken: "): v for k, v in last.items() if k.startswith("profiling/")}
    seconds = stamps[-1] - stamps[0] if len(stamps) > 1 else time.perf_counter() - began
    return {"method": "TRL GRPO", "seconds_per_update": seconds, "split_seconds": split,
            "completions_per_s": COMPLETIONS / seconds, "tokens": NEW_TOKENS, **peaks(device)}


def logprob_error(folder: str, threads: int) -> dict:
    """Mean and max |log p_bf16 - log p_fp32| of 8 x 32 completion tokens (fp32 copy of the same weights).

    Also the same for the bf16 model with its linears computed in fp32 (``frozen_in_fp32_*``), as the
    agents run a frozen base where bf16 is emulated.
    """
    import numpy as np
    import torch

    from textgym.models import load_causal_lm
    from textgym.models.logprobs import completion_logprobs
    from textgym.models.precision import compute_frozen_in_fp32

    torch.set_num_threads(threads)
    rng = np.random.default_rng(1)
    prompts = [rng.integers(1, VOCAB, PROMPT_TOKENS).tolist() for _ in range(COMPLETIONS)]
    completions = [rng.integers(1, VOCAB, NEW_TOKENS).tolist() for _ in range(COMPLETIONS)]
    half = completion_logprobs(load_causal_lm(folder, dtype="bf16"), prompts, completions, 0)
    full = completion_logprobs(load_causal_lm(folder, dtype="fp32"), prompts, completions, 0)
    converted = load_causal_lm(folder, dtype="bf16").requires_grad_(False)
    compute_frozen_in_fp32(converted, force=True)
    mixed = completion_logprobs(converted, prompts, completions, 0)
    errors, mixed_errors = (torch.cat([(a - b).abs() for a, b in zip(x, full, strict=True)]) for x in (half, mixed))
    return {"mean_abs_error": float(errors.mean()), "max_abs_error": float(errors.max()),
            "frozen_in_fp32_mean_abs_error": float(mixed_errors.mean()),
            "frozen_in_fp32_max_abs_error": float(mixed_errors.max()),
            "mean_abs_logprob": float(torch.cat(full).abs().mean())}


def main() -> None:
    """Build the model once, run every method in its own process, write the JSON and print a table."""
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default=None, help="default: benchmarks/results/scale.json (scale-cuda.json)")
    args = parser.parse_args()
    output = Path(args.output or f"benchmarks/results/scale{'' if args.device == 'cpu' else '-cuda'}.json")
    with tempfile.TemporaryDirectory() as tmp:
        in_fresh_process(build, Path(tmp))
        runs = []
        for job in ((textgym_run, tmp, "ppo", args.device, args.threads),
                    (textgym_run, tmp, "rloo", args.device, args.threads), (trl_run, tmp, args.device, args.threads)):
            runs.append(in_fresh_process(*job))
            print(f"{runs[-1]['method']}: {runs[-1]['seconds_per_update']:.1f} s per update, "
                  f"{runs[-1]['completions_per_s']:.3f} completions/s, peak RSS {runs[-1]['peak_rss_gib']:.2f} GiB "
                  f"({', '.join(f'{k} {v:.1f} s' for k, v in runs[-1]['split_seconds'].items())})", flush=True)
        error = in_fresh_process(logprob_error, tmp, args.threads)
    trl_speed = runs[-1]["completions_per_s"]
    from textgym.models import native_half

    native = native_half(args.device, torch.bfloat16)
    result = {"cpu_kind": cpu_kind(args.device, native), "device": args.device, "torch": torch.__version__,
              "threads": args.threads, "cpu": cpu_name(), "cpu_flags": cpu_flags(), "cpu_native_bf16": native,
              "model": "Qwen2-0.5B shape, random, bf16, LoRA r16 (q,k,v,o)", "runs": runs,
              "ratio_to_trl_grpo": {r["method"]: r["completions_per_s"] / trl_speed for r in runs[:2]},
              "bf16_logprob_error_vs_fp32": error}
    kinds = json.loads(output.read_text()).get("by_cpu_kind", []) if output.exists() else []
    kinds = [k for k in kinds if k.get("cpu_kind") != result["cpu_kind"]] + [result]
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({"by_cpu_kind": kinds}, indent=2))
    print(json.dumps({k: result[k] for k in ("ratio_to_trl_grpo", "bf16_logprob_error_vs_fp32")}, indent=2))
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
