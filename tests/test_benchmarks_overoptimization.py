"""benchmarks/overoptimization.py (``textgym bench overoptimization``) runs end to end in its quick form."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def numbers(value, path="result"):
    """Every number inside ``value`` with where it is (booleans and None are not numbers)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from numbers(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from numbers(item, f"{path}[{i}]")
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield path, value


@pytest.mark.slow
def test_the_quick_map_is_complete_and_finite(tmp_path):
    """``--quick``: one case, one seed, kl_coef 0 and 0.1, two evaluation points; best-of-n's KL is the closed form."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "benchmarks/overoptimization.py", "--quick", "--out", str(tmp_path),
                          "--prep", str(tmp_path / "prep")], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    check_quick_map(tmp_path, run.stdout)


@pytest.mark.slow
def test_textgym_bench_draws_the_quick_map(tmp_path, capsys):
    """``textgym bench overoptimization --quick`` writes the same quick map (the script is a wrapper of it)."""
    from textgym.app.cli import main

    assert main(["bench", "overoptimization", "--quick", "--out", str(tmp_path), "--prep", str(tmp_path / "prep")]) == 0
    check_quick_map(tmp_path, capsys.readouterr().out)


def test_the_maps_settings_are_checked_before_anything_runs(tmp_path):
    """Bounds (each value of a list too), an empty list, an unknown case and best_of not a power of 2 are refused."""
    from textgym.app.cli import main
    from textgym.app.config import OverOptimizationConfig, validate
    from textgym.app.overoptimization import run_map

    validate(OverOptimizationConfig())
    for settings, message in [({"kl_coefs": [0.0, -0.1]}, "kl_coefs must be >= 0, got -0.1"),
                              ({"rm_pairs": [0]}, "rm_pairs must be >= 1"), ({"updates": 0}, "updates must be >= 1"),
                              ({"seeds": []}, "seeds must be a list of at least one value"),
                              ({"seeds": [0.5]}, "each of seeds must be a whole number"),
                              ({"workers": 0}, "workers must be >= 1"), ({"cases": ["poetry"]}, "unknown case"),
                              ({"best_of": 3}, "best-of must be a power of 2, got 3")]:
        with pytest.raises(ValueError, match=message):
            run_map(OverOptimizationConfig(out=str(tmp_path / "out"), **settings))
    assert main(["bench", "overoptimization", "--kl-coefs", "0", "-1", "--out", str(tmp_path / "out")]) == 2
    with pytest.raises(SystemExit):  # a value argparse cannot read: the map's own usage
        main(["bench", "overoptimization", "--kl-coefs", "x"])
    assert not (tmp_path / "out").exists()


def check_quick_map(tmp_path, stdout):
    """The quick map's JSON, plot and printed report are complete and finite."""
    result = json.loads((tmp_path / "overoptimization_quick.json").read_text())
    assert (tmp_path / "overoptimization_quick.png").stat().st_size > 0
    cfg = result["config"]
    assert result["quick"] and cfg["kl_coefs"] == [0.0, 0.1] and len(cfg["seeds"]) == 1 and len(cfg["cases"]) == 1
    assert set(result["machine"]["cpu_flags"]) >= {"avx2", "avx512_bf16"} and result["machine"]["cpu"]
    bad = [(where, value) for where, value in numbers(result) if not math.isfinite(value)]
    assert not bad, bad[:5]

    (case,) = result["cases"].values()
    assert case["reference"]["kl"] == pytest.approx(0.0, abs=1e-9)
    best = case["best_of_n"]
    assert [p["n"] for p in best] == [1, 2, 4]
    for point in best:
        assert point["kl"] == pytest.approx(math.log(point["n"]) - (point["n"] - 1) / point["n"])
    assert best[-1]["proxy"] >= best[0]["proxy"]  # the best of more samples scores at least as high

    assert len(result["runs"]) == len(cfg["agents"]) * 2
    for run_ in result["runs"]:
        assert [p["update"] for p in run_["points"]] == [0, 2]
        assert run_["points"][-1]["kl"] >= 0 and run_["points"][-1]["length"] > 0
        assert len(run_["timing"]["update_cpu_s"]) == 2
    summary = result["summary"]
    assert {(s["agent"], s["kl_coef"]) for s in summary} == {("best-of-n", None)} | {
        (agent, kl) for agent in cfg["agents"] for kl in cfg["kl_coefs"]}
    for entry in summary:
        assert {"gold_peak", "end", "proxy_gold_gap_end", "indicators"} <= set(entry)
        assert entry["gold_peak"]["kl"] >= 0
        for name, moved in entry["indicators"].items():
            assert name in ("length", "distinct_2", "entropy", "ref_perplexity")
            assert {"noise", "relative"} <= set(moved)
    assert result["timing"]["estimate_full_map"]["wall_s_estimate"] > 0
    assert "best-of-n" in stdout and "the full map" in stdout


def test_several_amounts_of_preference_data_are_a_case_each():
    """``--rm-pairs 300 1000``: the learned reward model's case runs once per amount; other cases once."""
    from textgym.app import overoptimization as o
    from textgym.app.config import OverOptimizationConfig

    one = OverOptimizationConfig(cases=["sentiment-classifier", "helpfulness-rm"])
    assert o.expand(one.cases, o.known_cases(one), one.rm_pairs) == one.cases
    assert o.known_cases(one)["helpfulness-rm"].rm_pairs == 3000
    several = OverOptimizationConfig(cases=["sentiment-classifier", "helpfulness-rm"], rm_pairs=[300, 1000])
    known = o.known_cases(several)
    names = o.expand(several.cases, known, several.rm_pairs)
    assert names == ["sentiment-classifier", "helpfulness-rm-300", "helpfulness-rm-1000"]
    assert [known[n].rm_pairs for n in names[1:]] == [300, 1000] and known[names[1]].gold == "utility"


def test_a_flag_is_never_read_as_the_start_of_another(tmp_path, capsys):
    """``--kl-coef`` is not short for the map's ``--kl-coefs``: it is refused, and nothing runs."""
    from textgym.app.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["bench", "overoptimization", "--kl-coef", "1", "--out", str(tmp_path / "out")])
    assert stop.value.code == 2 and "unrecognized arguments: --kl-coef" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_name_names_the_result_files(tmp_path):
    """``--name mymap`` writes mymap_quick.json and .png (so a second map can sit beside the default one)."""
    from textgym.app.cli import main

    assert main(["bench", "overoptimization", "--quick", "--name", "mymap", "--out", str(tmp_path),
                 "--prep", str(tmp_path / "prep")]) == 0
    assert sorted(p.name for p in tmp_path.glob("*_quick.*")) == ["mymap_quick.json", "mymap_quick.png"]
