"""Crash-safe files: atomic writes and append-only JSONL logs that resume after a crash.

Long jobs (prefix search, evaluation, training logs) append one JSON record per finished
unit of work with :class:`JsonlAppender`; a crash can at worst leave a torn last line,
which :func:`read_jsonl` reports and skips (``strict=False``) so a re-run redoes only that
unit. Whole-file outputs (split files, reports, checkpoints' metadata) go through
:func:`atomic_write_text`, which never leaves a half-written file behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Callable, ClassVar, TypeVar

from pope_env.errors import DataFormatError, PopeEnvError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

H = TypeVar("H")
R = TypeVar("R")

PathLike = str | os.PathLike[str]


def sha256_file(path: PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a temp file in the same folder, fsync, rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def atomic_write_jsonl(path: PathLike, records: Iterable[Mapping[str, Any]]) -> None:
    """Write ``records`` as JSONL to ``path`` atomically (all or nothing)."""
    atomic_write_text(path, "".join(_dumps(r) + "\n" for r in records))


def _dumps(record: Mapping[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def parse_json_object(line: str) -> dict[str, Any]:
    """The JSON object on one JSONL line (:class:`ValueError` if it is not valid JSON or not
    an object)."""
    obj = json.loads(line)
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    return obj


def read_toml(path: PathLike) -> dict[str, Any]:
    """The table a TOML file holds (:class:`DataFormatError` naming the file if it is not TOML)."""
    try:
        with Path(path).open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise DataFormatError(f"{path} is not valid TOML: {exc}") from exc


def iter_jsonl(path: PathLike, *, strict: bool = True) -> Iterator[dict[str, Any]]:
    """Yield the JSON objects of a JSONL file.

    Args:
        path: The file.
        strict: If true, a malformed line raises :class:`DataFormatError` naming the file
            and line number. If false, malformed lines are skipped with a warning (the
            torn last line a crash can leave is the common case) and the good ones kept.
    """
    path = Path(path)
    with path.open("r", encoding="utf-8", errors="strict") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = parse_json_object(line)
            except ValueError as exc:
                msg = f"{path}:{lineno}: malformed JSONL line ({exc})"
                if strict:
                    raise DataFormatError(msg + "; fix or delete that line") from exc
                warnings.warn(msg + "; skipped", stacklevel=2)
                continue
            yield obj


def read_jsonl(path: PathLike, *, strict: bool = True) -> list[dict[str, Any]]:
    """All objects of a JSONL file; see :func:`iter_jsonl`."""
    return list(iter_jsonl(path, strict=strict))


class JsonlAppender:
    """Append records to a JSONL file durably, one complete line per record.

    Each :meth:`append` writes a whole line and flushes + fsyncs it, so records written
    before a crash survive. On open, a torn last line (no trailing newline) left by an
    earlier crash is cut off so the file stays valid JSONL.

    Use as a context manager::

        with JsonlAppender("results.jsonl") as out:
            out.append({"problem_id": "p1", "correct": True})
    """

    def __init__(self, path: PathLike, *, fsync: bool = True) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fsync = fsync
        _truncate_torn_tail(self.path)
        self._f = self.path.open("a", encoding="utf-8")

    def append(self, record: Mapping[str, Any]) -> None:
        """Write ``record`` as one line and make it durable."""
        self._f.write(_dumps(record) + "\n")
        self._f.flush()
        if self._fsync:
            os.fsync(self._f.fileno())

    def sync(self) -> None:
        """Make every record appended so far durable (for appenders opened with
        ``fsync=False``, which then choose when to pay for it)."""
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "JsonlAppender":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _truncate_torn_tail(path: Path) -> None:
    if not path.exists() or path.stat().st_size == 0:
        return
    with path.open("rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return
        data = path.read_bytes()
        keep = data.rfind(b"\n") + 1
        f.seek(keep)
        f.truncate()
        warnings.warn(f"{path}: dropped a torn last line left by an earlier crash", stacklevel=3)


def read_headed_jsonl(
    path: PathLike,
    parse_header: Callable[[dict[str, Any]], H],
    parse_record: Callable[[dict[str, Any]], R],
    *,
    kind: str,
    header_kind: str | None = None,
    redo_hint: str = "re-run the command that wrote it",
    strict: bool = False,
    error: type[DataFormatError] = DataFormatError,
    dataset: str | None = None,
    remake_hint: str = "",
) -> tuple[H, list[R], list[int]]:
    """Read a JSONL file whose first line is a header and every other line a record.

    ``parse_header`` may raise a :class:`~pope_env.errors.PopeEnvError` (e.g. a dataset
    mismatch), which propagates unchanged; any other failure to parse the header raises
    ``error`` naming ``path:1``. A corrupted record line raises ``error`` naming the line
    (``strict``) or is skipped with a warning and its line number returned in the third
    element, so a resumable job can redo it. With ``dataset``, the header's ``dataset`` field
    must equal it (``error`` naming both and ``remake_hint`` otherwise).

    Returns:
        ``(header, records, bad_line_numbers)``.
    """
    path = Path(path)
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    if not lines or not lines[0].strip():
        raise error(f"{path}:1: empty {kind} file (no header line)")
    try:
        header = parse_header(json.loads(lines[0]))
    except PopeEnvError:
        raise
    except (ValueError, TypeError, KeyError) as exc:
        raise error(f"{path}:1: bad {header_kind or kind} header ({exc})") from exc
    made_for = getattr(header, "dataset", None)
    if dataset is not None and made_for != dataset:
        raise error(f"{path} was made for dataset {made_for!r}, not {dataset!r}; {remake_hint}")
    records: list[R] = []
    bad: list[int] = []
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        try:
            records.append(parse_record(parse_json_object(line)))
        except (ValueError, TypeError, KeyError) as exc:
            msg = f"{path}:{lineno}: corrupted {kind} line ({type(exc).__name__}: {exc})"
            if strict:
                raise error(msg + "; fix or delete that line") from exc
            warnings.warn(f"{msg}; skipped ({redo_hint})", stacklevel=3)
            bad.append(lineno)
    return header, records, bad


class FileHeader:
    """The metadata (first) line of a headed JSONL file (a hard-split or guidance file): a
    frozen dataclass whose fields are the settings that produced the file, written after
    ``"kind"`` and ``"version"``.

    Subclasses are dataclasses that set ``KIND`` (the ``"kind"`` value), ``VERSION``,
    ``HEADER_NAME`` and ``FILE_NAME`` (the words naming them in errors). :meth:`from_json`
    keeps only known fields, so a newer writer's extra settings do not break a reader.
    """

    KIND: ClassVar[str] = ""
    VERSION: ClassVar[int] = 1
    HEADER_NAME: ClassVar[str] = "file"
    FILE_NAME: ClassVar[str] = "file"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.KIND, "version": self.VERSION, **dataclasses.asdict(self)}  # type: ignore[call-overload]

    @classmethod
    def from_json(cls: type[H], d: dict[str, Any]) -> H:
        if d.get("kind") != cls.KIND:
            raise ValueError(f"first line is not a {cls.HEADER_NAME} header (kind={d.get('kind')!r})")
        if d.get("version") != cls.VERSION:
            raise ValueError(f"unsupported {cls.FILE_NAME} version {d.get('version')!r}")
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in d.items() if k in names})

    def mismatches(self, other: "FileHeader") -> list[str]:
        """Human-readable ``field: file has X, asked for Y`` for every differing field."""
        return [
            f"{f.name}: file has {getattr(self, f.name)!r}, asked for {getattr(other, f.name)!r}"
            for f in dataclasses.fields(self)  # type: ignore[arg-type]
            if getattr(self, f.name) != getattr(other, f.name)
        ]


H = TypeVar("H", bound=FileHeader)


def open_for_resume(path: PathLike, header: FileHeader, load: Callable[[Path], Any],
                    record_json: Callable[[Any], Mapping[str, Any]]) -> dict[str, Any]:
    """Create the headed JSONL file ``path`` holding ``header``, or validate an existing one;
    returns the finished records of an existing file (problem id -> record).

    ``load(path)`` reads the file (an object with ``header``, ``records`` and ``bad_lines``);
    its warnings about corrupted lines are passed on. A file made with other settings is
    refused (:class:`~pope_env.errors.GuidanceFileError` naming every difference); corrupted
    lines are dropped by rewriting the file atomically with the good records
    (``record_json(record)``), so those problems are redone.
    """
    from pope_env.errors import GuidanceFileError

    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        atomic_write_text(path, json.dumps(header.to_json(), ensure_ascii=False) + "\n")
        return {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        existing = load(path)
    for w in caught:
        warnings.warn(str(w.message), stacklevel=3)
    diff = existing.header.mismatches(header)
    if diff:
        raise GuidanceFileError(f"{path} was made with other settings ({'; '.join(diff)}); use another --out "
                                "file or the same settings to resume")
    if existing.bad_lines:
        rows = [header.to_json()] + [dict(record_json(r)) for r in existing.records.values()]
        atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return dict(existing.records)


@dataclasses.dataclass
class HeadedFile:
    """A loaded headed JSONL file: its :class:`FileHeader`, one record per problem id (in
    file order), and the numbers of the corrupted lines that were skipped."""

    path: Path
    header: Any
    records: dict[str, Any]
    bad_lines: list[int] = dataclasses.field(default_factory=list)
