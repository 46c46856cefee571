"""Drafts of the local SWE set: the bugs we inject, their issue reports and expert commands.

Each draft names a pinned sdist, the bug as exact text edits of the upstream source (a
one-to-few-line defect), optional test edits (for bugs the project's own suite misses),
the issue text a user would file, and the expert's shell session. The drafts are data, in
``drafts.toml`` next to this module; :func:`load_drafts` reads and checks them, and
``generate.py`` turns them into ``instances.jsonl`` / ``trajectories.jsonl``. The loaders
of the set (:func:`pope_env.swe.load_instances`) never read the drafts.

Format of ``drafts.toml``:

``[sources.KEY]``
    A pinned sdist: ``name``, ``version``, ``sha256`` (strings). Drafts refer to it by KEY.
``[[drafts]]``
    One draft: ``instance_id``, ``repo`` (``owner/name``), ``source`` (a KEY),
    ``test_files`` (list of paths), ``problem_statement``; optional ``python_deps`` (list),
    ``hints_text`` and ``created_at`` (default ``2026-11-22T00:00:00Z``).
``[[drafts.bug_edits]]`` / ``[[drafts.test_edits]]``
    One exact text edit: ``path``, ``old`` (occurs once in the file), ``new``. Bug edits
    turn the upstream source into the bug; test edits are written against upstream.
``[[drafts.trajectory]]``
    One expert step: ``thought`` and exactly one of

    * ``command``: the shell command, verbatim;
    * ``pytest``: arguments of :data:`PYTEST` (the command is ``PYTEST + " " + pytest``);
    * ``python_edit``: a table ``path``, ``old``, ``new``; the command is the Python
      heredoc of :func:`python_edit_command`, an edit as an expert types it;
    * ``submit = true``: the final step, :data:`~pope_env.swe.trajectories.SUBMIT`.

Anything else (a missing or mistyped field, an unknown key, an unknown source) raises
:class:`~pope_env.errors.DataFormatError` naming the draft and the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pope_env.errors import DataFormatError
from pope_env.io import read_toml
from pope_env.swe.trajectories import SUBMIT

DRAFTS_FILE = Path(__file__).resolve().with_name("drafts.toml")
PYTEST = "python3 -m pytest -q -p no:cacheprovider"
DEFAULT_CREATED_AT = "2026-11-22T00:00:00Z"

_STEP_KINDS = ("command", "pytest", "python_edit", "submit")


@dataclass(frozen=True)
class Draft:
    """One local instance before generation (see the module docstring).

    ``source`` is ``(name, version, sha256)``; edits are ``(path, old, new)``; the
    trajectory is ``(thought, command)`` pairs with the commands spelled out.
    """

    instance_id: str
    repo: str
    source: tuple[str, str, str]
    bug_edits: tuple[tuple[str, str, str], ...]
    test_files: tuple[str, ...]
    problem_statement: str
    trajectory: tuple[tuple[str, str], ...]
    test_edits: tuple[tuple[str, str, str], ...] = ()
    python_deps: tuple[str, ...] = ()
    hints_text: str = ""
    created_at: str = DEFAULT_CREATED_AT


def python_edit_command(path: str, old: str, new: str) -> str:
    """An edit command as an expert types it: a short Python script in a heredoc."""
    return (f"python3 - <<'EOF'\nfrom pathlib import Path\np = Path({path!r})\n"
            f"s = p.read_text()\nassert s.count({old!r}) == 1\n"
            f"p.write_text(s.replace({old!r}, {new!r}))\nEOF")


class _Table:
    """A TOML table being checked: typed field access whose errors name where it is."""

    def __init__(self, data: Any, where: str, required: tuple[str, ...], optional: tuple[str, ...] = ()):
        if not isinstance(data, Mapping):
            raise DataFormatError(f"{where} must be a table, got {type(data).__name__}")
        unknown = sorted(set(data) - set(required) - set(optional))
        if unknown:
            raise DataFormatError(f"{where} has unknown field(s) {', '.join(unknown)}; "
                                  f"allowed: {', '.join(required + optional)}")
        missing = [name for name in required if name not in data]
        if missing:
            raise DataFormatError(f"{where} misses field(s) {', '.join(missing)}")
        self.data, self.where = data, where

    def text(self, name: str, default: str = "") -> str:
        value = self.data.get(name, default)
        if not isinstance(value, str):
            raise DataFormatError(f"{self.where}: field {name} must be a string, got {type(value).__name__}")
        return value

    def texts(self, name: str) -> tuple[str, ...]:
        value = self.data.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise DataFormatError(f"{self.where}: field {name} must be a list of strings")
        return tuple(value)

    def tables(self, name: str) -> list[Any]:
        value = self.data.get(name, [])
        if not isinstance(value, list):
            raise DataFormatError(f"{self.where}: field {name} must be an array of tables "
                                  f"([[...{name}]]), got {type(value).__name__}")
        return value


def _edit(data: Any, where: str) -> tuple[str, str, str]:
    table = _Table(data, where, ("path", "old", "new"))
    return table.text("path"), table.text("old"), table.text("new")


def _step(data: Any, where: str) -> tuple[str, str]:
    table = _Table(data, where, ("thought",), _STEP_KINDS)
    kinds = [kind for kind in _STEP_KINDS if kind in table.data]
    if len(kinds) != 1:
        raise DataFormatError(f"{where} must have exactly one of {', '.join(_STEP_KINDS)}, "
                              f"got {', '.join(kinds) or 'none'}")
    kind = kinds[0]
    if kind == "submit":
        if table.data["submit"] is not True:
            raise DataFormatError(f"{where}: field submit must be true")
        command = SUBMIT
    elif kind == "python_edit":
        command = python_edit_command(*_edit(table.data["python_edit"], f"{where}: python_edit"))
    elif kind == "pytest":
        command = f"{PYTEST} {table.text('pytest')}"
    else:
        command = table.text("command")
    return table.text("thought"), command


def _sources(data: Any, path: Path) -> dict[str, tuple[str, str, str]]:
    if not isinstance(data, Mapping):
        raise DataFormatError(f"{path}: sources must be a table of [sources.KEY] tables")
    sources = {}
    for key, value in data.items():
        table = _Table(value, f"{path}: [sources.{key}]", ("name", "version", "sha256"))
        sources[key] = (table.text("name"), table.text("version"), table.text("sha256"))
    return sources


def _draft(data: Any, where: str, sources: Mapping[str, tuple[str, str, str]]) -> Draft:
    table = _Table(data, where,
                   ("instance_id", "repo", "source", "test_files", "problem_statement", "bug_edits",
                    "trajectory"),
                   ("test_edits", "python_deps", "hints_text", "created_at"))
    key = table.text("source")
    if key not in sources:
        raise DataFormatError(f"{where}: field source {key!r} is not a [sources.KEY] of the file; "
                              f"known: {', '.join(sorted(sources))}")
    return Draft(
        instance_id=table.text("instance_id"),
        repo=table.text("repo"),
        source=sources[key],
        bug_edits=tuple(_edit(e, f"{where}: bug_edits[{i}]") for i, e in enumerate(table.tables("bug_edits"))),
        test_files=table.texts("test_files"),
        problem_statement=table.text("problem_statement"),
        trajectory=tuple(_step(s, f"{where}: trajectory[{i}]") for i, s in enumerate(table.tables("trajectory"))),
        test_edits=tuple(_edit(e, f"{where}: test_edits[{i}]") for i, e in enumerate(table.tables("test_edits"))),
        python_deps=table.texts("python_deps"),
        hints_text=table.text("hints_text"),
        created_at=table.text("created_at", DEFAULT_CREATED_AT),
    )


def load_drafts(path: str | Path = DRAFTS_FILE) -> tuple[Draft, ...]:
    """Read and check the drafts file (format: module docstring), in file order.

    Raises:
        DataFormatError: the file is not TOML, or a draft or field is missing or mistyped
            (the message names the draft by index and id, and the field).
    """
    path = Path(path)
    data = read_toml(path)
    top = _Table(data, str(path), ("sources", "drafts"))
    sources = _sources(data["sources"], path)
    drafts = []
    for index, entry in enumerate(top.tables("drafts")):
        name = entry.get("instance_id", "?") if isinstance(entry, Mapping) else "?"
        drafts.append(_draft(entry, f"{path}: drafts[{index}] ({name})", sources))
    ids = [d.instance_id for d in drafts]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise DataFormatError(f"{path}: instance_id(s) {', '.join(duplicates)} appear in more than one draft")
    return tuple(drafts)
