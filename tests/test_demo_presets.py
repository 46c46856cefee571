"""The demo's presets file (agents/demo_presets.toml): what it holds, how presets inherit
from [default], and the errors a bad presets file gets."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from pope_env.agents.demo import PRESETS, PRESETS_FILE, DemoConfig, get_preset, load_presets
from pope_env.errors import ConfigError, DataFormatError

SMALL_DEFAULT = """
[default]
seeds = [0, 1]
methods = ["grpo", "pope"]
revisit_methods = []
workers = 1
hard_levels = [6, 6]
n_candidates = 10
n_eval_candidates = 10
screen_k = 8
screen_chunk = 4
istar_samples = 4
max_hard = 10
max_eval = 10
eval_k = 4
easy_per_level = 4
easy_k = 2
min_easy_pass1 = 0.9
min_hard = 2
steps = 3
prompts_per_step = 4
group_size = 2
lr = 1e-4
epochs = 1
sft_steps = 1
sft_lr = 1e-3
n_easy = 8
eval_every = 1
max_new_tokens = 64
reach_problems = 0
reach_k = 2
reach_states = 1

[default.pretrain]
levels = [1, 4]
steps = 50
max_value = 9

[default.pretrain.model]
d_model = 32
n_layers = 2
n_heads = 2
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "presets.toml"
    path.write_text(text)
    return path


def test_the_shipped_file_holds_the_three_presets():
    assert set(PRESETS) == {"quick", "default", "full"}
    assert load_presets(PRESETS_FILE) == PRESETS
    for name, cfg in PRESETS.items():
        assert cfg.preset == name and get_preset(name) is cfg


def test_a_preset_changes_only_what_it_lists_and_inherits_the_rest_of_default():
    default, quick, full = (get_preset(n) for n in ("default", "quick", "full"))
    assert quick.pretrain.steps == 200 and default.pretrain.steps == 2000
    # [quick.pretrain] lists only steps: the other pretraining settings, the model table
    # included, merge in from [default.pretrain] key by key.
    assert quick.pretrain.model == default.pretrain.model and quick.pretrain.lr == default.pretrain.lr
    assert quick.lr == default.lr and quick.steps == 4
    changed = {f.name for f in fields(DemoConfig) if getattr(full, f.name) != getattr(default, f.name)}
    assert changed == {"preset", "seeds", "methods", "revisit_methods"}


def test_settings_left_out_of_the_pretrain_table_take_pretrain_config_defaults(tmp_path):
    cfg = load_presets(_write(tmp_path, SMALL_DEFAULT))["default"]
    assert cfg.pretrain.steps == 50 and cfg.pretrain.batch_size == 64  # PretrainConfig's default
    assert cfg.pretrain.model.max_len == 256 and cfg.lr == 1e-4 and cfg.seeds == (0, 1)


def test_a_users_own_presets_file_adds_presets(tmp_path):
    path = _write(tmp_path, SMALL_DEFAULT + '\n[longer]\nsteps = 30\n[longer.pretrain.model]\nd_model = 64\n')
    presets = load_presets(path)
    assert presets["longer"].steps == 30 and presets["longer"].pretrain.model.d_model == 64
    assert presets["longer"].pretrain.model.n_layers == 2 and presets["longer"].pretrain.steps == 50


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[default\n", "not valid TOML"),
        ("[quick]\nsteps = 4\n", r"no \[default\] table"),
        (SMALL_DEFAULT + "\n[quick]\nstep = 4\n", r"preset \[quick\]: unknown setting\(s\) step; DemoConfig has"),
        (SMALL_DEFAULT + "\n[quick]\npreset = 'x'\n", r"preset \[quick\]: unknown setting\(s\) preset"),
        (SMALL_DEFAULT + "\n[quick.pretrain.model]\nwidth = 4\n", r"\[quick\].pretrain.model: unknown setting\(s\) width"),
        (SMALL_DEFAULT.replace("n_easy = 8\n", ""), r"\[default\] leaves out n_easy"),
        ("[quick]\nsteps = 4\n" + SMALL_DEFAULT.replace("n_easy = 8\n", ""), r"\[default\] leaves out n_easy"),
        (SMALL_DEFAULT + "\n[quick]\nsteps = '60'\n", r"\[quick\]: steps = '60' is not a int"),
        (SMALL_DEFAULT + "\n[quick]\nsteps = true\n", r"steps = True is not a int"),
        (SMALL_DEFAULT + "\n[quick]\nseeds = 3\n", r"seeds = 3 is not a tuple\[int, ...\]"),
        (SMALL_DEFAULT + "\n[quick]\npretrain = 3\n", r"pretrain = 3 is not a PretrainConfig"),
        ("quick = 3\n" + SMALL_DEFAULT, r"preset \[quick\] is not a table"),
    ],
)
def test_a_bad_presets_file_is_refused_naming_the_preset_and_the_setting(tmp_path, text, match):
    with pytest.raises(DataFormatError, match=match):
        load_presets(_write(tmp_path, text))


def test_out_of_range_values_get_the_configs_own_checks_naming_the_preset(tmp_path):
    with pytest.raises(DataFormatError, match=r"preset \[short\]: hard_levels \(3, 4\) must be longer") as bad:
        load_presets(_write(tmp_path, SMALL_DEFAULT + "\n[short]\nhard_levels = [3, 4]\n"))
    assert isinstance(bad.value.__cause__, ConfigError)
    with pytest.raises(DataFormatError, match=r"preset \[odd\]: .*unknown method 'nonsense'"):
        load_presets(_write(tmp_path, SMALL_DEFAULT + "\n[odd]\nmethods = ['nonsense']\n"))


def _demo_args(*argv: str):
    import argparse

    from pope_env.cli import cmd_demo, mount_command

    parser = argparse.ArgumentParser()
    mount_command(parser.add_subparsers(), cmd_demo)
    return parser.parse_args(["demo", *argv])


def test_the_cli_runs_a_preset_of_a_users_presets_file(tmp_path):
    from pope_env.cli.cmd_demo import config_from_args

    path = _write(tmp_path, SMALL_DEFAULT + "\n[longer]\nsteps = 30\n")
    cfg, out = config_from_args(_demo_args("--presets", str(path), "--preset", "longer", "--seeds", "1"))
    assert cfg.preset == "longer" and cfg.steps == 30 and cfg.seeds == (0,) and out == Path("runs/demo-longer")
    cfg, out = config_from_args(_demo_args("--presets", str(path)))  # its [default]
    assert cfg.preset == "default" and cfg.steps == 3 and out == Path("runs/demo")
    cfg, _ = config_from_args(_demo_args("--preset", "quick"))  # the shipped file's, as --quick
    assert cfg == config_from_args(_demo_args("--quick"))[0]


def test_the_cli_refuses_a_missing_or_bad_presets_file_and_an_unknown_preset(tmp_path, capsys):
    from pope_env.cli import main

    assert main(["demo", "--presets", str(tmp_path / "missing.toml")]) == 2
    assert "missing.toml does not exist" in capsys.readouterr().err
    bad = _write(tmp_path, SMALL_DEFAULT + "\n[quick]\nstep = 4\n")
    assert main(["demo", "--presets", str(bad), "--preset", "quick"]) == 2
    assert "unknown setting(s) step" in capsys.readouterr().err
    assert main(["demo", "--preset", "huge"]) == 2
    err = capsys.readouterr().err
    assert "unknown demo preset 'huge'" in err and "default, full, quick" in err
