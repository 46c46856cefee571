"""Shared pytest fixtures."""

from __future__ import annotations

import pytest


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    """An empty pope-env cache folder for one test."""
    monkeypatch.setenv("POPE_ENV_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models run fastest single-threaded; extra threads only spin on a shared 2-core box.

    Use per module: ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    """Each test starts with no ``accelerate`` state: a trainer built by one test (e.g. TRL's
    GRPOTrainer, with its own mixed-precision setting) would otherwise make the next test's
    ``Accelerator(mixed_precision=...)`` raise "AcceleratorState has already been initialized"."""
    yield
    import sys

    if "accelerate" in sys.modules:
        from accelerate.state import AcceleratorState, GradientState

        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()


# --- leaked sandboxes: counted after the whole session, must be 0 ---------------------------

_SESSION_START = None


def pytest_sessionstart(session):
    global _SESSION_START
    import time

    _SESSION_START = time.time()


def _leaked_sandboxes() -> list[str] | None:
    """Sandbox containers this session left behind (its own, or orphans made during it)."""
    import datetime
    import os

    try:
        import docker

        client = docker.from_env(timeout=30)
        client.ping()
    except Exception:
        return None
    from pope_env.sandbox.reaper import OWNER_LABELS, SANDBOX_LABEL, owner_alive

    leaked = []
    for c in client.containers.list(all=True, filters={"label": f"{SANDBOX_LABEL}=1"}):
        labels = c.labels or {}
        pid, start = int(labels.get(OWNER_LABELS[0], 0)), int(labels.get(OWNER_LABELS[1], 0))
        created = datetime.datetime.fromisoformat(c.attrs["Created"][:26].rstrip("Z") + "+00:00").timestamp()
        if pid == os.getpid() or (created >= (_SESSION_START or 0) and not owner_alive(pid, start)):
            leaked.append(c.name)
    return leaked


def pytest_sessionfinish(session, exitstatus):
    import gc

    gc.collect()  # sandboxes that only garbage holds are closed by their finalizers
    leaked = _leaked_sandboxes()
    session.config._pope_env_leaked = leaked
    if leaked:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    leaked = getattr(config, "_pope_env_leaked", None)
    if leaked is None:
        terminalreporter.write_line("pope-env sandbox containers leaked: not counted (no Docker engine answers)")
    else:
        terminalreporter.write_line(f"pope-env sandbox containers leaked: {len(leaked)}"
                                    + (f" ({', '.join(leaked)}) -> session FAILED" if leaked else ""),
                                    red=bool(leaked), green=not leaked)
