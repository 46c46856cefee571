"""Sandboxes (Docker and bubblewrap), offline images and the orphan reaper, on real engines."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

from pope_env.errors import ConfigError, EnvStateError, UnknownNameError
from pope_env.sandbox import SandboxLimits, make_sandbox
from pope_env.sandbox.base import ExecResult, Sandbox
from pope_env.sandbox.reaper import OWNER_LABELS, SANDBOX_LABEL, owner_labels, process_start_ticks, reap_orphans
from pope_env.swe.images import base_image_tag, built_base_rootfs, debian_mirror
from swe_helpers import docker_or_skip, tiny_image, tiny_repo  # noqa: F401  (fixtures)

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")


@pytest.fixture(params=[pytest.param("docker", marks=pytest.mark.docker), pytest.param("bwrap", marks=needs_bwrap)])
def open_sandbox(request, tiny_repo):
    """Starts sandboxes of one backend on the tiny repository; closes them after the test."""
    started = []
    image = request.getfixturevalue("tiny_image") if request.param == "docker" else None
    rootfs = built_base_rootfs()
    if request.param == "bwrap" and rootfs is None:
        pytest.skip("the debootstrapped base tree is not built (`pope-env swe build-images`)")

    def start(**kwargs) -> Sandbox:
        sb = make_sandbox(image=image, repo_dir=tiny_repo, backend=request.param, rootfs=rootfs, **kwargs)
        started.append(sb)
        return sb

    start.backend = request.param
    yield start
    for sb in started:
        sb.close()


# --- both backends: the protocol ---------------------------------------------------------


def test_exec_runs_in_repo_as_non_root(open_sandbox):
    sb = open_sandbox()
    assert isinstance(sb, Sandbox)
    res = sb.exec("id -u; pwd; git rev-parse HEAD; echo oops >&2; exit 3")
    assert isinstance(res, ExecResult)
    uid, cwd, head = res.stdout.split()
    assert (uid, cwd, head) == ("1000", "/testbed", sb.base_commit)
    assert res.stderr == "oops\n" and res.exit_code == 3 and not res.timed_out and res.duration_s > 0


def test_files_and_diff_include_new_files(open_sandbox):
    sb = open_sandbox()
    assert sb.diff() == ""
    assert "return a - b" in sb.read_file("calc/__init__.py")
    sb.write_file("calc/__init__.py", sb.read_file("calc/__init__.py").replace("a - b", "a + b"))
    sb.write_file("notes/new file.txt", "ünïcode\n")
    assert sb.read_file("/testbed/notes/new file.txt") == "ünïcode\n"
    diff = sb.diff()
    assert "+    return a + b" in diff and "b/notes/new file.txt" in diff
    with pytest.raises(FileNotFoundError):
        sb.read_file("does/not/exist.py")


def test_timeout_kills_the_command(open_sandbox):
    sb = open_sandbox()
    res = sb.exec("echo start; sleep 60; echo never", timeout=1)
    assert res.timed_out and res.exit_code in (124, 137)
    assert res.stdout == "start\n" and res.duration_s < 10
    assert "timed out" in res.output
    assert sb.exec("echo alive").stdout == "alive\n"


def test_output_is_truncated_and_the_cut_reported(open_sandbox):
    sb = open_sandbox(limits=SandboxLimits(output_bytes=1000))
    res = sb.exec("head -c 5000 /dev/zero | tr '\\0' x; echo err >&2")
    assert len(res.stdout) + len(res.stderr) == 1000
    assert res.truncated_bytes == 5000 + 4 - 1000
    assert f"{res.truncated_bytes} more bytes not shown" in res.output


def test_base_commit_is_checked_out(open_sandbox, tiny_repo):
    sb = open_sandbox(base_commit="main")
    assert sb.base_commit == subprocess.run(["git", "-C", str(tiny_repo), "rev-parse", "main"],
                                            capture_output=True, text=True).stdout.strip()


def test_close_is_idempotent_and_final(open_sandbox):
    sb = open_sandbox()
    sb.close()
    sb.close()
    with pytest.raises(EnvStateError):
        sb.exec("true")


# --- Docker specifics ----------------------------------------------------------------------


@pytest.mark.docker
def test_docker_container_is_labelled_limited_and_removed(tiny_image):
    import docker

    client = docker_or_skip()
    limits = SandboxLimits(memory_mb=300, cpus=0.5, pids=50)
    with make_sandbox(image=tiny_image, limits=limits, backend="docker") as sb:
        c = client.containers.get(sb.container_id)
        assert c.labels[SANDBOX_LABEL] == "1"
        assert c.labels[OWNER_LABELS[0]] == str(os.getpid())
        host = c.attrs["HostConfig"]
        assert host["NetworkMode"] == "none"
        assert host["Memory"] == 300 << 20 and host["PidsLimit"] == 50 and host["NanoCpus"] == 5 * 10**8
        assert host["CapDrop"] == ["ALL"]
        cid = sb.container_id
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(cid)


@pytest.mark.docker
def test_docker_write_file_respects_the_sandbox_user(tiny_image):
    with make_sandbox(image=tiny_image, backend="docker") as sb:
        with pytest.raises(PermissionError):
            sb.write_file("/etc/passwd", "root::0:0::/root:/bin/bash\n")
        assert "pope" in sb.read_file("/etc/passwd")
        sb.exec("ln -s /etc/passwd evil")
        with pytest.raises(PermissionError):
            sb.write_file("evil", "x")


@pytest.mark.docker
def test_repo_image_is_reused_by_content_hash(tiny_repo, tiny_image):
    from pope_env.swe.images import IMAGE_LABEL, RepoImageSpec, ensure_repo_image, pope_images

    t0 = time.perf_counter()
    again = ensure_repo_image(RepoImageSpec("tiny-calc", tiny_repo))
    assert again == tiny_image and time.perf_counter() - t0 < 5
    assert base_image_tag() in pope_images() and tiny_image in pope_images()
    labels = docker_or_skip().images.get(tiny_image).labels
    assert labels[IMAGE_LABEL] == "1"


@pytest.mark.docker
def test_missing_image_is_a_clear_error():
    from pope_env.sandbox.docker import SandboxError

    docker_or_skip()
    with pytest.raises(SandboxError, match="build-images"):
        make_sandbox(image="pope-env/no-such-image:0", backend="docker")


@pytest.mark.docker
def test_reaper_removes_orphans_and_spares_live_owners(tiny_image):
    import docker

    client = docker_or_skip()
    dead = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.5)"])
    dead_labels = owner_labels(dead.pid)
    dead.wait()
    assert process_start_ticks(dead.pid) is None
    orphan = client.containers.run(tiny_image, ["sleep", "600"], detach=True, network_mode="none",
                                   labels={SANDBOX_LABEL: "1", **dead_labels})
    with make_sandbox(image=tiny_image, backend="docker") as live:
        reaped = reap_orphans(client)
        assert orphan.name in {r.name for r in reaped}
        with pytest.raises(docker.errors.NotFound):
            client.containers.get(orphan.id)
        assert live.exec("echo alive").stdout == "alive\n"


# --- no engine needed --------------------------------------------------------------------


def test_debian_mirror_reads_both_source_formats(tmp_path):
    deb822 = tmp_path / "debian.sources"
    deb822.write_text("Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n\n"
                      "Types: deb\nURIs: http://mirror.example/debian-security\n")
    assert debian_mirror([deb822]) == "http://mirror.example/debian"
    legacy = tmp_path / "sources.list"
    legacy.write_text("# comment\ndeb [arch=amd64] http://ftp.example.org/debian bookworm main\n")
    assert debian_mirror([tmp_path / "missing", legacy]) == "http://ftp.example.org/debian"
    with pytest.raises(ConfigError, match="mirror"):
        debian_mirror([tmp_path / "missing"])


def test_bad_limits_and_backend_are_clear_errors():
    with pytest.raises(ConfigError, match="memory_mb"):
        SandboxLimits(memory_mb=0)
    with pytest.raises(ConfigError, match="cpus"):
        SandboxLimits(cpus=0)
    with pytest.raises(UnknownNameError, match="podman"):
        make_sandbox(image="x", backend="podman")
    with pytest.raises(ConfigError, match="repo_dir"):
        make_sandbox(backend="bwrap")


@needs_bwrap
def test_bwrap_root_without_mount_points_is_a_clear_error(tiny_repo, tmp_path):
    """The root comes from the caller (the sandbox layer knows nothing of SWE images); one
    that lacks the mount points fails at once, naming them and where a good root comes from."""
    from pope_env.sandbox.bwrap import BwrapSandbox

    with pytest.raises(ConfigError, match=r"has no /testbed, /home/pope, /tmp.*built_base_rootfs"):
        BwrapSandbox(tiny_repo, rootfs=tmp_path)


@needs_bwrap
def test_bwrap_reaper_removes_a_dead_owners_folder(tiny_repo, tmp_path):
    script = (f"import os, sys; sys.path.insert(0, {os.getcwd()!r})\n"
              "from pope_env.sandbox.bwrap import BwrapSandbox\n"
              "from pope_env.swe.images import built_base_rootfs\n"
              f"sb = BwrapSandbox({str(tiny_repo)!r}, rootfs=built_base_rootfs())\n"
              "print(sb.root, flush=True)\n"
              "os.kill(os.getpid(), 9)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    root = out.stdout.strip()
    assert root and os.path.isdir(root), out.stderr
    removed = {r.name for r in reap_orphans(client=None)}
    assert root in removed and not os.path.exists(root)


@pytest.mark.docker
@pytest.mark.slow
def test_repo_image_installs_wheels_fetched_on_the_host_without_network(tiny_repo):
    """A requirement becomes a wheel on the host (`pip wheel`) and is installed offline in the
    image build (network none); the sandbox imports it and still has no network."""
    from pope_env.swe.images import RepoImageSpec, ensure_repo_image

    docker_or_skip()
    tag = ensure_repo_image(RepoImageSpec("tiny-calc-six", tiny_repo, requirements=("six==1.16.0",)))
    with make_sandbox(image=tag, backend="docker") as sb:
        res = sb.exec("python3 -c 'import six; print(six.__version__)'; ls /opt/wheels; git status --porcelain")
        assert res.stdout.splitlines()[0] == "1.16.0", res.output
        assert "six-1.16.0-py2.py3-none-any.whl" in res.stdout
        assert not [line for line in res.stdout.splitlines() if line.startswith("??")]  # clean work tree
