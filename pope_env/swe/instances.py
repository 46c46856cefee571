"""SWE-bench task instances: the official record format, loaders, and the local-build extension.

An instance is one issue of one repository: the repository at ``base_commit``, the issue
text, the gold ``patch`` that resolves it, the ``test_patch`` that adds the tests proving it,
and the test ids that must go from failing to passing (``FAIL_TO_PASS``) or keep passing
(``PASS_TO_PASS``). :class:`SWEInstance` holds exactly SWE-bench's fields, so records load
from and save to the official files unchanged.

Official SWE-bench instances name a GitHub commit and an image on Docker Hub; neither is
reachable on an offline machine. *Local* instances (see :mod:`pope_env.swe.build`) carry a
:class:`LocalBuild` instead: the pinned sdist the repository is built from (checked by
sha256, never committed), our bug patch (SWE-smith style: the gold ``patch`` is its reverse),
and the commands that install the project and run its tests.

Loading::

    from pope_env.swe.instances import load_instances
    local = load_instances("local")                      # the built-in set
    mine = load_instances("instances.jsonl")             # .json / .jsonl / .parquet
    verified = load_instances("princeton-nlp/SWE-bench_Verified")   # needs the hub
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pope_env.errors import DataFormatError, PopeEnvError, UnknownNameError, require
from pope_env.swe.issue import RepositoryIssue

OFFICIAL_FIELDS: tuple[str, ...] = (
    "instance_id",
    "repo",
    "base_commit",
    "problem_statement",
    "patch",
    "test_patch",
    "FAIL_TO_PASS",
    "PASS_TO_PASS",
    "version",
    "environment_setup_commit",
)
"""Fields every SWE-bench record has (``hints_text`` and ``created_at`` are optional here)."""

LOCAL_SET = "local"
"""Name of the built-in set of locally built real-repository instances."""

_INSTANCE_ID = re.compile(r"^[A-Za-z0-9_.\-]+__[A-Za-z0-9_.\-]+$")
_REPO = re.compile(r"^[A-Za-z0-9_.\-]+/[A-Za-z0-9_.\-]+$")
_SHA1 = re.compile(r"^[0-9a-f]{40}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class SdistSource:
    """A pinned source distribution on the package index, checked by hash.

    Attributes:
        name: Distribution name as ``pip download`` takes it (``"more-itertools"``).
        version: Exact version (``"10.5.0"``).
        sha256: Hex SHA-256 of the ``.tar.gz`` file; a download that differs is refused.
    """

    name: str
    version: str
    sha256: str

    @property
    def requirement(self) -> str:
        """The pip requirement string, ``NAME==VERSION``."""
        return f"{self.name}=={self.version}"


@dataclass(frozen=True)
class LocalBuild:
    """How to build and test a local instance without any network at run time.

    Attributes:
        source: The sdist that is the project's upstream ("fixed") state.
        bug_patch: Unified diff (``git diff`` format) that introduces the bug; applied and
            committed on top of the upstream state it gives ``base_commit``. The instance's
            gold ``patch`` is its exact reverse.
        python_deps: Pinned requirements (``NAME==VER``) the tests need besides the
            interpreter and pytest, downloaded on the host as wheels for offline images.
        install_command: Shell command run once in the repository root to make the project
            importable (``""`` if running from the source tree is enough).
        test_command: Shell command prefix that runs tests with pytest's ``-rA`` summary;
            the test files of :attr:`test_files` are appended.
        test_files: Test files (relative to the repository root) holding every
            FAIL_TO_PASS and PASS_TO_PASS test.
    """

    source: SdistSource
    bug_patch: str
    python_deps: tuple[str, ...] = ()
    install_command: str = ""
    test_command: str = "python3 -m pytest -p no:cacheprovider -rA --tb=short -q"
    test_files: tuple[str, ...] = ()


@dataclass(frozen=True)
class SWEInstance(RepositoryIssue):
    """One SWE-bench task instance (official fields) plus, for local ones, its build recipe.

    The issue fields of :class:`~pope_env.swe.issue.RepositoryIssue` come first.
    ``FAIL_TO_PASS`` / ``PASS_TO_PASS`` are pytest node ids (``tests/test_x.py::test_y``).
    ``extra`` keeps any further fields of the record (e.g. SWE-bench 5's ``image``,
    ``eval_script``, ``log_parser``) so that :meth:`to_record` round-trips them.
    """

    patch: str
    test_patch: str
    FAIL_TO_PASS: tuple[str, ...]
    PASS_TO_PASS: tuple[str, ...]
    version: str
    environment_setup_commit: str
    hints_text: str = ""
    created_at: str = ""
    local: LocalBuild | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_local(self) -> bool:
        """True for instances built offline from an sdist (they carry :attr:`local`)."""
        return self.local is not None

    def to_record(self) -> dict[str, Any]:
        """The record as SWE-bench writes it (test lists as JSON strings), plus ``local``."""
        record: dict[str, Any] = {name: getattr(self, name) for name in OFFICIAL_FIELDS}
        record["FAIL_TO_PASS"] = json.dumps(list(self.FAIL_TO_PASS))
        record["PASS_TO_PASS"] = json.dumps(list(self.PASS_TO_PASS))
        record["hints_text"] = self.hints_text
        record["created_at"] = self.created_at
        record.update(self.extra)
        if self.local is not None:
            record["local"] = _local_to_dict(self.local)
        return record

    def test_command(self) -> str:
        """The shell command (run in the repository root) that runs every graded test.

        Local instances run their test files; official ones need their SWE-bench eval
        script (see :meth:`test_spec`).
        """
        if self.local is None:
            raise DataFormatError(
                f"instance {self.instance_id!r} is an official SWE-bench instance: run its "
                "eval script from test_spec() in its official image instead"
            )
        files = " ".join(shlex.quote(f) for f in self.local.test_files)
        return f"{self.local.test_command} {files}".strip()

    @property
    def log_parser(self) -> str:
        """Name of the ``swebench`` log parser that reads this instance's test output."""
        return str(self.extra.get("log_parser", "parse_log_pytest"))

    def parse_test_log(self, log: str) -> dict[str, str]:
        """Map test id -> status (``PASSED``, ``FAILED``, ``ERROR``, ``SKIPPED``, ``XFAIL``).

        Uses ``swebench``'s own log parser for the instance, so verdicts match the
        official harness.
        """
        parsers = require("swebench.harness.log_parsers", "swe")
        try:
            parser = parsers.PARSER_REGISTRY[self.log_parser]
        except KeyError:
            raise UnknownNameError("swebench log parser", self.log_parser,
                                   list(parsers.PARSER_REGISTRY)) from None
        return parser(log, None)

    def test_spec(self) -> Any:
        """``swebench``'s ``TestSpec`` (official image name, eval script, log parser).

        Needs a SWE-bench 5 record, which carries ``image``, ``eval_script``,
        ``log_parser`` and ``eval_type``; local instances have no official spec.
        """
        missing = [k for k in ("image", "eval_script", "log_parser", "eval_type")
                   if k not in self.extra]
        if missing:
            raise DataFormatError(
                f"instance {self.instance_id!r} has no {', '.join(missing)} field(s), so "
                "swebench cannot make its test spec; use a SWE-bench 5 dataset record"
                + (" (local instances are graded with test_command())" if self.is_local else "")
            )
        utils = require("swebench.harness.utils", "swe")
        return utils.make_test_spec(self.to_record())


def _local_to_dict(local: LocalBuild) -> dict[str, Any]:
    return {
        "source": {"name": local.source.name, "version": local.source.version,
                   "sha256": local.source.sha256},
        "bug_patch": local.bug_patch,
        "python_deps": list(local.python_deps),
        "install_command": local.install_command,
        "test_command": local.test_command,
        "test_files": list(local.test_files),
    }


# --------------------------------------------------------------------------- parsing


class _RecordReader:
    """Reads typed fields of one record, raising errors that name the record and field."""

    def __init__(self, record: Any, where: str) -> None:
        if not isinstance(record, Mapping):
            raise DataFormatError(
                f"{where}: expected an instance record (a JSON object), "
                f"got {type(record).__name__}")
        self.record = record
        iid = record.get("instance_id")
        self.where = f"{where} (instance_id {iid!r})" if isinstance(iid, str) else where

    def fail(self, name: str, problem: str) -> DataFormatError:
        return DataFormatError(f"{self.where}: field {name!r} {problem}")

    def str(self, name: str, *, required: bool = True, pattern: re.Pattern[str] | None = None,
            hint: str = "", mapping: Mapping[str, Any] | None = None) -> str:
        record = self.record if mapping is None else mapping
        if name not in record or record[name] is None:
            if required:
                raise self.fail(name, "is missing; every SWE-bench record needs it")
            return ""
        value = record[name]
        if not isinstance(value, str):
            raise self.fail(name, f"must be a string, got {type(value).__name__} {value!r:.60}")
        if pattern is not None and not pattern.match(value):
            raise self.fail(name, f"is malformed: {value!r:.80}{hint}")
        return value

    def tests(self, name: str) -> tuple[str, ...]:
        if name not in self.record:
            raise self.fail(name, "is missing; give a list of test ids (may be empty)")
        value = self.record[name]
        if isinstance(value, str):  # the official datasets store the lists as JSON text
            try:
                value = json.loads(value)
            except ValueError as exc:
                raise self.fail(name, f"is a string but not a JSON list of test ids ({exc})") from None
        if hasattr(value, "tolist"):  # numpy arrays from parquet
            value = value.tolist()
        if not isinstance(value, (list, tuple)) or not all(isinstance(t, str) and t for t in value):
            raise self.fail(name, f"must be a list of non-empty test-id strings, got {value!r:.80}")
        return tuple(value)

    def str_list(self, mapping: Mapping[str, Any], name: str) -> tuple[str, ...]:
        value = mapping.get(name, [])
        if hasattr(value, "tolist"):
            value = value.tolist()
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise self.fail(f"local.{name}", f"must be a list of strings, got {value!r:.80}")
        return tuple(value)


def parse_instance(record: Mapping[str, Any], where: str = "record") -> SWEInstance:
    """Validate one record and build its :class:`SWEInstance`.

    Args:
        record: A SWE-bench record (a dict from JSON, JSONL, parquet or a dataset row).
        where: Where the record came from, used in error messages (``"file.jsonl:3"``).

    Raises:
        DataFormatError: A field is missing, has the wrong type or is malformed; the
            message names the record, the instance id and the field.
    """
    r = _RecordReader(record, where)
    instance_id = r.str("instance_id", pattern=_INSTANCE_ID,
                        hint=" (expected OWNER__REPO-ID, e.g. 'django__django-11099')")
    fields: dict[str, Any] = {
        "instance_id": instance_id,
        "repo": r.str("repo", pattern=_REPO, hint=" (expected OWNER/NAME)"),
        "base_commit": r.str("base_commit", pattern=_SHA1, hint=" (expected a 40-hex git sha)"),
        "problem_statement": r.str("problem_statement"),
        "patch": r.str("patch"),
        "test_patch": r.str("test_patch"),
        "FAIL_TO_PASS": r.tests("FAIL_TO_PASS"),
        "PASS_TO_PASS": r.tests("PASS_TO_PASS"),
        "version": str(record.get("version")) if isinstance(record.get("version"), (int, float))
        else r.str("version"),
        "environment_setup_commit": r.str("environment_setup_commit", pattern=_SHA1,
                                          hint=" (expected a 40-hex git sha)"),
        "hints_text": r.str("hints_text", required=False),
        "created_at": str(record.get("created_at") or ""),
    }
    if not fields["problem_statement"].strip():
        raise r.fail("problem_statement", "is empty; an instance needs the issue text")
    if not fields["FAIL_TO_PASS"]:
        raise r.fail("FAIL_TO_PASS", "is empty; at least one test must fail before the fix")
    if not fields["patch"].strip():
        raise r.fail("patch", "is empty; the gold patch must change the code")
    local = record.get("local")
    if local is not None:
        fields["local"] = _parse_local(r, local)
    known = set(OFFICIAL_FIELDS) | {"hints_text", "created_at", "local"}
    fields["extra"] = {k: v for k, v in record.items() if k not in known}
    return SWEInstance(**fields)


def _parse_local(r: _RecordReader, local: Any) -> LocalBuild:
    if not isinstance(local, Mapping):
        raise r.fail("local", f"must be an object with source/bug_patch/..., got {type(local).__name__}")
    source = local.get("source")
    if not isinstance(source, Mapping):
        raise r.fail("local.source", "is missing; give {name, version, sha256} of the sdist")
    sdist = SdistSource(
        name=r.str("name", mapping=source),
        version=r.str("version", mapping=source),
        sha256=r.str("sha256", mapping=source, pattern=_SHA256,
                     hint=" (local.source.sha256 must be 64 hex digits)"),
    )
    bug_patch = r.str("bug_patch", mapping=local)
    if not bug_patch.startswith("diff --git "):
        raise r.fail("local.bug_patch", "must be a unified diff starting with 'diff --git '")
    test_files = r.str_list(local, "test_files")
    if not test_files:
        raise r.fail("local.test_files", "is empty; name the test files that hold the graded tests")
    return LocalBuild(
        source=sdist,
        bug_patch=bug_patch,
        python_deps=r.str_list(local, "python_deps"),
        install_command=r.str("install_command", mapping=local, required=False),
        test_command=r.str("test_command", mapping=local, required=False)
        or LocalBuild.test_command,
        test_files=test_files,
    )


# --------------------------------------------------------------------------- loading


def local_data_path(name: str) -> Path:
    """Path of a data file of the built-in local set (``instances.jsonl`` ...)."""
    return Path(__file__).resolve().parent / "local" / name


def load_instances(source: str | os.PathLike[str] = LOCAL_SET, *, split: str = "test",
                   ids: Sequence[str] | None = None) -> list[SWEInstance]:
    """Load SWE-bench instances.

    Args:
        source: ``"local"`` (the built-in real-repository set); a ``.json`` file (a list of
            records, or ``{"instances": [...]}``), ``.jsonl`` or ``.parquet`` file; a folder
            written by ``datasets.Dataset.save_to_disk`` or holding a copy of a hub dataset
            repository; or a Hugging Face dataset name (``"princeton-nlp/SWE-bench_Lite"``,
            needs network access to the hub).
        split: Dataset split for hub names and ``DatasetDict`` folders.
        ids: Keep only these instance ids, in this order (unknown ids raise).

    Raises:
        DataFormatError: A record is malformed (names the file, record and field), or two
            records share an instance id.
        UnknownNameError: ``source`` is neither a file, a folder nor a loadable dataset,
            or an id in ``ids`` is unknown.
    """
    text = os.fspath(source)
    if text == LOCAL_SET:
        path = local_data_path("instances.jsonl")
        records = _read_jsonl_records(path)
    elif Path(text).is_file():
        records = _read_file_records(Path(text))
    elif Path(text).is_dir():
        records = _read_saved_dataset(Path(text), split)
    elif Path(text).suffix.lower() in (".json", ".jsonl", ".parquet"):
        raise UnknownNameError("instance source", f"{text} (no such file)", [LOCAL_SET])
    else:
        records = _read_hub_dataset(text, split)
    instances = [parse_instance(rec, where) for where, rec in records]
    by_id: dict[str, SWEInstance] = {}
    for inst in instances:
        if inst.instance_id in by_id:
            raise DataFormatError(f"{text}: instance_id {inst.instance_id!r} occurs twice")
        by_id[inst.instance_id] = inst
    if ids is None:
        return instances
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise UnknownNameError("instance id", missing[0], list(by_id))
    return [by_id[i] for i in ids]


def save_instances(instances: Iterable[SWEInstance], path: str | os.PathLike[str]) -> None:
    """Write instances as JSONL in SWE-bench's record format, atomically."""
    from pope_env.io import atomic_write_jsonl

    atomic_write_jsonl(path, (inst.to_record() for inst in instances))


def _read_jsonl_records(path: Path) -> list[tuple[str, Any]]:
    records = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                records.append((f"{path}:{lineno}", json.loads(line)))
            except ValueError as exc:
                raise DataFormatError(f"{path}:{lineno}: not valid JSON ({exc}); "
                                      "fix or delete that line") from None
    return records


def _read_file_records(path: Path) -> list[tuple[str, Any]]:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _read_jsonl_records(path)
    if suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise DataFormatError(f"{path}: not valid JSON ({exc})") from None
        if isinstance(data, Mapping) and isinstance(data.get("instances"), list):
            data = data["instances"]
        if isinstance(data, Mapping) and "instance_id" in data:
            data = [data]
        if not isinstance(data, list):
            raise DataFormatError(f"{path}: expected a JSON list of instance records")
        return [(f"{path}[{i}]", rec) for i, rec in enumerate(data)]
    if suffix == ".parquet":
        pq = require("pyarrow.parquet", "data")
        rows = pq.read_table(path).to_pylist()
        return [(f"{path} row {i}", rec) for i, rec in enumerate(rows)]
    raise DataFormatError(f"{path}: unsupported instance file type {suffix!r}; "
                          "use .json, .jsonl or .parquet")


def _read_saved_dataset(path: Path, split: str) -> list[tuple[str, Any]]:
    datasets = require("datasets", "data")
    try:
        data = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError):
        # Not a save_to_disk folder: a local copy of a hub dataset repository (parquet or
        # JSON files in the hub's layout), loaded the way the hub version would be.
        return _load_dataset(str(path), split)
    if isinstance(data, datasets.DatasetDict):
        if split not in data:
            raise UnknownNameError("split", split, list(data))
        data = data[split]
    return [(f"{path} row {i}", rec) for i, rec in enumerate(data)]


def _read_hub_dataset(name: str, split: str) -> list[tuple[str, Any]]:
    if not re.match(r"^[\w.\-]+/[\w.\-]+$", name):
        raise UnknownNameError(
            "instance source", name,
            [LOCAL_SET, "<file>.json", "<file>.jsonl", "<file>.parquet", "<dir of save_to_disk>",
             "<owner>/<hub dataset>"])
    return _load_dataset(name, split)


def _load_dataset(name: str, split: str) -> list[tuple[str, Any]]:
    datasets = require("datasets", "data")
    try:
        data = datasets.load_dataset(name, split=split)
    except Exception as exc:  # the hub raises many kinds; all mean "not loadable here"
        raise PopeEnvError(
            f"could not load the dataset {name!r} (split {split!r}) with datasets.load_dataset "
            f"({type(exc).__name__}: {exc}); offline, pass a .json/.jsonl/.parquet file, a "
            f"save_to_disk folder, or {LOCAL_SET!r}"
        ) from exc
    return [(f"{name}[{split}] row {i}", rec) for i, rec in enumerate(data)]
