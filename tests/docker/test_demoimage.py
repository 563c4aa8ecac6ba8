"""The demo image: built from the host's busybox, idempotent, and able to run the seed demos.

Every image built here has a unique tag (nsgtest-demoimage-*), so the shared
nsgraph-demo:latest and any local alpine are never touched. Ground truth comes
from `docker image inspect`, `docker inspect` and /proc/<pid>/ns/* on the host.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import io
import time
import uuid

import pytest

from webapp.demos import image as D


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PREFIX = "nsgtest-demoimage"


def unique() -> str:
    return "%s-%s" % (PREFIX, uuid.uuid4().hex[:8])


def image_inspect(ref: str) -> dict:
    out = subprocess.run(["docker", "image", "inspect", ref], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    return json.loads(out)[0]


@pytest.fixture
def tags(docker_client):
    """Image tags this test created; removed at the end."""
    made = []
    yield made
    for t in made:
        try:
            docker_client.images.remove(t, force=True)
        except Exception:
            pass


@pytest.fixture
def containers(docker_client):
    made = []
    yield made
    for c in made:
        try:
            c.remove(force=True)
        except Exception:
            pass


@pytest.fixture(scope="module")
def busybox():
    path = shutil.which("busybox") or D.BUSYBOX_PATH
    if not os.path.exists(path):
        pytest.fail("busybox is missing: apt-get install busybox-static", pytrace=False)
    return path


def test_rootfs_tar_layout(busybox):
    data = D.build_rootfs_tar(busybox)
    assert data == D.build_rootfs_tar(busybox), "the tar should be reproducible"
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["bin/busybox"].isfile() and members["bin/busybox"].mode & 0o111
    assert members["bin/busybox"].size == os.path.getsize(busybox)
    for d in ("proc", "sys", "dev", "etc", "tmp"):
        assert members[d].isdir()
    assert members["tmp"].mode == 0o1777
    for applet in D.REQUIRED_APPLETS:
        links = [m for n, m in members.items() if n.rsplit("/", 1)[-1] == applet]
        assert links and all(m.issym() and m.linkname == "/bin/busybox" for m in links), applet
    # every link names an applet this busybox really has
    listed = set(subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout.split())
    assert {n.rsplit("/", 1)[-1] for n, m in members.items() if m.issym()} <= listed
    assert all(not n.startswith("/") and ".." not in n.split("/") for n in members)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        passwd = tar.extractfile("etc/passwd").read().decode()
        group = tar.extractfile("etc/group").read().decode()
    assert passwd.startswith("root:x:0:0:") and group.startswith("root:x:0:")


def test_missing_busybox_says_how_to_fix(docker_client):
    with pytest.raises(D.DemoImageError, match="apt-get install busybox-static"):
        D.ensure_demo_image(docker_client, tag=unique() + ":x", busybox="/nonexistent/busybox",
                            prefer_alpine=False)


def test_build_is_idempotent_and_rebuilds_when_busybox_changes(docker_client, tags, busybox, tmp_path):
    tag = unique() + ":latest"
    tags.append(tag)
    steps = []
    assert D.ensure_demo_image(docker_client, steps.append, tag=tag, busybox=busybox) == tag
    assert any("building" in s for s in steps) and any("importing" in s for s in steps)
    info = image_inspect(tag)
    labels = info["Config"]["Labels"]
    assert labels[D.LABEL] == "1"
    assert labels[D.FINGERPRINT_LABEL] == D.busybox_fingerprint(busybox)
    assert any(e.startswith("PATH=") and "/sbin" in e for e in info["Config"]["Env"])
    first_id = info["Id"]

    steps.clear()
    assert D.ensure_demo_image(docker_client, steps.append, tag=tag, busybox=busybox) == tag
    assert image_inspect(tag)["Id"] == first_id
    assert not any("importing" in s for s in steps), steps

    # a different busybox (same program, one byte appended) makes the image stale
    other = tmp_path / "busybox"
    other.write_bytes(open(busybox, "rb").read() + b"\0")
    other.chmod(0o755)
    assert D.demo_image_status(docker_client, tag, str(other)) == "stale"
    steps.clear()
    D.ensure_demo_image(docker_client, steps.append, tag=tag, busybox=str(other))
    assert any("importing" in s for s in steps)
    assert image_inspect(tag)["Config"]["Labels"][D.FINGERPRINT_LABEL] == D.busybox_fingerprint(str(other))

    second_id = image_inspect(tag)["Id"]
    assert second_id != first_id

    steps.clear()
    D.ensure_demo_image(docker_client, steps.append, tag=tag, busybox=busybox, rebuild=True)
    assert any("importing" in s for s in steps)
    assert D.demo_image_status(docker_client, tag, busybox) == "current"
    # the images the rebuilds replaced are not left behind as dangling layers
    for old in (first_id, second_id):
        r = subprocess.run(["docker", "image", "inspect", old], capture_output=True, text=True, timeout=60)
        assert r.returncode != 0, "replaced image %s was left behind" % old[:19]


def test_local_alpine_is_preferred(docker_client, tags, busybox):
    # A stand-in repository name, so that the real `alpine` of other users is untouched.
    repo = unique()
    built = D.ensure_demo_image(docker_client, tag=repo + "-src:1", busybox=busybox)
    tags.append(built)
    assert D.find_local_alpine(docker_client, repo) is None
    docker_client.images.get(built).tag(repo, "3.99")
    tags.append(repo + ":3.99")
    assert D.find_local_alpine(docker_client, repo) == repo + ":3.99"
    assert D.ensure_demo_image(docker_client, alpine_repo=repo) == repo + ":3.99"
    docker_client.images.get(built).tag(repo, "latest")
    tags.append(repo + ":latest")
    assert D.ensure_demo_image(docker_client, alpine_repo=repo) == repo + ":latest"
    # asking for a tag means the busybox image, whatever else is there
    assert D.ensure_demo_image(docker_client, alpine_repo=repo, tag=built, busybox=busybox) == built


@pytest.fixture(scope="module")
def demo_image(docker_client, busybox):
    tag = unique() + ":latest"
    D.ensure_demo_image(docker_client, tag=tag, busybox=busybox)
    yield tag
    docker_client.images.remove(tag, force=True)


def _wait_logs(container, needle: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        out = container.logs().decode(errors="replace")
        if needle in out or time.monotonic() > deadline:
            return out
        time.sleep(0.1)


def _ns_links(pid: int) -> dict:
    return {t: os.readlink("/proc/%d/ns/%s" % (pid, t)) for t in ("net", "pid", "mnt", "uts", "ipc")}


def test_seed_demo_ls_proc_self_ns(docker_client, demo_image, containers):
    """`ls -la /proc/self/ns/` inside shows the container's namespaces, as the host sees them."""
    c = docker_client.containers.run(demo_image, ["sh", "-c", "ls -la /proc/self/ns/; echo DONE; sleep 60"],
                                     name=unique(), detach=True)
    containers.append(c)
    out = _wait_logs(c, "DONE")
    init_pid = docker_client.api.inspect_container(c.id)["State"]["Pid"]
    truth = _ns_links(init_pid)
    host = _ns_links(os.getpid())
    for ns_type, link in truth.items():
        assert "%s -> %s" % (ns_type, link) in out, (ns_type, out)
        assert link != host[ns_type], "the container should not share the test process's %s namespace" % ns_type


def test_seed_demo_hostname_ip_ps(docker_client, demo_image, containers):
    c = docker_client.containers.run(demo_image, ["sh", "-c", "hostname; ip addr; ps aux; echo DONE; sleep 60"],
                                     name=unique(), detach=True)
    containers.append(c)
    out = _wait_logs(c, "DONE")
    info = docker_client.api.inspect_container(c.id)
    lines = out.splitlines()
    assert lines[0] == info["Config"]["Hostname"]
    assert "inet 127.0.0.1/8" in out
    ip = info["NetworkSettings"]["IPAddress"]
    assert ip and ("inet %s/" % ip) in out
    procs = D._ps_commands(out[out.index("PID"):out.index("DONE")])
    assert 1 in procs and "hostname; ip addr; ps aux" in procs[1]


def test_seed_demo_docker_exec_ps_aux(docker_client, demo_image, containers):
    name = unique()
    c = docker_client.containers.run(demo_image, ["sleep", "300"], name=name, detach=True)
    containers.append(c)
    res = c.exec_run(["ps", "aux"])
    assert res.exit_code == 0, res.output  # busybox ps accepts (and ignores) `aux`
    procs = D._ps_commands(res.output.decode())
    assert procs.get(1) == "sleep 300"
    assert any(cmd.startswith("ps") for cmd in procs.values())
    # the listing is the container's process list: `docker top` (host view) has the same processes
    # apart from the short-lived ps itself
    top = c.top()
    assert len(top["Processes"]) == len(procs) - 1
    # and ps ran in the container's pid namespace
    init_pid = docker_client.api.inspect_container(c.id)["State"]["Pid"]
    res = c.exec_run(["readlink", "/proc/self/ns/pid"])
    assert res.output.decode().strip() == os.readlink("/proc/%d/ns/pid" % init_pid)


def test_check_demo_image_passes_and_cleans_up(docker_client, demo_image):
    prefix = unique()
    results = D.check_demo_image(docker_client, demo_image, name_prefix=prefix)
    assert set(results) == {"ls_ns", "sh", "exec_ps"}
    left = docker_client.containers.list(all=True, filters={"name": prefix})
    assert left == []


def test_check_demo_image_rejects_a_broken_image(docker_client, tags, containers):
    """An image without ps must fail the check with a message naming the demo."""
    tag = unique() + ":broken"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        ti = tarfile.TarInfo("bin/busybox")
        data = open(D.BUSYBOX_PATH, "rb").read()
        ti.size, ti.mode = len(data), 0o755
        tar.addfile(ti, io.BytesIO(data))
        for applet in ("sh", "ls", "sleep", "hostname", "ip"):
            ln = tarfile.TarInfo("bin/" + applet)
            ln.type, ln.linkname = tarfile.SYMTYPE, "/bin/busybox"
            tar.addfile(ln)
        for d in ("proc", "sys", "dev", "etc", "tmp"):
            di = tarfile.TarInfo(d)
            di.type, di.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(di)
    repo, version = D.split_tag(tag)
    docker_client.api.import_image_from_data(buf.getvalue(), repository=repo, tag=version,
                                             changes=["ENV PATH=/bin"])
    tags.append(tag)
    prefix = unique()
    with pytest.raises(D.DemoImageError, match="ps aux"):
        D.check_demo_image(docker_client, tag, name_prefix=prefix)
    assert docker_client.containers.list(all=True, filters={"name": prefix}) == []


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "tracer.cli", "demo-image", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300, env=env)


def test_cli_builds_checks_and_prints_the_reference(docker_client, tags):
    tag = unique() + ":cli"
    tags.append(tag)
    r = _cli("--tag", tag)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == tag
    assert "importing" in r.stderr and "runs the seed demos" in r.stderr
    assert image_inspect(tag)["Config"]["Labels"][D.LABEL] == "1"
    r = _cli("--tag", tag, "--quiet")
    assert (r.returncode, r.stdout.strip(), r.stderr) == (0, tag, "")


def test_cli_without_docker_exits_1_with_a_fix(tmp_path):
    env = dict(os.environ, DOCKER_HOST="unix://%s/docker.sock" % tmp_path)
    r = _cli("--quiet", env=env)
    assert r.returncode == 1
    assert "start dockerd" in r.stderr and r.stdout == ""
