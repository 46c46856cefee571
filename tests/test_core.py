"""The package core: import cost, registration, atomic files, text spaces."""

from __future__ import annotations

import json
import subprocess
import sys

import gymnasium as gym
import pytest

import pope_env
from pope_env.errors import DataFormatError
from pope_env.io import JsonlAppender, atomic_write_jsonl, read_jsonl
from pope_env.spaces import UnicodeText


def test_import_does_not_import_torch():
    code = "import sys, pope_env; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_every_env_id_is_registered():
    for env_id in pope_env.env_ids():
        assert env_id in gym.registry


def test_env_catalogue_entry_points_resolve_and_bad_catalogues_are_refused(tmp_path):
    import importlib

    from pope_env.registration import ENV_SPECS, load_env_specs

    assert [s.id for s in ENV_SPECS] == pope_env.env_ids() and len(ENV_SPECS) == 17
    for spec in ENV_SPECS:
        module, name = spec.entry_point.split(":")
        assert callable(getattr(importlib.import_module(module), name)), spec.id
    good = {"id": "X-v0", "entry_point": "m:f", "kwargs": {}, "description": "x"}
    cases = {
        "[": "not valid JSON",
        "{}": "expected a JSON list",
        json.dumps([{**good, "kwargs": []}]): "entry 0 has a missing or mistyped kwargs",
        json.dumps([{k: v for k, v in good.items() if k != "entry_point"}]): "mistyped entry_point",
        json.dumps([good, good]): r"\['X-v0'\] appear more than once",
    }
    for text, message in cases.items():
        (tmp_path / "specs.json").write_text(text)
        with pytest.raises(DataFormatError, match=message):
            load_env_specs(tmp_path / "specs.json")


def test_unicode_text_space_accepts_latex_and_any_unicode():
    space = UnicodeText(max_length=100)
    assert space.contains(r"Find $\frac{\pi}{2}$ – ∑ ✓ 中文")
    assert not space.contains(b"bytes")
    assert not space.contains("x" * 101)
    assert space.contains(space.sample())


def test_jsonl_appender_survives_a_torn_last_line(tmp_path):
    path = tmp_path / "log.jsonl"
    with JsonlAppender(path) as out:
        out.append({"a": 1})
    with path.open("a") as f:
        f.write('{"a": 2, "tor')  # a crash mid-write
    with pytest.warns(UserWarning, match="torn"):
        with JsonlAppender(path) as out:
            out.append({"a": 3})
    assert [r["a"] for r in read_jsonl(path)] == [1, 3]


def test_malformed_jsonl_names_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"a": 1}\nnot json\n{"a": 3}\n')
    with pytest.raises(DataFormatError, match=r"bad.jsonl:2"):
        read_jsonl(path)
    with pytest.warns(UserWarning):
        assert [r["a"] for r in read_jsonl(path, strict=False)] == [1, 3]


def test_atomic_write_leaves_no_temp_files(tmp_path):
    path = tmp_path / "x.jsonl"
    atomic_write_jsonl(path, [{"k": "ü"}])
    assert json.loads(path.read_text()) == {"k": "ü"}
    assert [p.name for p in tmp_path.iterdir()] == ["x.jsonl"]
