"""Docker images built offline: a Debian base image and per-repository environment images.

No image registry is reachable, so every image is made on this machine:

* **Base image** (:func:`ensure_base_image`): ``debootstrap --variant=minbase
  --include=python3,python3-pytest,git bookworm`` from the Debian mirror apt already uses
  (read from ``/etc/apt/sources.list*``), plus a non-root user ``pope`` (uid 1000) and an
  empty ``/testbed``, imported with ``docker import``.
* **Repository images** (:func:`ensure_repo_image`): ``FROM`` the base image, a host git
  repository copied to ``/testbed`` (owned by ``pope``) and the repository's Python
  dependencies installed from wheels that were fetched *on the host* (``pip wheel``); the
  build itself runs with ``network_mode="none"``. pip is run from its own wheel
  (``python3 pip.whl/pip install --no-index``), so the base image needs no pip package.

Every image is tagged by a content hash of its recipe (``pope-env/base:<hash>``,
``pope-env/repo-<name>:<hash>``) and labelled ``pope-env.image=1``, so a second call reuses
it in milliseconds and a changed recipe builds a new one. ``pope-env swe build-images``
drives these functions with a progress bar.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pope_env.errors import ConfigError, DependencyError, PopeEnvError
from pope_env.paths import cache_dir
from pope_env.sandbox.engine import docker_client, engine_answers  # re-exported: imported from here too

IMAGE_LABEL = "pope-env.image"
"""Label on every image pope-env builds (value ``"1"``); ``docker images -f label=...``."""
RECIPE_LABEL = "pope-env.recipe-hash"
SANDBOX_USER = "pope"
SANDBOX_UID = 1000
TESTBED = "/testbed"

BASE_SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-pytest", "git")
_BASE_RECIPE_VERSION = 1  # bump when the post-debootstrap set-up below changes

Progress = Callable[[str], None]


class ImageBuildError(PopeEnvError, RuntimeError):
    """Building an image failed; the message holds the failing step and its output."""


def _quiet(_: str) -> None:
    pass


def _digest(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def _image_exists(client, tag: str) -> bool:
    import docker

    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    return True


# --- base image -------------------------------------------------------------------------


def debian_mirror(sources: Sequence[Path] | None = None) -> str:
    """The Debian mirror apt on this machine uses (first ``debian`` URI of the main archive).

    Reads deb822 ``*.sources`` (``URIs:``) and one-line ``sources.list`` (``deb URI suite``)
    files; skips security and third-party archives.
    """
    if sources is None:
        sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        uris = re.findall(r"^\s*URIs:\s*(\S+)", text, flags=re.M)
        uris += re.findall(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)", text, flags=re.M)
        for uri in uris:
            if "debian" in uri and "security" not in uri:
                return uri
    raise ConfigError(
        "found no Debian mirror in /etc/apt/sources.list*; pass mirror=... "
        "(e.g. http://deb.debian.org/debian)"
    )


def base_image_tag() -> str:
    """The content-hash tag of the base image for the current recipe."""
    recipe = {"suite": BASE_SUITE, "variant": "minbase", "packages": BASE_PACKAGES,
              "user": [SANDBOX_USER, SANDBOX_UID], "testbed": TESTBED, "v": _BASE_RECIPE_VERSION}
    return f"pope-env/base:{_digest(recipe)}"


def _add_user(rootfs: Path) -> None:
    """Add the sandbox user and ``/testbed`` to a debootstrapped tree without chroot tools."""
    with (rootfs / "etc/passwd").open("a") as f:
        f.write(f"{SANDBOX_USER}:x:{SANDBOX_UID}:{SANDBOX_UID}::/home/{SANDBOX_USER}:/bin/bash\n")
    with (rootfs / "etc/group").open("a") as f:
        f.write(f"{SANDBOX_USER}:x:{SANDBOX_UID}:\n")
    if (rootfs / "etc/shadow").exists():
        with (rootfs / "etc/shadow").open("a") as f:
            f.write(f"{SANDBOX_USER}:!:19000:0:99999:7:::\n")
    for d in (rootfs / "home" / SANDBOX_USER, rootfs / TESTBED.lstrip("/")):
        d.mkdir(parents=True, exist_ok=True)
        os.chown(d, SANDBOX_UID, SANDBOX_UID)
    # git refuses repositories owned by another user; the sandbox user owns /testbed anyway,
    # but grading copies files in as root.
    (rootfs / "etc/gitconfig").write_text(
        "[safe]\n\tdirectory = *\n[user]\n\tname = pope-env\n\temail = pope-env@localhost\n"
    )


def base_rootfs_dir() -> Path:
    """Where the debootstrapped tree of the current base recipe is kept (for bubblewrap)."""
    return cache_dir("images") / base_image_tag().split(":")[1] / "rootfs"


def built_base_rootfs() -> Path | None:
    """The debootstrapped base tree if it has been built completely, else ``None``.

    SWE tasks pass it as ``rootfs`` to the bubblewrap sandbox, so commands there see the
    same Debian userland as in the Docker images; ``None`` leaves the sandbox on the host's
    ``/`` (read-only).
    """
    base = base_rootfs_dir()
    return base if (base.parent / "rootfs.complete").exists() else None


def build_base_rootfs(*, mirror: str | None = None, progress: Progress = _quiet) -> Path:
    """Debootstrap the base tree into the cache (reused when complete); returns its path."""
    target = base_rootfs_dir()
    done = target.parent / "rootfs.complete"
    if done.exists():
        return target
    if os.geteuid() != 0:
        raise ConfigError("building the base image runs debootstrap, which needs root")
    if shutil.which("debootstrap") is None:
        raise DependencyError("debootstrap is not installed; `apt-get install -y debootstrap`")
    mirror = mirror or debian_mirror()
    if target.exists():
        shutil.rmtree(target)
    progress(f"debootstrap {BASE_SUITE} from {mirror} (about 2 minutes)")
    cmd = ["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
           BASE_SUITE, str(target), mirror]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ImageBuildError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    _add_user(target)
    for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for p in (target / junk).glob("*"):
            if p.is_file():
                p.unlink()
    done.write_text(base_image_tag() + "\n")
    return target


def ensure_base_image(*, mirror: str | None = None, progress: Progress = _quiet, client=None) -> str:
    """The base image's tag, building it first if this engine does not have it yet."""
    client = client or docker_client()
    tag = base_image_tag()
    if _image_exists(client, tag):
        return tag
    rootfs = build_base_rootfs(mirror=mirror, progress=progress)
    progress(f"docker import {tag}")
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
    imp = subprocess.run(
        ["docker", "import", "-c", f"LABEL {IMAGE_LABEL}=1 {RECIPE_LABEL}={tag.split(':')[1]}",
         "-c", "ENV LANG=C.UTF-8", "-c", 'CMD ["/bin/bash"]', "-", tag],
        stdin=tar.stdout, capture_output=True, text=True,
    )
    tar.stdout.close()
    tar.wait()
    if imp.returncode != 0 or tar.returncode != 0:
        raise ImageBuildError(f"docker import failed: {imp.stderr.strip()}")
    return tag


# --- repository images ------------------------------------------------------------------


@dataclass(frozen=True)
class RepoImageSpec:
    """What a repository's environment image holds.

    Attributes:
        name: Short name used in the tag (``[a-z0-9._-]``), e.g. ``"toolz-0.12.1"``.
        repo_dir: Host folder with a git repository; its committed tree at ``HEAD`` plus the
            whole ``.git`` is copied to ``/testbed``.
        requirements: pip requirement specifiers installed into the image (as wheels built on
            the host, then installed offline). Empty: nothing beyond the base image.
        install_commands: Shell commands run as root in ``/testbed`` at build time, offline,
            after the wheels (e.g. ``"pip-install --no-deps -e ."``: ``pip-install`` is the
            offline pip wrapper the image provides).
    """

    name: str
    repo_dir: Path
    requirements: tuple[str, ...] = ()
    install_commands: tuple[str, ...] = ()
    extra_labels: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", self.name):
            raise ConfigError(f"image name {self.name!r} must match [a-z0-9][a-z0-9._-]*")


def _git(repo: Path, *args: str) -> str:
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise ImageBuildError(f"git {' '.join(args)} in {repo} failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


def fetch_wheels(requirements: Sequence[str], dest: Path, *, progress: Progress = _quiet) -> list[Path]:
    """Build or download wheels for ``requirements`` (and pip itself) into ``dest`` on the host.

    Wheels are made for this host's Python; the base image's Debian python3 is the same
    minor version (3.11) on this machine. Returns the wheel paths, sorted.
    """
    dest.mkdir(parents=True, exist_ok=True)
    reqs = ["pip", *requirements]
    progress(f"pip wheel {' '.join(reqs)}")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "-w", str(dest), *reqs],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise ImageBuildError(f"pip wheel {' '.join(reqs)} failed:\n{proc.stderr[-3000:]}")
    return sorted(dest.glob("*.whl"))


def repo_image_tag(spec: RepoImageSpec, base_tag: str) -> str:
    """The content-hash tag of ``spec`` on top of ``base_tag``."""
    repo = Path(spec.repo_dir)
    recipe = {"base": base_tag, "head": _git(repo, "rev-parse", "HEAD"),
              "refs": _git(repo, "for-each-ref", "--format=%(refname) %(objectname)"),
              "requirements": list(spec.requirements), "install": list(spec.install_commands)}
    return f"pope-env/repo-{spec.name}:{_digest(recipe)}"


_PIP_WRAPPER = """#!/bin/sh
# Offline pip: run pip from its wheel, only from the wheels baked into this image.
exec python3 "$(ls /opt/wheels/pip-*.whl | head -n1)/pip" install --no-index \\
    --find-links /opt/wheels --break-system-packages --root-user-action=ignore \\
    --disable-pip-version-check "$@"
"""


def ensure_repo_image(spec: RepoImageSpec, *, base_tag: str | None = None, progress: Progress = _quiet,
                      client=None) -> str:
    """The tag of ``spec``'s image, building it offline first if this engine lacks it."""
    client = client or docker_client()
    base_tag = base_tag or ensure_base_image(progress=progress, client=client)
    tag = repo_image_tag(spec, base_tag)
    if _image_exists(client, tag):
        return tag
    with tempfile.TemporaryDirectory(prefix="pope-env-image-") as tmp:
        ctx = Path(tmp)
        wheels = ctx / "wheels"
        wheels.mkdir()
        fetch_wheels(spec.requirements, wheels, progress=progress)  # pip itself at least
        progress(f"copy {spec.repo_dir} (git clone)")
        subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(spec.repo_dir), str(ctx / "testbed")],
                       check=True, capture_output=True)
        # keep every ref of the source (instances may sit on different commits/branches)
        subprocess.run(["git", "-C", str(ctx / "testbed"), "fetch", "-q", str(spec.repo_dir),
                        "+refs/*:refs/*", "--update-head-ok"], check=True, capture_output=True)
        (ctx / "pip-install").write_text(_PIP_WRAPPER)
        reqs = " ".join(_shell_quote(r) for r in spec.requirements)
        run_lines = [f"RUN pip-install {reqs}"] if spec.requirements else []
        run_lines += [f"RUN cd {TESTBED} && {cmd}" for cmd in spec.install_commands]
        labels = {IMAGE_LABEL: "1", RECIPE_LABEL: tag.split(":")[1], **spec.extra_labels}
        label_line = " ".join(f"{k}={json.dumps(v)}" for k, v in labels.items())
        dockerfile = "\n".join([
            f"FROM {base_tag}",
            f"LABEL {label_line}",
            "COPY wheels /opt/wheels",
            "COPY pip-install /usr/local/bin/pip-install",
            "RUN chmod 755 /usr/local/bin/pip-install",
            f"COPY --chown={SANDBOX_UID}:{SANDBOX_UID} testbed {TESTBED}",
            *run_lines,
            # build artefacts of the install commands (egg-info, ...) must not enter diffs
            f"RUN cd {TESTBED} && git ls-files --others --exclude-standard --directory >> .git/info/exclude"
            f" && chown -R {SANDBOX_UID}:{SANDBOX_UID} {TESTBED}",
            f"WORKDIR {TESTBED}",
        ]) + "\n"
        (ctx / "Dockerfile").write_text(dockerfile)
        progress(f"docker build {tag} (network none)")
        try:
            client.images.build(path=str(ctx), tag=tag, network_mode="none", rm=True, forcerm=True)
        except Exception as exc:  # docker.errors.BuildError carries the build log
            log = "".join(str(x.get("stream", x.get("error", ""))) for x in getattr(exc, "build_log", []) or [])
            raise ImageBuildError(f"docker build of {tag} failed: {exc}\n{log[-4000:]}") from exc
    return tag


def _shell_quote(s: str) -> str:
    import shlex

    return shlex.quote(s)


def pope_images(client=None) -> list[str]:
    """Tags of every image pope-env built on this engine."""
    client = client or docker_client()
    return sorted(t for img in client.images.list(filters={"label": f"{IMAGE_LABEL}=1"}) for t in img.tags)


def main() -> None:  # pragma: no cover - `python -m pope_env.swe.images`
    print(ensure_base_image(progress=lambda m: print(m, file=sys.stderr)))


if __name__ == "__main__":  # pragma: no cover
    main()
