"""Shared pytest fixtures."""

from __future__ import annotations

import pytest


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    """An empty pope-env cache folder for one test."""
    monkeypatch.setenv("POPE_ENV_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"
