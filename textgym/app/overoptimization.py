"""The reward over-optimisation map: when does optimising a proxy reward stop helping the true objective?

For each reward case, algorithm and ``kl_coef`` (0 included), a policy is trained on the proxy reward
and evaluated at regular points along training (every ``eval_every`` updates, and before the first)
on a fixed set of held-out prompts, one completion each, **sampled** at temperature 1 with a fixed
seed (the distribution the policy acts with, and the one its KL is measured on). Each evaluation
measures:

- ``proxy``: the reward trained on (mean over the completions);
- ``gold``: the true objective, oriented so that higher is better: the task's independent judge
  (VADER for the sentiment rewards, the helpfulness classifier, the insult rate negated), or the
  hidden utility (:attr:`textgym.tasks.Task.utility`) for a learned reward model;
- ``kl``: the exact KL to the reference, ``sum_t KL(pi(.|s_t) || pi_ref(.|s_t))`` over the whole
  vocabulary at every state of each sampled answer, averaged over the answers
  (:func:`textgym.models.logprobs.completion_kl`);
- hacking indicators: ``length`` (tokens per answer), ``distinct_2`` (distinct word bigrams over all
  bigrams of the answers), ``entropy`` (the policy's mean per-token entropy along its answers, nats)
  and ``ref_perplexity`` (the reference model's perplexity of the answers' tokens).

The non-RL baseline is best-of-n sampling from the reference with the proxy as the selector, n in 1,
2, 4, ... ``best_of``: ``best_of`` samples per prompt are split into groups of n and each group's
best-scored answer is kept. Its KL is the closed form ``log n - (n - 1) / n`` (an upper bound of
the exact KL that is reached when the proxy has no ties; Beirami et al. 2024).

Summary of each (case, algorithm, kl_coef), over the seed-mean curve:

- the gold peak: the evaluation point with the highest gold and its KL; ``peak_inside`` when later
  points follow it, and ``fell_after_peak`` when the gold at the end is more than 2 standard errors
  (of a reference evaluation's mean gold) below it: over-optimisation seen, not only a plateau;
- the proxy-gold gap at the end: the proxy's gain minus the gold's gain since the first evaluation,
  each in standard deviations of its per-answer values under the reference (so 0 means the gold rose
  as far as the proxy did, in the reference's units; undefined where the reference's answers all
  score the same);
- for each indicator, whether and how many evaluation points before the gold peak it first moved past
  a threshold: ``noise``, more than ``noise_sigmas`` bootstrap standard errors of its value at the
  first evaluation (``bootstrap`` resamples of the reference's answers: a move a fresh evaluation
  would not show by chance), and ``relative``, more than ``relative_change`` of that value. A
  positive ``points_before_peak`` is an early warning; 0 means it moved at the peak itself.

The learned reward model of a ``rm:{rm}`` case is trained here once (supervised fine-tuning of the
embedded tiny LM on the task's demonstrations, then a reward model on its trunk from the task's
rankings) and cached under ``prep``; the policy and the reference both start from the fine-tuned
model.

    textgym bench overoptimization             # the map: about 25 minutes on 2 cores (--estimate)
    textgym bench overoptimization --quick     # one case, one seed, 2 kl values, 2 points: a minute
    textgym bench overoptimization --estimate  # time a few updates of each run; print the map's time
    textgym bench overoptimization --cases custom --task sentiment --reward keyword:great \
        --judge lexicon-sentiment
    textgym bench overoptimization --cases helpfulness-rm --rm-pairs 300 1000 3000 --name overoptimization_rm

``python benchmarks/overoptimization.py`` takes the same flags and writes to ``benchmarks/results``.
Writes ``overoptimization.json`` and ``overoptimization.png`` (a grid: gold and proxy against
sqrt(KL), one column per case) to ``--out`` (``overoptimization_quick.*`` with ``--quick``,
``overoptimization_estimate.*`` with ``--estimate``). The settings: :class:`textgym.app.config.OverOptimizationConfig`.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from textgym.app.config import OverOptimizationConfig, validate
from textgym.app.files import cpu_flags, cpu_name
from textgym.tasks.rewards import make_reward

#: The tasks a case may come from (those with benchmark cases and a judge).
TASKS = ("sentiment", "helpfulness", "detox")
#: The model the cases start from (a ``rm:{rm}`` case fine-tunes it first).
BASE_MODEL = "textgym/tiny-lm"
#: The hacking indicators, each measured at every evaluation.
INDICATORS = ("length", "distinct_2", "entropy", "ref_perplexity")
#: The name of the case that ``--task``, ``--reward`` and ``--judge`` describe.
CUSTOM = "custom"


def quick_config(cfg: OverOptimizationConfig) -> OverOptimizationConfig:
    """The smoke-test form: one case, one seed, two kl values, two evaluation points, tiny batches."""
    return replace(cfg, cases=cfg.cases[:1] if cfg.cases[0] != "helpfulness-rm" else ["sentiment-classifier"],
                   seeds=cfg.seeds[:1], kl_coefs=[0.0, 0.1], updates=2, eval_every=2, batch_episodes=8, num_envs=8,
                   eval_prompts=8, max_new_tokens=8, best_of=4, bootstrap=50, workers=1)


# ---------------------------------------------------------------------------------------------- cases
@dataclass(frozen=True)
class Case:
    """A reward case: a proxy reward on a task's environment, and the gold it is judged by."""

    name: str
    task: str
    reward: str
    """Proxy reward spec; ``rm:{rm}`` is the task's learned reward model."""
    gold: str
    """``utility`` (the task's hidden utility), ``judge`` (the task's judge metric) or a reward spec."""
    rm_pairs: int = 0
    """``rm:{rm}`` cases: the preference pairs its reward model learns from."""


def known_cases(cfg: OverOptimizationConfig) -> dict[str, Case]:
    """The tasks' benchmark cases (the gold of a learned reward model is the hidden utility), and the custom one."""
    from textgym.tasks import get_task

    out = {}
    for name in TASKS:
        task = get_task(name)
        for case, spec in task.bench_cases.items():
            if "{rm}" not in spec:
                out[case] = Case(case, name, spec, "judge")
                continue
            gold = "utility" if task.utility is not None else "judge"
            out[case] = Case(case, name, spec, gold, cfg.rm_pairs[-1])  # with several amounts, names them all
            for pairs in cfg.rm_pairs if len(cfg.rm_pairs) > 1 else []:
                out[f"{case}-{pairs}"] = Case(f"{case}-{pairs}", name, spec, gold, pairs)
    if cfg.reward:
        out[CUSTOM] = Case(CUSTOM, cfg.task, cfg.reward, cfg.judge or "judge")
    return out


def expand(names: list[str], known: dict[str, Case], rm_pairs: list[int]) -> list[str]:
    """The cases to run: a learned reward model's case once per amount of pairs when several are given."""
    several = len(rm_pairs) > 1
    return [n for name in names for n in
            ([f"{name}-{pairs}" for pairs in rm_pairs] if several and known[name].rm_pairs else [name])]


def env_id(task_name: str) -> str:
    """The registered env id of an embedded task."""
    from textgym.tasks import get_task

    return str(get_task(task_name).env_id)


def prepare(case: Case, cfg: OverOptimizationConfig) -> tuple[str, str]:
    """The starting model and the proxy spec of a case; a ``rm:{rm}`` case's models are built once."""
    if "{rm}" not in case.reward:
        return BASE_MODEL, case.reward
    from textgym.app import steps
    from textgym.tasks import get_task

    task, prep = get_task(case.task), Path(cfg.prep)
    sft = prep / f"{case.task}-sft-{cfg.sft_examples}x{cfg.sft_epochs}"
    rm = prep / f"{sft.name}-rm-{case.rm_pairs}"
    if not (sft / "config.json").is_file():
        print(f"preparing {case.name}: supervised fine-tuning -> {sft}", flush=True)
        steps.supervised_fine_tuning(task, sft, cfg.sft_examples, cfg.sft_epochs, seed=0)
    if not (rm / "config.json").is_file():
        print(f"preparing {case.name}: a reward model from {case.rm_pairs} pairs -> {rm}", flush=True)
        steps.reward_model(task, sft, rm, case.rm_pairs, seed=0)
    return str(sft), case.reward.format(rm=rm)


# ---------------------------------------------------------------------------------------------- measuring
def gold_measure(case: Case, prompts: list[str], texts: list[str], reward_name: str,
                 per_answer: bool = False) -> tuple[float, np.ndarray | None, dict[str, float]]:
    """The mean gold of answers (higher is better), each answer's (with ``per_answer``), and the task judge's metrics.

    A task judge only reports means: with ``per_answer`` it is also asked about one answer at a time.
    """
    from textgym.tasks import get_task

    task = get_task(case.task)
    judge = task.judge
    extra = {k: float(v) for k, v in judge(prompts, texts, reward_name).items()} if judge else {}
    values = None
    if case.gold == "utility":
        values = np.asarray(_part(task.utility, case, "hidden utility")(prompts, texts), dtype=np.float64)
    elif case.gold != "judge":
        values = np.asarray(make_reward(case.gold)(prompts, texts), dtype=np.float64)
    else:
        metric, sign = judge_metric(case, reward_name)
        if per_answer:
            values = np.array([sign * _part(judge, case, "judge")([p], [t], reward_name)[metric]
                               for p, t in zip(prompts, texts, strict=True)])
        return sign * extra[metric], values, extra
    return float(values.mean()), values, extra


def _part(part: Callable[..., Any] | None, case: Case, what: str) -> Callable[..., Any]:
    """A task's judge or hidden utility, where the case's gold needs it and the task has it."""
    if part is None:
        raise ValueError(f"case {case.name}: task {case.task} has no {what} to be the gold")
    return part


def judge_metric(case: Case, reward_name: str) -> tuple[str, float]:
    """The task judge's ``judge/...`` metric for a reward, and +1 or -1 so that higher is better."""
    from textgym.tasks import get_task

    task = get_task(case.task)
    metric = next(k for k in _part(task.judge, case, "judge")(["x"], ["x"], reward_name) if k.startswith("judge/"))
    return metric, 1.0 if task.judge_higher_is_better.get(metric, True) else -1.0


def gold_name(case: Case, reward_name: str) -> str:
    """What the gold of a case is, in words."""
    if case.gold == "utility":
        return f"{case.task} hidden utility"
    if case.gold != "judge":
        return case.gold
    metric, sign = judge_metric(case, reward_name)
    return metric if sign > 0 else f"-{metric}"


def answer_stats(policy: Any, reference: Any, tokenizer: Any, prompts: list[str],
                 ids: list[list[int]]) -> dict[str, np.ndarray]:
    """Per answer: exact KL to the reference, the policy's summed entropy, the reference's NLL, and the length."""
    import torch

    from textgym.models.logprobs import completion_kl, completion_logprobs, token_logprobs

    pad, vocab = tokenizer.pad_token_id or 0, len(tokenizer)
    prompt_ids = [tokenizer(p)["input_ids"] for p in prompts]
    kl = [float(k.sum()) for k in completion_kl(policy, reference, prompt_ids, ids, pad, num_actions=vocab)]
    nll = [-float(lp.sum()) for lp in completion_logprobs(reference, prompt_ids, ids, pad, num_actions=vocab)]
    entropy = []
    for start in range(0, len(ids), 64):
        rows = [[*p, *c] for p, c in zip(prompt_ids[start:start + 64], ids[start:start + 64], strict=True)]
        width, keep = max(map(len, rows)), max(len(c) for c in ids[start:start + 64])
        batch = torch.tensor([[pad] * (width - len(r)) + r for r in rows])  # (B, W), left-padded
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])  # (B, W)
        with torch.no_grad():
            ent = token_logprobs(policy, batch, mask, keep, num_actions=vocab, entropy=True).entropy  # (B, K)
        if ent is None:
            raise RuntimeError("token_logprobs returned no entropy although asked for it")
        entropy += [float(ent[i, keep - len(c):].sum()) for i, c in enumerate(ids[start:start + 64])]
    return {"kl": np.array(kl), "entropy": np.array(entropy), "ref_nll": np.array(nll),
            "length": np.array([len(c) for c in ids], dtype=np.float64)}


def pooled(stats: dict[str, np.ndarray], texts: list[str], idx: np.ndarray | None = None) -> dict[str, Any]:
    """The indicators of a set of answers (``idx``: a resample of them): per-token means pooled over the answers."""
    from textgym.eval.text import distinct_n

    idx = np.arange(len(texts)) if idx is None else idx
    tokens = stats["length"][idx].sum()
    return {"length": float(stats["length"][idx].mean()), "distinct_2": distinct_n([texts[i] for i in idx], 2),
            "entropy": float(stats["entropy"][idx].sum() / tokens) if "entropy" in stats else None,
            "ref_perplexity": float(math.exp(stats["ref_nll"][idx].sum() / tokens))}


def evaluate(case: Case, policy: Any, reference: Any, tokenizer: Any, proxy: Any, prompts: list[str],
             cfg: OverOptimizationConfig, max_new_tokens: int,
             per_answer: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """One evaluation point (module docstring), and the per-answer values behind it (the gold's with ``per_answer``)."""
    from textgym.eval.text import sample_completions
    from textgym.rewards import score_batch

    ids = sample_completions(policy, tokenizer, prompts, max_new_tokens, seed=cfg.eval_seed)
    texts = [tokenizer.decode(c, skip_special_tokens=True) for c in ids]
    stats = answer_stats(policy, reference, tokenizer, prompts, ids)
    scores = score_batch(proxy, prompts, texts, warn_dead=False)
    gold, values, extra = gold_measure(case, prompts, texts, proxy.name, per_answer)
    point = {"proxy": float(scores.mean()), "gold": gold, "kl": float(stats["kl"].mean()),
             **pooled(stats, texts), "judge": extra}
    return point, {"stats": stats, "texts": texts, "proxy": scores, "gold": values}


def noise(per: dict[str, Any], resamples: int, seed: int = 0) -> dict[str, float]:
    """The noise at the first evaluation: indicators' bootstrap errors, proxy and gold spreads, the gold's error.

    Resampling answers with replacement repeats some, which lowers distinct-2 a little; its spread is what is used.
    """
    rng = np.random.default_rng(seed)
    n = len(per["texts"])
    draws = [pooled(per["stats"], per["texts"], rng.integers(0, n, n)) for _ in range(resamples)]
    out = {name: float(np.std([d[name] for d in draws])) for name in INDICATORS}
    return {**out, "proxy_sd": float(np.std(per["proxy"])), "gold_sd": float(np.std(per["gold"])),
            "gold_se": float(np.std(per["gold"]) / math.sqrt(n))}


# ---------------------------------------------------------------------------------------------- best of n
def best_of_n(case: Case, reference: Any, tokenizer: Any, proxy: Any, prompts: list[str], cfg: OverOptimizationConfig,
              max_new_tokens: int) -> list[dict[str, Any]]:
    """Best-of-n from the reference with the proxy as the selector, n = 1, 2, 4, ... ``best_of``."""
    from textgym.eval.text import distinct_n, sample_completions
    from textgym.rewards import score_batch

    total = cfg.best_of
    many = [p for p in prompts for _ in range(total)]  # prompt-major: prompt i's samples are i*total ...
    ids: list[list[int]] = []
    for start in range(0, len(many), 512):  # bounded KV caches
        ids += sample_completions(reference, tokenizer, many[start:start + 512], max_new_tokens,
                                  seed=cfg.eval_seed + 1 + start)
    texts = [tokenizer.decode(c, skip_special_tokens=True) for c in ids]
    stats = answer_stats(reference, reference, tokenizer, many, ids)
    scores = score_batch(proxy, many, texts, warn_dead=False).reshape(len(prompts), total)  # (P, N)
    points, n = [], 1
    while n <= total:
        groups = scores.reshape(len(prompts), total // n, n)  # (P, N / n, n)
        winners = (np.arange(len(prompts))[:, None] * total + np.arange(total // n)[None, :] * n
                   + groups.argmax(-1)).T.reshape(-1)  # group-major: each group answers every prompt once
        chosen = [texts[i] for i in winners]
        gold, _, extra = gold_measure(case, [many[i] for i in winners], chosen, proxy.name)
        point = {"n": n, "kl": math.log(n) - (n - 1) / n, "proxy": float(groups.max(-1).mean()), "gold": gold,
                 **pooled(stats, texts, winners), "judge": extra}
        point["distinct_2"] = float(np.mean([distinct_n(chosen[g * len(prompts):(g + 1) * len(prompts)], 2)
                                             for g in range(total // n)]))  # per set of P answers, as RL's
        point["entropy"] = None  # the best-of-n policy's per-token distribution has no closed form
        points.append(point)
        n *= 2
    return points


# ---------------------------------------------------------------------------------------------- training
def run(job: dict[str, Any]) -> dict[str, Any]:
    """One (case, agent, kl_coef, seed): train, evaluating every ``eval_every`` updates; returns its curve."""
    import gymnasium as gym
    import torch

    import textgym  # noqa: F401  (registers the environments)
    from agents import agent_class
    from agents.lm import LMConfig
    from textgym.models import load_causal_lm, load_tokenizer

    cfg, case = OverOptimizationConfig(**job["cfg"]), Case(**job["case"])
    setup = time.process_time()
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(job["seed"])
    klass = agent_class(job["agent"])
    tokenizer, reference = load_tokenizer(job["model"]), load_causal_lm(job["model"])
    agent = klass(load_causal_lm(job["model"]), tokenizer, LMConfig(
        learning_rate=cfg.learning_rate, batch_episodes=cfg.batch_episodes, seed=job["seed"]))
    proxy = make_reward(job["reward"])
    envs = gym.make_vec(env_id(case.task), num_envs=cfg.num_envs, group_size=klass.group_size,
                        vectorization_mode="vector_entry_point", model=reference, tokenizer=tokenizer,
                        kl_coef=job["kl_coef"], reward_fn=proxy, max_new_tokens=job["max_new_tokens"],
                        ref_scoring="episode")
    points, update_s, update_cpu, eval_s = [dict(job["first"], update=0, global_step=0)], [], [], []
    clock = [time.perf_counter(), time.process_time()]
    setup = clock[1] - setup

    def on_update(row: dict[str, float]) -> bool:
        update_s.append(time.perf_counter() - clock[0])
        update_cpu.append(time.process_time() - clock[1])
        if agent.updates % cfg.eval_every == 0 or agent.updates == cfg.updates:
            began = time.process_time()
            point, _ = evaluate(case, agent.model, reference, tokenizer, proxy, job["prompts"], cfg,
                                job["max_new_tokens"])
            points.append({**point, "update": agent.updates, "global_step": int(row["global_step"]),
                           "train_score": row["objective/score"], "train_kl": row["objective/kl"]})
            eval_s.append(time.process_time() - began)
        clock[:] = [time.perf_counter(), time.process_time()]
        return agent.updates >= cfg.updates

    agent.learn(envs, 1 << 62, on_update)  # on_update stops it after cfg.updates
    timing = {"setup_cpu_s": setup, "update_wall_s": update_s, "update_cpu_s": update_cpu, "eval_cpu_s": eval_s}
    return {"case": case.name, "agent": job["agent"], "kl_coef": job["kl_coef"], "seed": job["seed"],
            "points": points, "timing": timing}  # an update's time: its rollout and its optimisation


def case_jobs(case: Case, cfg: OverOptimizationConfig) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Prepare a case, measure its reference (the first point of every run) and best-of-n; the jobs of its runs."""
    import torch

    from textgym.models import load_causal_lm, load_tokenizer
    from textgym.tasks import get_task

    torch.set_num_threads(cfg.threads)
    began, cpu = time.perf_counter(), time.process_time()
    model, spec = prepare(case, cfg)
    task, tokenizer, reference = get_task(case.task), load_tokenizer(model), load_causal_lm(model)
    held_out = task.prompts("test")
    prompts = [held_out[i % len(held_out)] for i in range(cfg.eval_prompts)]
    limit = cfg.max_new_tokens or task.max_new_tokens
    proxy = make_reward(spec)
    prepared = time.process_time()
    first, per = evaluate(case, reference, reference, tokenizer, proxy, prompts, cfg, limit, per_answer=True)
    first_cpu = time.process_time() - prepared
    bon = best_of_n(case, reference, tokenizer, proxy, prompts, cfg, limit)
    info = {"task": case.task, "env_id": env_id(case.task), "model": model, "proxy": spec, "proxy_name": proxy.name,
            "gold": gold_name(case, proxy.name), "max_new_tokens": limit, "eval_prompts": len(prompts),
            "distinct_prompts": min(len(held_out), len(prompts)), "reference": first,
            "noise": noise(per, cfg.bootstrap), "best_of_n": bon,
            "seconds": {"prep_cpu_s": prepared - cpu, "first_eval_cpu_s": first_cpu,
                        "best_of_n_cpu_s": time.process_time() - prepared - first_cpu,
                        "wall_s": time.perf_counter() - began}}
    jobs = [{"cfg": asdict(cfg), "case": asdict(case), "agent": agent, "kl_coef": kl_coef, "seed": seed, "model": model,
             "reward": spec, "prompts": prompts, "max_new_tokens": limit, "first": first}
            for agent in cfg.agents for kl_coef in cfg.kl_coefs for seed in cfg.seeds]
    return info, jobs


# ---------------------------------------------------------------------------------------------- summary
def analyse(points: list[dict[str, Any]], sd: dict[str, float], cfg: OverOptimizationConfig) -> dict[str, Any]:
    """Gold peak, proxy-gold gap at the end and the indicators' early warnings of one curve (module docstring)."""
    golds = [p["gold"] for p in points]
    peak = int(np.argmax(golds))
    first, last = points[0], points[-1]
    gap = None  # undefined where the reference's answers all score the same
    if sd["proxy_sd"] > 0 and sd["gold_sd"] > 0:
        gap = (last["proxy"] - first["proxy"]) / sd["proxy_sd"] - (last["gold"] - first["gold"]) / sd["gold_sd"]
    warnings = {}
    for name in INDICATORS:
        if first.get(name) is None:
            continue
        base, moved = first[name], {}
        limits = {"noise": cfg.noise_sigmas * sd[name], "relative": cfg.relative_change * abs(base)}
        for rule, limit in limits.items():
            crossing = next((i for i, p in enumerate(points) if abs(p[name] - base) > limit), None)
            moved[rule] = {"threshold": limit, "first_point": crossing,
                           "crossed_before_peak": crossing is not None and crossing < peak,
                           "points_before_peak": None if crossing is None else peak - crossing}
        warnings[name] = {**moved, "change_at_peak": points[peak][name] - base, "change_at_end": last[name] - base}
    return {"gold_peak": {"point": peak, "kl": points[peak]["kl"], "sqrt_kl": math.sqrt(max(points[peak]["kl"], 0.0)),
                          "gold": golds[peak], "proxy": points[peak]["proxy"], "peak_inside": peak < len(points) - 1,
                          "gold_drop_after_peak": golds[peak] - last["gold"],
                          "fell_after_peak": golds[peak] - last["gold"] > 2 * sd["gold_se"]},
            "end": {"kl": last["kl"], "proxy": last["proxy"], "gold": last["gold"]},
            "proxy_gold_gap_end": gap, "indicators": warnings}


def mean_curve(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The seed mean of each evaluation point's numbers (and their seed standard deviation)."""
    curve = []
    for i, point in enumerate(runs[0]["points"]):
        entry: dict[str, Any] = {"update": point["update"]}
        for key in ("proxy", "gold", "kl", *INDICATORS):
            values = [r["points"][i][key] for r in runs]
            entry[key], entry[key + "_std"] = float(np.mean(values)), float(np.std(values))
        curve.append(entry)
    return curve


def summarize(cases: dict[str, dict], runs: list[dict[str, Any]], cfg: OverOptimizationConfig) -> list[dict[str, Any]]:
    """Per (case, agent, kl_coef): the seed-mean curve and its analysis; per case: best-of-n's analysis."""
    out = []
    for name, info in cases.items():
        out.append({"case": name, "agent": "best-of-n", "kl_coef": None, **analyse(info["best_of_n"], info["noise"],
                                                                                     cfg)})
        for agent in cfg.agents:
            for kl_coef in cfg.kl_coefs:
                group = [r for r in runs if (r["case"], r["agent"], r["kl_coef"]) == (name, agent, kl_coef)]
                per_seed = [analyse(r["points"], info["noise"], cfg) for r in group]
                entry = {"case": name, "agent": agent, "kl_coef": kl_coef, "seeds": len(group),
                         "curve": mean_curve(group), **analyse(mean_curve(group), info["noise"], cfg)}
                entry["seeds_crossed_before_peak"] = {
                    ind: {rule: sum(s["indicators"][ind][rule]["crossed_before_peak"] for s in per_seed)
                          for rule in ("noise", "relative")} for ind in entry["indicators"]}
                entry["gold_peak_kl_per_seed"] = [s["gold_peak"]["kl"] for s in per_seed]
                out.append(entry)
    return out


def estimate(cases: dict[str, dict], runs: list[dict[str, Any]], cfg: OverOptimizationConfig,
             full: OverOptimizationConfig) -> dict[str, Any]:
    """The full map's time on ``full.workers`` cores, from the CPU seconds measured per update and per evaluation.

    Per (case, agent): the median setup, update and evaluation of these runs, times the full map's runs,
    updates and evaluations; plus each case's preparation, first evaluation and best-of-n (scaled by
    ``full.best_of``), which run before the runs, in one process.
    """
    total_runs_s, fixed_s = 0.0, 0.0
    points = full.updates // full.eval_every + (full.updates % full.eval_every > 0)
    for name, info in cases.items():
        sec = info["seconds"]
        fixed_s += sec["prep_cpu_s"] + sec["first_eval_cpu_s"] + sec["best_of_n_cpu_s"] * full.best_of / cfg.best_of
        for agent in cfg.agents:
            mine = [r["timing"] for r in runs if (r["case"], r["agent"]) == (name, agent)]
            update = float(np.median([t for m in mine for t in m["update_cpu_s"][1:] or m["update_cpu_s"]]))
            each = float(np.median([t for m in mine for t in m["eval_cpu_s"]]))
            setup = float(np.median([m["setup_cpu_s"] for m in mine]))
            total_runs_s += len(full.kl_coefs) * len(full.seeds) * (setup + full.updates * update + points * each)
    return {"basis": "the map's sizes" if (cfg.batch_episodes, cfg.num_envs, cfg.eval_prompts, cfg.max_new_tokens) ==
            (full.batch_episodes, full.num_envs, full.eval_prompts, full.max_new_tokens) else
            "the quick form's smaller sizes: an underestimate (use --estimate)", "cpu_s_runs": total_runs_s,
            "cpu_s_cases": fixed_s,
            "wall_s_estimate": fixed_s + total_runs_s / max(1, full.workers), "workers": full.workers}


# ---------------------------------------------------------------------------------------------- output
def plot(cases: dict[str, dict], summary: list[dict[str, Any]], path: Path) -> None:
    """Gold (top row) and proxy (bottom row) against sqrt(KL), one column per case: seed means, best-of-n dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(cases), figsize=(5.5 * len(cases), 8), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for column, (name, info) in enumerate(cases.items()):
        entries = [s for s in summary if s["case"] == name and s["agent"] != "best-of-n"]
        agents = list(dict.fromkeys(s["agent"] for s in entries))
        kls = sorted({s["kl_coef"] for s in entries})
        for row, key in enumerate(("gold", "proxy")):
            ax = axes[row][column]
            bon = info["best_of_n"]
            ax.plot([math.sqrt(p["kl"]) for p in bon], [p[key] for p in bon], "k--x", label="best-of-n")
            for s in entries:
                style = ("-", "--", ":", "-.")[kls.index(s["kl_coef"]) % 4]
                ax.plot([math.sqrt(max(p["kl"], 0.0)) for p in s["curve"]], [p[key] for p in s["curve"]], style,
                        marker="o", markersize=3, color=colours[agents.index(s["agent"]) % len(colours)],
                        label=f"{s['agent']} kl_coef={s['kl_coef']:g}")
                if key == "gold":
                    ax.plot(s["gold_peak"]["sqrt_kl"], s["gold_peak"]["gold"], "*", markersize=11,
                            color=colours[agents.index(s["agent"]) % len(colours)])
            ax.set(xlabel="sqrt(KL to the reference), sqrt(nats)",
                   ylabel=f"gold: {info['gold']}" if key == "gold" else f"proxy: {info['proxy_name']}",
                   title=f"{name}: {'gold (stars: peaks)' if key == 'gold' else 'proxy'}")
            ax.grid(alpha=0.3)
        axes[0][column].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def report(summary: list[dict[str, Any]]) -> list[str]:
    """One line per curve: the end, the gold peak, the gap and the indicators that warned before the peak."""
    lines = [f"{'case':<21} {'agent':<9} {'kl_coef':>7} | {'proxy':>7} {'gold':>7} {'KL':>6} | {'peak KL':>7} "
             f"{'fell':>4} | {'gap':>6} | indicators past the noise threshold before the gold peak (points)"]
    for s in summary:
        warned = ", ".join(f"{k} ({v['noise']['points_before_peak']})" for k, v in s["indicators"].items()
                           if v["noise"]["crossed_before_peak"]) or "-"
        kl_coef = "" if s["kl_coef"] is None else f"{s['kl_coef']:g}"
        gap = "n/a" if s["proxy_gold_gap_end"] is None else f"{s['proxy_gold_gap_end']:.2f}"
        lines.append(f"{s['case']:<21} {s['agent']:<9} {kl_coef:>7} | {s['end']['proxy']:>7.3f} "
                     f"{s['end']['gold']:>7.3f} {s['end']['kl']:>6.2f} | {s['gold_peak']['kl']:>7.2f} "
                     f"{'yes' if s['gold_peak']['fell_after_peak'] else 'no':>4} | {gap:>6} | {warned}")
    return lines


def run_all(jobs: list[dict[str, Any]], workers: int) -> list[dict[str, Any]]:
    """Every run: in this process (one worker) or in a pool of fresh processes."""
    if workers <= 1:
        return [_announce(run(job), n, len(jobs)) for n, job in enumerate(jobs, 1)]
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        return [_announce(r, n, len(jobs)) for n, r in enumerate(pool.imap(run, jobs), 1)]


def _announce(result: dict[str, Any], number: int, total: int) -> dict[str, Any]:
    last = result["points"][-1]
    print(f"[{number}/{total}] {result['case']} {result['agent']} kl_coef={result['kl_coef']:g} seed {result['seed']}: "
          f"proxy {last['proxy']:+.3f}, gold {last['gold']:+.3f}, KL {last['kl']:.3f} "
          f"({sum(result['timing']['update_wall_s']):.0f} s of updates)", flush=True)
    return result


def run_map(full: OverOptimizationConfig, quick: bool = False, estimate_only: bool = False) -> dict[str, Any]:
    """Run the map (or its quick form, or with ``estimate_only`` the timing probe), write the JSON and the plot.

    ``quick``: one case, one seed, two kl values, two evaluation points (:func:`quick_config`).
    ``estimate_only``: 3 updates of each (case, agent) at the configured sizes, to estimate the full map's time.

    Raises:
        ValueError: A setting out of its bounds, an unknown case, or ``best_of`` not a power of 2.
    """
    validate(full)
    cfg = quick_config(full) if quick else replace(full, kl_coefs=full.kl_coefs[:1], seeds=full.seeds[:1], updates=3,
                                                   eval_every=3) if estimate_only else full
    known = known_cases(cfg)
    unknown = [c for c in cfg.cases if c not in known]
    if unknown:
        raise ValueError(f"unknown case {unknown}; cases: {', '.join(known)} (custom needs --reward)")
    if cfg.best_of & (cfg.best_of - 1):
        raise ValueError(f"--best-of must be a power of 2, got {cfg.best_of}")
    began, cpu = time.perf_counter(), time.process_time()
    import torch

    torch.set_num_threads(cfg.threads)
    cases, jobs = {}, []
    for name in expand(cfg.cases, known, cfg.rm_pairs):
        cases[name], more = case_jobs(known[name], cfg)
        jobs += more
    runs = run_all(jobs, cfg.workers)
    summary = summarize(cases, runs, cfg)
    timing: dict[str, Any] = {"wall_s": time.perf_counter() - began, "cpu_s_main_process": time.process_time() - cpu,
              "estimate_full_map": estimate(cases, runs, cfg, full)}
    stem = f"{cfg.name}_quick" if quick else f"{cfg.name}_estimate" if estimate_only else cfg.name
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"config": asdict(cfg), "quick": quick, "machine": {"cpu": cpu_name(), "cpu_flags": cpu_flags(),
              "threads": cfg.threads, "workers": cfg.workers, "torch": torch.__version__},
              "evaluation": "sampled at temperature 1, one completion per held-out prompt, seed eval_seed",
              "cases": cases, "runs": runs, "summary": summary, "timing": timing}
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2))
    plot(cases, summary, out / f"{stem}.png")
    print("\n".join(report(summary)))
    est = timing["estimate_full_map"]
    print(f"took {timing['wall_s']:.0f} s; the full map (defaults and flags given) would take about "
          f"{est['wall_s_estimate'] / 60:.1f} minutes on {est['workers']} cores ({est['cpu_s_runs']:.0f} CPU s of "
          f"runs, {est['cpu_s_cases']:.0f} of preparation, reference and best-of-n; from {est['basis']}); "
          f"wrote {out / stem}.json/.png")
    return result
