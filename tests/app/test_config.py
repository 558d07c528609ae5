"""The commands' configs: shared sections nested once (``--rl.kl-coef``), on the command line, in files, when saved."""

from __future__ import annotations

import dataclasses
import json

import pytest

from textgym.app.cli import main
from textgym.app.config import (
    LoopConfig,
    PersonalizeConfig,
    RLConfig,
    changed_settings,
    load_config_file,
    validate,
)


@pytest.fixture
def loop_config(monkeypatch):
    """The config ``textgym loop`` would run, captured instead of running it."""
    import textgym.app.loop as loop

    seen = []
    monkeypatch.setattr(loop, "run_loop", seen.append)
    return seen


def test_a_sections_flags_are_dotted(loop_config):
    """``--rl.kl-coef`` and ``--sft.examples`` set the nested settings; the section's others keep the command's."""
    assert main(["loop", "--rl.kl-coef", "0.2", "--sft.examples", "5", "--k", "3"]) == 0
    cfg = loop_config[0]
    assert (cfg.rl.kl_coef, cfg.rl.total_steps, cfg.sft.examples, cfg.sft.epochs, cfg.k) == (0.2, 12_000, 5, 6, 3)


def test_a_flag_of_an_earlier_textgym_names_its_new_place(capsys):
    """``textgym loop --kl-coef`` is refused with the flag it became."""
    with pytest.raises(SystemExit) as exit_info:
        main(["loop", "--kl-coef", "0.2", "--steps-per-round", "9"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--kl-coef is now --rl.kl-coef" in err and "--steps-per-round is now --rl.total-steps" in err


@pytest.mark.parametrize(("name", "text"), [
    ("cfg.toml", "k = 3\n[rl]\nkl_coef = 0.2\n"),
    ("cfg.json", '{"k": 3, "rl": {"kl_coef": 0.2}}'),
    ("dotted.json", '{"k": 3, "rl.kl_coef": 0.2}'),
])
def test_config_files_hold_sections_as_tables(tmp_path, monkeypatch, name, text):
    """A TOML table, a JSON object or a dotted JSON key sets a section; flags override the file."""
    import textgym.app.personalize as personalize

    seen = []
    monkeypatch.setattr(personalize, "run_personalization", seen.append)
    (tmp_path / name).write_text(text)
    assert main(["personalize", "--config", str(tmp_path / name), "--rl.total-steps", "64"]) == 0
    rl = seen[0].rl
    assert seen[0].k == 3 and (rl.kl_coef, rl.total_steps, rl.learning_rate) == (0.2, 64, 3e-4)  # personalize's rate


@pytest.mark.parametrize(("text", "message"), [
    ('{"kl_coef": 0.1}', r"unknown key 'kl_coef' \(now 'rl.kl_coef'\)"),
    ('{"rl": {"kl_coeff": 0.1}}', r"unknown key 'rl.kl_coeff' \(did you mean 'rl.kl_coef'\?\)"),
    ('{"rl": 0.1}', r"rl is a table of settings \(\[rl\] in TOML"),
])
def test_config_file_keys_are_checked_in_sections_too(tmp_path, text, message):
    """An unknown or moved key in a section, or a section that is not a table, is named."""
    (tmp_path / "cfg.json").write_text(text)
    with pytest.raises(ValueError, match=message):
        load_config_file(tmp_path / "cfg.json", LoopConfig)


def test_the_validator_checks_sections_and_names_the_setting():
    """Bounds of a section's fields are checked like the others', and the error names the dotted setting."""
    with pytest.raises(ValueError, match="rl.kl_coef must be >= 0, got -1"):
        validate(LoopConfig(rl=RLConfig(kl_coef=-1)))
    with pytest.raises(ValueError, match="k must be >= 2, got 1"):
        validate(PersonalizeConfig(k=1))
    with pytest.raises(ValueError, match="rl must be a section of RLConfig settings"):
        validate(LoopConfig(rl={"kl_coef": 0.1}))


def test_a_saved_config_compares_by_dotted_name_and_reads_old_names_at_their_new_place():
    """A folder saved before the sections resumes: its flat ``kl_coef`` is read as ``rl.kl_coef``."""
    cfg = LoopConfig(rl=RLConfig(total_steps=192, kl_coef=0.2))
    old = {**json.loads(json.dumps(dataclasses.asdict(cfg))), "steps_per_round": 192, "kl_coef": 0.2}
    del old["rl"]
    assert changed_settings(old, cfg, ()) == []
    saved = json.loads(json.dumps(dataclasses.asdict(cfg)))
    assert changed_settings(saved, dataclasses.replace(cfg, rl=RLConfig(total_steps=999, kl_coef=0.2)), ()) == [
        "rl.total_steps: saved 192, now 999"]
