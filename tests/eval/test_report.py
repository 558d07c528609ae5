"""The report's numbers as printed."""

from __future__ import annotations

from textgym.eval.report import metrics_table


def test_a_kl_that_rounds_to_zero_prints_without_a_minus():
    """A never-negative metric a hair below zero (fp32 rounding) prints 0.000, not -0.000; real signs stay."""
    table = metrics_table({"sft": {"kl_to_reference": -1e-9, "distinct_2": 0.5},
                           "rl": {"kl_to_reference": 0.25, "distinct_2": -0.25}})
    assert table[2] == "| kl_to_reference | 0.000 | 0.250 |"
    assert table[3] == "| distinct_2 | 0.500 | -0.250 |"
