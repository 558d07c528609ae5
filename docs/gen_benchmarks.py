"""The benchmarks page, generated from ``benchmarks/results/*.json``; also an MkDocs hook that serves it.

Every result file gets a section: the command that writes it, the machine it records (CPU, its flags,
torch, threads; "not recorded" where the file predates that), its settings, and a table for each list
or mapping of rows in it. A new result file shows up with no change here (a line in :data:`ABOUT`
gives it a command and a sentence). The page is never written to the tree: ``mkdocs build`` calls
:func:`on_files`, which adds it, the figures beside the results (``benchmarks/results/*.png``) and the
examples' figures (``examples/images/*.png``, served as ``images/``) to the site, with the
repository's ``CHANGELOG.md`` as ``changelog.md``.

Run as a script, it prints the page (``python docs/gen_benchmarks.py > /tmp/benchmarks.md``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
IMAGES = ROOT / "examples" / "images"

#: What writes each result file, and what it measures; a file not named here still gets its section.
ABOUT: dict[str, tuple[str, str]] = {
    "rollout": ("python benchmarks/rollout.py", "Generated tokens/s: the env driven by `LMSampler` (step and "
                "episode reference scoring) against `model.generate` plus a reference pass, and a naive loop."),
    "train": ("python benchmarks/train.py", "RLHF training end to end, completions/s: textgym PPO, RLOO and GRPO "
              "against TRL's GRPO and RLOO at the same work (needs the `bench` extra)."),
    "rewards": ("textgym bench --out benchmarks/results", "PPO, RLOO, GRPO and reference sampling on five reward "
                "cases x 3 seeds at equal budgets, through the `textgym train` harness."),
    "toy": ("python benchmarks/toy.py", "Tic-tac-toe games/s against PettingZoo, and learning to the bar against "
            "sb3-contrib's MaskablePPO."),
    "text_tictactoe": ("python benchmarks/text_tictactoe.py", "Tic-tac-toe two ways: MLP PPO on the board as "
                       "numbers, LM PPO writing its moves (see the tic-tac-toe study in the experiment notes)."),
    "scale": ("python benchmarks/scale.py", "One update on a Qwen2-0.5B-shaped model (random weights, bf16, LoRA), "
              "textgym against TRL GRPO."),
    "serve_users": ("python benchmarks/serve_users.py", "Serving 4 users: adapters on one base against merged "
                    "full models."),
    "lora_memory": ("python benchmarks/lora_memory.py", "Peak memory of a PPO step: LoRA with the adapters-off "
                    "reference against a policy plus a separate full reference."),
    "trl_rollout": ("python benchmarks/trl_rollout.py", "TRL's GRPOTrainer on a textgym env through "
                    "`textgym.integrations.trl.TextgymRollout`, against TRL's own generation."),
    "rm_contrast": ("python benchmarks/rm_contrast.py", "Reward models from the seed pairs plus N contrast pairs "
                    "(another question's tips), audited; dropout off."),
    "rm_contrast_dropout": ("python benchmarks/rm_contrast.py", "The same grid with the kit LM's dropout of 0.1."),
    "sft": ("python benchmarks/sft.py", "Supervised fine-tuning on the demo's data: transformers' `Trainer` "
            "(`textgym.models.sft`) against the kit builder's hand-written loop, time per epoch and held-out loss."),
    "overoptimization": ("python benchmarks/overoptimization.py", "The reward over-optimisation map: proxy and gold "
                         "against the exact KL along training, per reward case, algorithm and kl_coef, best-of-n as "
                         "the baseline (see the guide and the experiment note)."),
    "overoptimization_rm": ("python benchmarks/overoptimization.py --cases helpfulness-rm --rm-pairs 300 1000 3000 "
                            "--name overoptimization_rm", "The map of the learned helpfulness reward model trained on "
                            "300, 1,000 and 3,000 preference pairs."),
    "tip_places": ("python benchmarks/tip_places.py POLICY...", "Tips per answer and the off-topic share at each "
                   "place in the answer, for saved policies of the loop study."),
}

MACHINE_KEYS = ("device", "cpu", "cpu_flags", "cpu_native_bf16", "threads", "torch", "transformers", "trl",
                "matmul_peak_gflops_per_s")
SETTINGS_KEYS = ("config", "args", "settings", "machine")
MAX_LIST = 8  # longer lists (learning curves, per-step timings) stay in the JSON file


def cell(value: Any) -> str:
    r"""One table cell: floats to 4 significant digits, short lists joined, pipes escaped.

    >>> cell(0.123456), cell(1234.5678), cell([1, 2]), cell(True), cell("a|b")
    ('0.1235', '1235', '1, 2', 'yes', 'a\\|b')
    """
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, list):
        return ", ".join(cell(v) for v in value)
    return str(value).replace("|", "\\|")


def flatten(row: Any, prefix: str = "") -> dict[str, Any]:
    """A nested mapping as one level, keys joined by dots; long lists and lists of mappings left out.

    >>> flatten({"a": 1, "b": {"c": 2.0, "d": [1, 2]}, "curve": list(range(20))})
    {'a': 1, 'b.c': 2.0, 'b.d': [1, 2]}
    """
    if not isinstance(row, dict):
        return {prefix or "value": row}
    out: dict[str, Any] = {}
    for key, value in row.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            out.update(flatten(value, name))
        elif isinstance(value, list):
            if len(value) <= MAX_LIST and not any(isinstance(v, (dict, list)) for v in value):
                out[name] = value
        else:
            out[name] = value
    return out


def table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of rows; the columns are every key, in first-seen order."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def machine(data: dict[str, Any]) -> str:
    """The machine a result records (from the top level or its config), or a line saying it has none."""
    found: dict[str, Any] = {}
    for scope in (data, *(data[k] for k in SETTINGS_KEYS if isinstance(data.get(k), dict))):
        found.update({k: scope[k] for k in MACHINE_KEYS if k in scope and k not in found})
    if isinstance(found.get("cpu_flags"), dict):
        found["cpu_flags"] = " ".join(flag for flag, present in found["cpu_flags"].items() if present) or "none"
    parts = [f"{key} {cell(value)}" for key, value in found.items()]
    if "cpu" not in found:
        parts.append("CPU not recorded in this file")
    return "**Recorded machine:** " + "; ".join(parts) + "."


def tables(data: dict[str, Any]) -> list[str]:
    """A table (or a list) for each list or mapping of rows in a result file; one for its plain values."""
    out, plain = [], {}
    for key, value in data.items():
        if key in SETTINGS_KEYS or key in MACHINE_KEYS:
            continue
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            out.append(f"**{key}**\n\n" + table([flatten(v) for v in value]))
        elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            out.append(f"**{key}**\n\n" + "\n".join(f"- {v}" for v in value))
        elif isinstance(value, dict) and value and all(isinstance(v, list) for v in value.values()):
            rows = [{"": name, "#": i, **flatten(r)} for name, v in value.items() for i, r in enumerate(v)]
            out.append(f"**{key}**\n\n" + table(rows))
        elif isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            out.append(f"**{key}**\n\n" + table([{"": name, **flatten(v)} for name, v in value.items()]))
        else:
            plain.update(flatten(value, key))
    if plain:
        out.append(table([plain]))
    return out


def by_kind(data: dict[str, Any]) -> tuple[str, list[dict[str, Any]]] | None:
    """``(key, entries)`` of a file that keeps one entry per kind of machine (``{"by_cpu_kind": [...]}``)."""
    if len(data) != 1:
        return None
    (key, value), = data.items()
    if key.startswith("by_") and isinstance(value, list) and all(isinstance(v, dict) for v in value):
        return key.removeprefix("by_"), value
    return None


def body(data: dict[str, Any]) -> list[str]:
    """A result's machine line, settings and tables."""
    parts = [machine(data)]
    settings = {k: flatten(data[k]) for k in SETTINGS_KEYS if isinstance(data.get(k), dict) and k != "machine"}
    for name, values in settings.items():
        parts.append(f"Settings (`{name}`): " + "; ".join(f"{k} {cell(v)}" for k, v in values.items()) + ".")
    return parts + tables(data)


def section(path: Path) -> str:
    """The page's section for one result file; a file with an entry per kind of machine gets one for each."""
    data = json.loads(path.read_text())
    command, about = ABOUT.get(path.stem, ("", ""))
    written = f", written by `{command}`." if command else "."
    parts = [f"## {path.stem}", f"`benchmarks/results/{path.name}`{written}"]
    if about:
        parts.append(about)
    kinds = by_kind(data)
    if kinds is None:
        parts += body(data)
    else:
        key, entries = kinds
        for entry in entries:
            parts += [f"### {path.stem}: {entry.get(key, '?')}", *body({k: v for k, v in entry.items() if k != key})]
    if (path.with_suffix(".png")).exists():
        parts.append(f"![{path.stem}](results/{path.stem}.png)")
    return "\n\n".join(parts)


def render(results: Path = RESULTS) -> str:
    """The whole benchmarks page."""
    head = ("# Benchmarks\n\nGenerated from `benchmarks/results/*.json` by `docs/gen_benchmarks.py` each time the site "
            "is built; edit the results, not this page. Numbers are as each file recorded them: a file records "
            "the machine it ran on only where its script does, and rows measured on different machines are not "
            "comparable. The guides and the [experiment notes](experiments/index.md) discuss what they show.")
    return "\n\n".join([head, *(section(p) for p in sorted(results.glob("*.json")))]) + "\n"


def on_files(files: Any, config: Any) -> Any:
    """MkDocs hook: add the generated page, the changelog and the figures to the site's files."""
    from mkdocs.structure.files import File

    files.append(File.generated(config, "benchmarks.md", content=render()))
    files.append(File.generated(config, "changelog.md", content=(ROOT / "CHANGELOG.md").read_text()))
    for png in sorted(RESULTS.glob("*.png")):
        files.append(File.generated(config, f"results/{png.name}", abs_src_path=str(png)))
    for png in sorted(IMAGES.glob("*.png")):
        files.append(File.generated(config, f"images/{png.name}", abs_src_path=str(png)))
    return files


if __name__ == "__main__":
    print(render(), end="")
