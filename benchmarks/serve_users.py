"""Serving N users: N LoRA adapters on one shared base against N full models, on a Qwen2-0.5B-shaped model.

Personalization (``textgym personalize``) trains one set of LoRA adapters per user on one base; at
serving time one copy of the base holds every user's adapters (peft's ``load_adapter`` /
``set_adapter``). The alternative is a full model per user (the adapters merged into a copy of the
base). This measures both at the scale where it matters: the random Qwen2-0.5B-shaped bf16 model of
``benchmarks/scale.py`` (494M parameters), N users' adapters (r 16 on q/k/v/o, random weights so a
merge changes the model), each set-up in a fresh process that loads what serves every user and
answers one prompt per user. Reports the peak resident memory and the weights' size.

    python benchmarks/serve_users.py            # 4 users; about 2 minutes on 2 CPU cores
    python benchmarks/serve_users.py --users 8

Writes ``benchmarks/results/serve_users.json``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from scale import RANK, TARGETS, build


def make_adapters(base: Path, folder: Path, users: int) -> list[str]:
    """``users`` adapter folders on ``base``, each with its own random LoRA weights."""
    import torch

    from agents.lora import lora_policy
    from textgym.models import load_causal_lm, no_progress_bars

    model = lora_policy(load_causal_lm(base), r=RANK, alpha=2 * RANK, target_modules=TARGETS)
    out = []
    for user in range(users):
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if "lora_" in name:
                    parameter.normal_(0.0, 0.01, generator=torch.Generator().manual_seed(user))
        with no_progress_bars():
            model.save_pretrained(folder / f"user{user}")
        out.append(str(folder / f"user{user}"))
    return out


def main() -> None:
    """Build the model and the adapters, serve them both ways in fresh processes, write the JSON."""
    from textgym.app.files import in_fresh_process
    from textgym.app.personalize import serve_users

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default="benchmarks/results/serve_users.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        in_fresh_process(build, base)
        adapters = in_fresh_process(make_adapters, base, Path(tmp), args.users)
        runs = {kind: in_fresh_process(serve_users, kind, str(base), adapters, "w1 w2 w3 w4", 8, args.threads)
                for kind in ("adapters", "full_models")}
    result = {"model": "Qwen2-0.5B shape, random, bf16; LoRA r16 (q,k,v,o) per user", "users": args.users, **runs,
              "peak_rss_ratio_full_to_adapters": runs["full_models"]["peak_rss_mib"] / runs["adapters"]["peak_rss_mib"]}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2))
    print(f"{'serving':<34} {'weights MiB':>12} {'peak RSS MiB':>13}")
    for kind, run in runs.items():
        label = f"{args.users} adapters on one base" if kind == "adapters" else f"{args.users} full models"
        print(f"{label:<34} {run['weights_mib']:>12.0f} {run['peak_rss_mib']:>13.0f}")
    print(f"full models / adapters: {result['peak_rss_ratio_full_to_adapters']:.2f}x peak memory; wrote {args.output}")


if __name__ == "__main__":
    main()
