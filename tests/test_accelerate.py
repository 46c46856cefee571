"""A real 2-process ``accelerate launch`` on CPU gives the same GRPO loss, gradient norm and
updated parameters as one process on the same batch, and the Trainer runs under it.

accelerate's ``--cpu`` flag starts several processes only through MPI; without MPI the
multi-process CPU path is the torchrun launcher (``--multi_gpu``) with the gloo backend,
which is what a machine without GPUs gets (the script builds ``Accelerator(cpu=True)``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
SCRIPT = HERE / "accelerate_script.py"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _lines(proc: subprocess.CompletedProcess) -> dict[str, dict]:
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            rec = json.loads(line)
            out[rec["check"]] = rec
    return out


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_two_process_accelerate_run_matches_one_process(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    one = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "one")],
                         capture_output=True, text=True, timeout=180, env=env)
    two = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
         "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
         "--main_process_port", str(_free_port()), str(SCRIPT), str(tmp_path / "two")],
        capture_output=True, text=True, timeout=300, env=env,
    )
    a, b = _lines(one), _lines(two)
    assert a["update"]["processes"] == 1 and b["update"]["processes"] == 2
    assert b["update"]["tokens"] == a["update"]["tokens"]
    assert b["update"]["loss"] == pytest.approx(a["update"]["loss"], rel=1e-6)
    assert b["update"]["grad_norm"] == pytest.approx(a["update"]["grad_norm"], rel=1e-5)
    assert b["update"]["checksum"] == pytest.approx(a["update"]["checksum"], rel=1e-6)
    assert b["trainer"] == {"check": "trainer", "steps": 2, "evals": 2}
    state = json.loads((tmp_path / "two" / "checkpoints" / "step-0000002" / "trainer_state.json").read_text())
    assert len(state["process_states"]) == 2 and state["fingerprint"]["world_size"] == 2
