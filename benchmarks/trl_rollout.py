"""TRL ``GRPOTrainer`` steps per second: textgym's rollouts (``TextgymRollout``) against TRL's own generation.

Two ``GRPOTrainer`` runs on the same model, prompts and work, on the CPU with one torch thread:

  textgym: ``rollout_func=TextgymRollout("textgym/Sentiment-v0", kl_coef=KL, ref_scoring=...)``: the
      trainer's model samples with its own KV cache while the environment scores ``log pi_ref`` and the
      sentiment classifier scores each completion; the KL enters through the ``env_objective`` reward
      (``GRPOConfig(beta=0.0)``: no second reference pass);
  trl: TRL's transformers path (``model.generate``), then TRL's own reference forward (``beta=KL``) and a
      reward function that calls the same sentiment classifier on the same texts.

The work is equal: the same policy and reference weights, the same prompts in the same order (one
seed), ``num_generations`` completions per prompt, and exactly ``new_tokens`` tokens per completion
on both sides: EOS is the only token either side may not sample (TRL: ``min_new_tokens`` equal to
``max_completion_length``, whose logits processor sets EOS to -inf; textgym: the environment's
``action_mask`` without EOS, which the rollout samples within), so no completion ends early; both
compute the reference log-probs of every token and the classifier's score of every completion.
Both trainers take the same GRPO step (one optimiser step per generation, dropout off).

The two sides take turns a step at a time in one process (each trainer's ``train()`` in its own
thread, only one running at once), so the machine's load falls on both alike. ``rounds`` rounds of
fresh trainers (the first mover swapped each round) each time ``steps`` steps per side after one
warm-up step. Step i of the two sides trains on the same prompts, one right after the other: its
ratio textgym / TRL is TRL's step time over textgym's. Reported per model: both sides' steps/s
(1 / the median step time over every round), the ratio (the median of every pair's ratio, so the
load, which changes from one minute to the next, cancels within each pair), its spread (the lowest
and the highest round's median), and the CPU's name and instruction-set flags. Writes
``benchmarks/results/trl_rollout.json``.

    python benchmarks/trl_rollout.py            # the kit model and a random 4x256 GPT-2
    python benchmarks/trl_rollout.py --quick    # one round of two steps on the kit model (smoke run)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import tempfile
import threading
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from rollout import add_config_flags  # benchmarks/rollout.py, beside this script
from transformers import PrinterCallback, TrainerCallback

import textgym  # noqa: F401  (registers the environments)
from textgym.app.files import cpu_flags, cpu_name
from textgym.integrations.trl import TextgymRollout, env_objective, prompt_dataset
from textgym.models import load_causal_lm, load_tokenizer, native_half, no_progress_bars
from textgym.models.tiny import random_causal_lm
from textgym.rewards import score_batch
from textgym.tasks import DEFAULT_MODEL, get_task


@dataclass
class Config:
    """Benchmark settings (every field is a CLI flag)."""

    models: list[str] = field(default_factory=lambda: ["kit", "4x256"])
    """``kit`` (the embedded ``textgym/tiny-lm``) or a random GPT-2 as LAYERSxWIDTH, on the kit's tokenizer."""
    batch: int = 16
    """Completions per step (``per_device_train_batch_size``)."""
    num_generations: int = 8
    """Completions per prompt (a GRPO group)."""
    new_tokens: int = 32
    """Tokens in every completion, on both sides."""
    kl_coef: float = 0.05
    """The KL coefficient: TRL's ``beta``, or the environment's ``kl_coef``."""
    ref_scoring: str = "episode"
    """The environment's reference scoring: ``episode`` (one teacher-forced pass, as TRL) or ``step``."""
    rounds: int = 3
    """Alternations of the two sides."""
    steps: int = 6
    """Timed steps per side per round (after one warm-up step)."""
    threads: int = 1
    """torch threads."""
    output: str = "benchmarks/results/trl_rollout.json"
    """Where to write the figures."""


class Turns:
    """Two trainers, each ``train()`` in its own thread, taking turns a step at a time (only one runs at once)."""

    def __init__(self, sides: tuple[str, str]) -> None:
        self.sides, self.done = sides, set()
        self.go = {side: threading.Event() for side in sides}
        self.ready = threading.Barrier(len(sides))  # both set up before the first turn

    def wait(self, side: str) -> None:
        """Block until it is ``side``'s turn (at once if the other side has finished)."""
        if self.done != {s for s in self.sides if s != side}:
            self.go[side].wait()
        self.go[side].clear()

    def pass_on(self, side: str) -> None:
        """Give the turn to the other side, or keep it if the other side has finished."""
        other = next(s for s in self.sides if s != side)
        self.go[side if other in self.done else other].set()

    def finish(self, side: str) -> None:
        """``side`` is done (or failed): the other side runs on alone."""
        self.done.add(side)
        self.ready.abort()  # a side that failed in its set-up must not leave the other waiting for it
        self.pass_on(side)


class StepTimes(TrainerCallback):
    """Times each step of one side, in turns with the other: from getting the turn to the step's end.

    Everything the trainer does between two step ends (the batch, generation, scoring, the update,
    the callbacks) happens while it holds the turn. The first step (set-up, warm-up) is not kept.
    """

    def __init__(self, side: str, turns: Turns) -> None:
        self.side, self.turns = side, turns
        self.periods: list[float] = []
        self.logs: dict[str, float] = {}
        self._start = 0.0
        self._first = True

    def on_log(self, args, state, control, logs=None, **kwargs):
        """Keep the trainer's metrics (the completions' lengths among them)."""
        self.logs.update(logs or {})

    def on_train_begin(self, args, state, control, **kwargs):
        """Wait until both trainers are set up and it is this side's turn."""
        self.turns.ready.wait()
        self.turns.wait(self.side)
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        """Keep the step's time, hand the turn over and wait for it back."""
        if not self._first:
            self.periods.append(time.perf_counter() - self._start)
        self._first = False
        self.turns.pass_on(self.side)
        self.turns.wait(self.side)
        self._start = time.perf_counter()


def take_turns(trainers: dict, turns: Turns) -> None:
    """Run every trainer's ``train()`` in its own thread, in turns; re-raise the first failure."""
    errors: list[BaseException] = []

    def train(side: str) -> None:
        try:
            trainers[side].train()
        except BaseException as error:  # noqa: BLE001 (re-raised in the caller's thread)
            errors.append(error)
        finally:
            turns.finish(side)

    threads = [threading.Thread(target=train, args=(side,), name=f"train-{side}") for side in trainers]
    turns.go[turns.sides[0]].set()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    real = [e for e in errors if not isinstance(e, threading.BrokenBarrierError)]
    if real or errors:
        raise (real or errors)[0]


class SentimentScore:
    """TRL's reward function for its own generation: the task's classifier score of each (prompt, completion)."""

    __name__ = "sentiment_score"

    def __init__(self) -> None:
        self.reward = get_task("sentiment").reward()

    def __call__(self, prompts: list[str], completions: list[str], **kwargs) -> list[float]:
        """The classifier's score, as the environment computes it."""
        return [float(x) for x in score_batch(self.reward, prompts, completions)]


def model_folder(size: str, folder: Path) -> str:
    """The model's folder: the kit's, or a random GPT-2 ``LAYERSxWIDTH`` in ``folder`` with the kit's tokenizer."""
    kit = load_causal_lm(DEFAULT_MODEL)
    if size == "kit":
        return kit.config._name_or_path  # the embedded folder: TRL builds its reference from it
    layers, width = (int(x) for x in size.split("x"))
    model = random_causal_lm(kit.config.vocab_size, layers, width, n_positions=kit.config.n_positions, seed=1)
    model.save_pretrained(folder / size)
    load_tokenizer(DEFAULT_MODEL).save_pretrained(folder / size)
    return str(folder / size)


def trainer_for(side: str, path: str, cfg: Config, out: str, reward: SentimentScore, turns: Turns):
    """A fresh ``GRPOTrainer`` for ``side`` (``textgym`` or ``trl``) and its step timer, taking ``turns``."""
    from trl import GRPOConfig, GRPOTrainer

    tokenizer = load_tokenizer(path)
    common = dict(output_dir=out, per_device_train_batch_size=cfg.batch, num_generations=cfg.num_generations,
                  max_completion_length=cfg.new_tokens, max_steps=cfg.steps + 1, learning_rate=1e-5, seed=0,
                  use_cpu=True, bf16=False, disable_dropout=True, report_to=[], save_strategy="no",
                  logging_strategy="no", disable_tqdm=True, dataloader_num_workers=0)
    timer = StepTimes(side, turns)
    if side == "textgym":
        allowed = np.ones(len(tokenizer), dtype=np.int8)
        allowed[tokenizer.eos_token_id] = 0  # no completion ends early: exactly new_tokens each
        rollout = TextgymRollout("textgym/Sentiment-v0", kl_coef=cfg.kl_coef, model=path, tokenizer=tokenizer,
                                 max_new_tokens=cfg.new_tokens, max_context=64 + cfg.new_tokens,
                                 action_mask=allowed, ref_scoring=cfg.ref_scoring)
        args = GRPOConfig(beta=0.0, **common)
        trainer = GRPOTrainer(model=load_causal_lm(path), processing_class=tokenizer, reward_funcs=[env_objective],
                              train_dataset=prompt_dataset("sentiment"), args=args, rollout_func=rollout,
                              callbacks=[timer])
    else:
        args = GRPOConfig(beta=cfg.kl_coef, generation_kwargs={"min_new_tokens": cfg.new_tokens}, **common)
        trainer = GRPOTrainer(model=load_causal_lm(path), processing_class=tokenizer, reward_funcs=[reward],
                              train_dataset=prompt_dataset("sentiment"), args=args, callbacks=[timer])
    trainer.remove_callback(PrinterCallback)  # the figures are printed once, at the end
    return trainer, timer


def run_model(cfg: Config, size: str, folder: Path) -> dict:
    """Both sides on one model, alternated ``rounds`` times; steps/s, the ratio and its spread."""
    path = model_folder(size, folder)
    reward = SentimentScore()
    periods: dict[str, list[float]] = {"textgym": [], "trl": []}
    round_ratios, pair_ratios, lengths = [], [], {}
    for round_ in range(cfg.rounds):
        turns = Turns(("textgym", "trl") if round_ % 2 == 0 else ("trl", "textgym"))
        built = {side: trainer_for(side, path, cfg, str(folder / side), reward, turns) for side in turns.sides}
        take_turns({side: trainer for side, (trainer, _) in built.items()}, turns)
        for side, (_, timer) in built.items():
            lengths[side] = {timer.logs["completions/min_length"], timer.logs["completions/max_length"]}
            periods[side] += timer.periods
        # step i of both sides: the same prompts, one after the other
        pairs = [trl / mine for mine, trl in zip(built["textgym"][1].periods, built["trl"][1].periods, strict=True)]
        pair_ratios += pairs
        round_ratios.append(statistics.median(pairs))
        print(f"  {size} round {round_ + 1}: textgym {1 / statistics.median(built['textgym'][1].periods):.3f} "
              f"steps/s, trl {1 / statistics.median(built['trl'][1].periods):.3f} steps/s, "
              f"ratio {round_ratios[-1]:.3f}", flush=True)
    if lengths["textgym"] != {cfg.new_tokens} or lengths["trl"] != {cfg.new_tokens}:
        raise RuntimeError(f"the completions were not {cfg.new_tokens} tokens on both sides: {lengths}")
    model = load_causal_lm(path)
    speed = {side: 1 / statistics.median(values) for side, values in periods.items()}
    return {"model": size, "layers": model.config.n_layer, "width": model.config.n_embd,
            "parameters": sum(p.numel() for p in model.parameters()), "steps_per_s": speed,
            "ratio": statistics.median(pair_ratios), "round_ratios": round_ratios,
            "ratio_spread": [min(round_ratios), max(round_ratios)], "step_seconds": periods}


def main() -> None:
    """Parse flags, run both sides on every model, print the figures, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_flags(parser, Config())
    parser.add_argument("--quick", action="store_true",
                        help="the kit model, one round of two steps of 8 completions of 8 tokens (smoke run)")
    ns = vars(parser.parse_args())
    quick = ns.pop("quick")
    cfg = Config(**ns)
    if quick:
        cfg = replace(cfg, models=["kit"], batch=8, num_generations=4, new_tokens=8, rounds=1, steps=2)
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # rollout_func is experimental in TRL 1.16; we know
    warnings.filterwarnings("ignore", category=FutureWarning)  # transformers' renames, warned inside TRL each step
    torch.set_num_threads(cfg.threads)
    machine = {"cpu": cpu_name(), "cpu_flags": cpu_flags(), "cpu_native_bf16": native_half("cpu", torch.bfloat16),
               "threads": cfg.threads}
    print(f"CPU: {machine['cpu']}; flags: " + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in
                                                         machine["cpu_flags"].items()), flush=True)
    rows = []
    wrong = [size for size in cfg.models if size != "kit" and not re.fullmatch(r"[1-9]\d*x[1-9]\d*", size)]
    if wrong:
        parser.error(f"--models takes 'kit' or LAYERSxWIDTH sizes such as 4x256, got {' '.join(wrong)}")
    with tempfile.TemporaryDirectory() as tmp, no_progress_bars():
        for size in cfg.models:
            rows.append(run_model(cfg, size, Path(tmp)))
    print(f"{'model':>6} {'params':>9} | {'textgym':>8} {'trl':>8} steps/s | {'textgym/trl':>11} (rounds: min-max)")
    for row in rows:
        low, high = row["ratio_spread"]
        print(f"{row['model']:>6} {row['parameters']:>9,} | {row['steps_per_s']['textgym']:>8.3f} "
              f"{row['steps_per_s']['trl']:>8.3f}         | {row['ratio']:>11.2f} ({low:.2f}-{high:.2f})")
    import transformers
    import trl

    Path(cfg.output).parent.mkdir(parents=True, exist_ok=True)
    Path(cfg.output).write_text(json.dumps({
        "config": asdict(cfg), "machine": machine, "torch": torch.__version__, "trl": trl.__version__,
        "transformers": transformers.__version__, "rows": rows,
        "ratios": {row["model"]: row["ratio"] for row in rows}}, indent=2))
    print(f"wrote {cfg.output}")


if __name__ == "__main__":
    main()
