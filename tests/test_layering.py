"""The import rules of docs/architecture.md ("Layers"), checked on the source files.

Every ``import`` and ``from ... import`` statement of every module is read with :mod:`ast`,
lazy ones inside functions included, so a rule holds for every code path, not only for what
one import happens to load. The folders map to modules as pyproject's ``package-dir`` says:
``pope_env/`` is ``pope_env``, ``envs/`` is ``pope_env.envs``, ``agents/`` is
``pope_env.agents``. ``import pope_env`` itself is checked by running it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = {"pope_env": ROOT / "pope_env", "pope_env.envs": ROOT / "envs", "pope_env.agents": ROOT / "agents"}

# (importing package, forbidden packages): a module of the first may import none of the second.
RULES: list[tuple[str, tuple[str, ...]]] = [
    ("pope_env.rewards", ("pope_env.envs", "pope_env.agents", "pope_env.swe")),
    ("pope_env.sandbox", ("pope_env.envs", "pope_env.agents", "pope_env.swe")),
    ("pope_env.envs", ("pope_env.agents",)),
]


def module_files() -> dict[str, Path]:
    """Module name -> source file, for every module of the three package folders."""
    out: dict[str, Path] = {}
    for package, folder in PACKAGE_DIRS.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join([package, *parts])] = path
    return out


def imported_modules(source: str, module: str, *, is_package: bool = False) -> set[str]:
    """Every module ``source`` (the text of ``module``) may import, at any depth of the code.

    ``from a import b`` yields ``a`` and ``a.b`` (``b`` may be a submodule); relative imports
    are resolved against ``module``.
    """
    found: set[str] = set()
    package_parts = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package_parts[: len(package_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _inside(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def violations() -> list[str]:
    found = []
    for module, path in module_files().items():
        imports = imported_modules(path.read_text(encoding="utf-8"), module, is_package=path.name == "__init__.py")
        for importer, forbidden in RULES:
            if not _inside(module, importer):
                continue
            for name in sorted(imports):
                if any(_inside(name, f) for f in forbidden):
                    found.append(f"{path.relative_to(ROOT)} ({module}) imports {name}")
    return found


def test_the_layers_import_only_downwards():
    bad = violations()
    assert not bad, "import rules of docs/architecture.md broken:\n" + "\n".join(bad)


def test_the_checker_sees_lazy_relative_and_from_imports():
    source = (
        "import os\n"
        "def f():\n"
        "    from pope_env.swe.images import docker_client\n"
        "class C:\n"
        "    def g(self):\n"
        "        import pope_env.agents.grpo\n"
        "from . import engine\n"
        "from ..envs import math\n"
    )
    got = imported_modules(source, "pope_env.sandbox.docker")
    assert {"pope_env.swe.images", "pope_env.swe.images.docker_client", "pope_env.agents.grpo",
            "pope_env.sandbox", "pope_env.sandbox.engine", "pope_env.envs", "pope_env.envs.math"} <= got
    assert imported_modules("from .base import X", "pope_env.sandbox", is_package=True) >= {"pope_env.sandbox.base"}


def test_every_package_folder_was_scanned():
    modules = module_files()
    for name in ("pope_env.rewards.math", "pope_env.sandbox.docker", "pope_env.sandbox.engine", "pope_env.envs.swe",
                 "pope_env.agents.swe_agent"):
        assert name in modules, name


@pytest.mark.parametrize("statement", ["import pope_env", "import pope_env.envs, pope_env.spaces, pope_env.sandbox"])
def test_importing_the_core_does_not_import_torch(statement):
    code = f"import sys\n{statement}\nheavy = sorted(m for m in ('torch', 'transformers', 'vllm') if m in sys.modules)\nprint(heavy)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"{statement!r} imported {out.stdout.strip()}"
