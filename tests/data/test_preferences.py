"""Rankings -> pairwise comparisons, and the JSONL formats' checks."""

from __future__ import annotations

import pytest

from textgym.data.loaders import write_jsonl
from textgym.data.preferences import (
    append_row,
    drop_last_row,
    load_preferences,
    ranking_to_pairs,
    rankings_to_pairs,
    read_pairs,
    read_rankings,
)


@pytest.mark.parametrize("k", [2, 3, 4, 6])
def test_ranking_gives_all_pairs_preferred_first(k):
    """A full ranking of k completions gives all k(k-1)/2 pairs, the better one chosen."""
    completions = [f"c{i}" for i in range(k)]
    ranking = list(range(k, 0, -1))  # the last completion is best
    pairs = ranking_to_pairs("p", completions, ranking)
    assert len(pairs) == k * (k - 1) // 2
    for pair in pairs:
        assert int(pair["chosen"][1:]) > int(pair["rejected"][1:])


def test_ties_give_no_pair():
    """Tied completions make no pair with each other, only with the others."""
    pairs = ranking_to_pairs("p", ["a", "b", "c", "d"], [1, 2, 2, 4])
    assert {(p["chosen"], p["rejected"]) for p in pairs} == {("a", "b"), ("a", "c"), ("a", "d"), ("b", "d"), ("c", "d")}


@pytest.mark.parametrize(("ranking", "message"), [([1, 2], "one rank for each of the 3"), ([1, 2, 4], "from 1"),
                                                  ([0, 1, 2], "from 1"), ([2, 2, 3], "no rank 1"),
                                                  ([1, 2.0, 3], "integer ranks"), ("123", "one rank")])
def test_invalid_rankings_name_file_and_line(tmp_path, ranking, message):
    """An invalid ranking is refused with its file, line and what is wrong."""
    path = write_jsonl(tmp_path / "r.jsonl", [{"prompt": "p", "completions": ["a", "b", "c"], "ranking": [1, 2, 3]},
                                              {"prompt": "p", "completions": ["a", "b", "c"], "ranking": ranking}])
    with pytest.raises(ValueError, match=rf"r.jsonl:2: ranking .*{message}"):
        read_rankings(path)


def test_empty_completion_and_bad_pairs(tmp_path):
    """An empty completion or a pair without a string ``chosen`` is refused with its file and line."""
    path = write_jsonl(tmp_path / "r.jsonl", [{"prompt": "p", "completions": ["a", " "], "ranking": [1, 2]}])
    with pytest.raises(ValueError, match="r.jsonl:1: completion 2 is empty"):
        read_rankings(path)
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "p", "chosen": "a", "rejected": "b"}, {"prompt": "p"}])
    with pytest.raises(ValueError, match="p.jsonl:2: 'chosen' must be a string"):
        read_pairs(path)


def test_load_preferences_detects_the_format(tmp_path):
    """``load_preferences`` reads rankings (skipped rows give none) or pairs (extra columns dropped)."""
    rankings = write_jsonl(tmp_path / "r.jsonl", [
        {"prompt": "p", "completions": ["a", "b", "c"], "ranking": [3, 1, 2]},
        {"prompt": "q", "completions": ["x", "y"], "ranking": None, "skipped": True}])
    assert len(load_preferences(rankings)) == 3
    pairs = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "p", "chosen": "a", "rejected": "b", "extra": 1}])
    assert load_preferences(pairs).column_names == ["prompt", "chosen", "rejected"]
    assert len(rankings_to_pairs([])) == 0


def test_append_and_drop_last_row(tmp_path):
    """Rows append, and dropping the last row returns it and leaves the others (None on a missing file)."""
    path = tmp_path / "x.jsonl"
    assert drop_last_row(path) is None
    append_row(path, {"a": 1})
    append_row(path, {"a": 2})
    assert drop_last_row(path) == {"a": 2}
    assert path.read_text() == '{"a": 1}\n'


def test_corrections_become_pairs_and_bad_ones_are_refused(tmp_path):
    """Each correction is one more pair, the edit over the completion it edits; a bad index names the row."""
    row = {"prompt": "p", "completions": ["a x", "b"], "ranking": [2, 1],
           "corrections": [{"index": 0, "completion": "a"}]}
    pairs = rankings_to_pairs(read_rankings(write_jsonl(tmp_path / "r.jsonl", [row])))
    assert {(p["chosen"], p["rejected"]) for p in pairs} == {("b", "a x"), ("a", "a x")}
    for bad, message in (({"index": 2, "completion": "a"}, "correction .* must name the index \\(0 to 1\\)"),
                         ({"index": 0, "completion": " "}, "the correction of completion 1 is empty")):
        path = write_jsonl(tmp_path / "bad.jsonl", [{**row, "corrections": [bad]}])
        with pytest.raises(ValueError, match=f"bad.jsonl:1: {message}"):
            read_rankings(path)
