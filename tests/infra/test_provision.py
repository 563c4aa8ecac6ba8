"""scripts/provision.sh, run for real on a clean Debian 12 root file system.

No Vagrant box can be downloaded here and there is no hypervisor for Vagrant, so
the "VM" is a container made from a debootstrap'd Debian 12, with nearly all
capabilities (GUIDE.md: --privileged fails on this machine).  The project is
copied in (as Vagrant's rsync folder does), provision.sh runs inside, and then,
from the host: the dashboard answers on its forwarded port (401 without the
token, 200 with it), the dashboard process is alive where the script says, and
`nsgraph trace --json` inside the container reports an `unshare` made inside it,
checked against /proc on both sides.

Caches, so a rerun takes minutes, not a quarter of an hour:
  /var/cache/nsgraph/provision-rootfs-<hash>.tar  the debootstrap result, keyed by
      a hash of its inputs (suite, variant, mirror, debootstrap version, recipe)
  /var/cache/nsgraph/provision-apt  downloaded .debs, mounted into the container
      as /var/cache/apt/archives (it changes what is downloaded, never what is
      installed: the root file system itself starts clean every time)
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid

import pytest

from conftest import REPO, require

pytestmark = pytest.mark.provision

CACHE = "/var/cache/nsgraph"
SUITE = "bookworm"
VARIANT = "minbase"
MIRROR = "http://deb.debian.org/debian"
# Bump when the way the root file system is made changes.
RECIPE = "1"
STATE_DIR = "/var/lib/nsgraph"
LOCAL_CA_DIR = "/usr/local/share/ca-certificates"
NSGRAPH = STATE_DIR + "/venv/bin/nsgraph"
# Everything nsgraph needs except what is not project source.
COPY_EXCLUDES = (".git", ".venv", "*.egg-info", "__pycache__", ".pytest_cache", "node_modules")

T0 = time.monotonic()


_capture = None  # pytest's capture manager, set by the autouse fixture below


@pytest.fixture(autouse=True, scope="module")
def _progress_output(pytestconfig):
    global _capture
    _capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    yield
    _capture = None


def progress(msg: str) -> None:
    # Shown as it happens, capture or not: this test takes minutes.
    line = "[provision-test +%5.1fs] %s\n" % (time.monotonic() - T0, msg)
    if _capture is not None:
        with _capture.global_and_fixture_disabled():
            sys.stderr.write(line)
            sys.stderr.flush()
    else:
        sys.stderr.write(line)


def run(cmd, timeout=120, check=True, **kw):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise AssertionError("%s failed (%d):\n%s%s" % (" ".join(cmd), proc.returncode,
                                                        proc.stdout[-3000:], proc.stderr[-3000:]))
    return proc


def _debootstrap_version() -> str:
    return run(["dpkg-query", "-W", "-f=${Version}", "debootstrap"]).stdout.strip()


def rootfs_tarball() -> str:
    """The cached Debian root file system tarball, built by debootstrap when missing."""
    key = hashlib.sha256("\n".join([SUITE, VARIANT, MIRROR, _debootstrap_version(), RECIPE]).encode()).hexdigest()[:16]
    path = os.path.join(CACHE, "provision-rootfs-%s-%s.tar" % (SUITE, key))
    if os.path.exists(path):
        progress("root file system from cache: %s" % path)
        return path
    os.makedirs(CACHE, exist_ok=True)
    build = tempfile.mkdtemp(prefix="nsgtest-provision-rootfs-", dir=CACHE)
    try:
        progress("debootstrap %s (%s) into %s, about 30 s" % (SUITE, VARIANT, build))
        started = time.monotonic()
        run(["debootstrap", "--variant=" + VARIANT, SUITE, build, MIRROR], timeout=900)
        progress("debootstrap took %.0f s" % (time.monotonic() - started))
        tmp = path + ".%s.tmp" % uuid.uuid4().hex[:8]
        # --one-file-system: never pack a /proc or /sys debootstrap left mounted.
        run(["tar", "--one-file-system", "--numeric-owner", "-C", build, "-cf", tmp, "."], timeout=300)
        os.replace(tmp, path)
    finally:
        for sub in ("proc", "sys", "dev/pts"):
            subprocess.run(["umount", "-l", os.path.join(build, sub)], capture_output=True)
        shutil.rmtree(build, ignore_errors=True)
    return path


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


class Container:
    def __init__(self, name: str):
        self.name = name

    def exec(self, *cmd, timeout=120, check=True):
        return run(["docker", "exec", self.name, *cmd], timeout=timeout, check=check)

    def sh(self, script: str, timeout=120, check=True):
        return self.exec("sh", "-c", script, timeout=timeout, check=check)


def run_provision(name: str, host_port: int) -> tuple[int, str, float]:
    started = time.monotonic()
    # As Vagrant's shell provisioner does it: an uploaded copy in /tmp, with the
    # Vagrantfile's environment (tests/infra/test_vagrant.py checks that it sets these).
    proc = subprocess.Popen(["docker", "exec", "-e", "NSGRAPH_REPO=/opt/nsgraph",
                             "-e", "NSGRAPH_URL_PORT=%d" % host_port, name, "sh", "-c",
                             "install -m 0755 /opt/nsgraph/scripts/provision.sh /tmp/vagrant-shell && "
                             "exec /tmp/vagrant-shell"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = []
    for line in proc.stdout:
        output.append(line)
        progress("  | " + line.rstrip())
    rc = proc.wait(timeout=60)
    took = time.monotonic() - started
    progress("provision.sh exited %d after %.0f s" % (rc, took))
    return rc, "".join(output), took


# The container's PID 1 script.  "plain": a machine without systemd (docker-init
# reaps orphans, as any init does).  "systemd": systemd as PID 1, like the
# Vagrant VM; systemd is installed first, as the VM's image has it.
BOOT = r"""
set -e
# A fresh machine has writable cgroups; Docker mounts them read-only into
# containers (each v1 controller, or the v2 tree), and the nested dockerd could
# then not start containers ("mkdir /sys/fs/cgroup/cpuset/docker: read-only").
mount -o remount,rw /sys/fs/cgroup
grep -E ' - cgroup2? ' /proc/self/mountinfo | cut -d' ' -f5 |
  while read -r m; do mount -o remount,rw,bind "$m"; done
if [ "$1" = systemd ]; then
  if [ ! -x /lib/systemd/systemd ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd systemd-sysv dbus >/dev/null
  fi
  exec /lib/systemd/systemd
fi
exec sleep infinity
"""
# CI runs "plain" only: tests/infra/test_vagrant_up.py provisions a real VM under its real
# systemd (first run, `vagrant provision` again, the unit back after a reboot), which
# covers what the systemd container did, at two minutes less.  The container variant
# stays for a quick check without a VM: NSGRAPH_PROVISION_MACHINES=plain,systemd.
MACHINES = tuple(m for m in os.environ.get("NSGRAPH_PROVISION_MACHINES", "plain").split(",") if m)
if not set(MACHINES) <= {"plain", "systemd"}:
    raise pytest.UsageError("NSGRAPH_PROVISION_MACHINES: plain and/or systemd, not %r" % ",".join(MACHINES))


def host_port_of(name: str) -> int:
    out = run(["docker", "port", name, "5000/tcp"]).stdout.strip().splitlines()[0]
    return int(out.rsplit(":", 1)[1])


def wait_booted(ctr: "Container", kind: str, timeout: float = 240) -> None:
    if kind != "systemd":
        return
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        state = ctr.exec("systemctl", "is-system-running", check=False).stdout.strip()
        if state in ("running", "degraded"):
            return
        time.sleep(1)
    raise AssertionError("systemd did not finish booting (state %r); docker logs %s" % (state, ctr.name))


def dashboard_pid(ctr: "Container", kind: str) -> str:
    if kind == "systemd":
        return ctr.exec("systemctl", "show", "-p", "MainPID", "--value", "nsgraph.service").stdout.strip()
    return ctr.exec("cat", "/run/nsgraph/serve.pid").stdout.strip()


@pytest.fixture(scope="module", params=MACHINES)
def provisioned(request, root, docker_client):
    kind = request.param
    for tool in ("debootstrap", "tar"):
        require(shutil.which(tool) is not None, "%s is not installed (apt-get install -y %s)" % (tool, tool))
    require(os.path.exists("/sys/kernel/btf/vmlinux"), "the kernel has no BTF (/sys/kernel/btf/vmlinux)")

    tarball = rootfs_tarball()
    name = "nsgtest-provision-%s-%s" % (kind, uuid.uuid4().hex[:8])
    image = name + ":rootfs"
    apt_cache = os.path.join(CACHE, "provision-apt")
    os.makedirs(os.path.join(apt_cache, "partial"), exist_ok=True)
    timings = {}
    try:
        progress("docker import %s as %s" % (os.path.basename(tarball), image))
        run(["docker", "import", tarball, image], timeout=300)
        if kind == "systemd":
            init = ["--tmpfs", "/run", "--tmpfs", "/run/lock", "-e", "container=docker"]
        else:
            # sleep as PID 1 would never reap a stopped dashboard (a zombie).
            init = ["--init"]
        run(["docker", "run", "-d", "--name", name, "--hostname", "nsgraph-demo", *init,
             # GUIDE.md: what a container needs for eBPF, tracefs and a nested dockerd here.
             "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE", "--security-opt", "seccomp=unconfined",
             "--security-opt", "apparmor=unconfined",
             # Like the VM's port forward: the dashboard's port reaches the host's loopback only.
             "-p", "127.0.0.1::5000",
             # A nested dockerd cannot put overlay2 on the container's own overlayfs;
             # a volume is a plain directory on the host's file system.
             "-v", "/var/lib/docker",
             "-v", "%s:/var/cache/apt/archives" % apt_cache,
             image, "sh", "-c", BOOT, "boot", kind], timeout=120)
        ctr = Container(name)
        started = time.monotonic()
        wait_booted(ctr, kind)
        timings["boot"] = time.monotonic() - started
        ctr.exec("mkdir", "-p", "/opt/nsgraph", LOCAL_CA_DIR)
        # The network here inspects TLS with its own CA, which this host trusts; a
        # machine on this network would be set up to trust it too (pip needs it).
        for crt in sorted(os.listdir(LOCAL_CA_DIR)) if os.path.isdir(LOCAL_CA_DIR) else []:
            if crt.endswith(".crt"):
                run(["docker", "cp", os.path.join(LOCAL_CA_DIR, crt), "%s:%s/" % (name, LOCAL_CA_DIR)])
        excludes = [arg for pat in COPY_EXCLUDES for arg in ("--exclude", pat)]
        tar = subprocess.Popen(["tar", "-C", REPO, *excludes, "-cf", "-", "."], stdout=subprocess.PIPE)
        subprocess.run(["docker", "cp", "-", name + ":/opt/nsgraph"], stdin=tar.stdout, check=True, timeout=120)
        tar.stdout.close()
        assert tar.wait() == 0

        host_port = host_port_of(name)
        progress("running scripts/provision.sh in %s (cold cache: minutes of apt-get)" % name)
        rc, output, timings["provision"] = run_provision(name, host_port)
        assert rc == 0, "provision.sh failed:\n" + output[-4000:]
        yield {"kind": kind, "ctr": ctr, "name": name, "port": host_port, "output": output, "timings": timings}
    finally:
        progress("removing %s" % name)
        subprocess.run(["docker", "rm", "-f", "-v", name], capture_output=True, timeout=120)
        subprocess.run(["docker", "rmi", image], capture_output=True, timeout=120)


def _status_file(ctr: Container) -> dict:
    text = ctr.exec("cat", STATE_DIR + "/provision.status").stdout
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def test_dashboard_answers_with_token_only(provisioned):
    ctr, port = provisioned["ctr"], provisioned["port"]
    token = ctr.exec("cat", STATE_DIR + "/token").stdout.strip()
    assert len(token) >= 20
    mode = ctr.exec("stat", "-c", "%a", STATE_DIR + "/token").stdout.strip()
    assert mode == "600"
    base = "http://127.0.0.1:%d" % port
    assert http_status(base + "/api/status") == 401
    assert http_status(base + "/api/status?token=wrong" + token[:4]) == 401
    assert http_status(base + "/api/status?token=" + token) == 200

    # Provisioning ends with the URL, and the saved copy is the same URL.
    url = "%s/?token=%s" % (base, token)
    last = [l for l in provisioned["output"].splitlines() if l.strip()][-1]
    assert last == "nsgraph dashboard: " + url
    assert ctr.exec("cat", STATE_DIR + "/url").stdout.strip() == url


def test_dashboard_runs_as_a_service(provisioned):
    ctr, kind = provisioned["ctr"], provisioned["kind"]
    pid1 = ctr.exec("cat", "/proc/1/comm").stdout.strip()
    assert (pid1 == "systemd") == (kind == "systemd")
    pid = dashboard_pid(ctr, kind)
    assert pid.isdigit() and pid != "0"
    cmdline = ctr.exec("cat", "/proc/%s/cmdline" % pid).stdout.split("\0")
    assert "serve" in cmdline, cmdline
    assert any(arg.endswith("/nsgraph") for arg in cmdline[:cmdline.index("serve")]), cmdline
    assert "--allow-remote" in cmdline and cmdline[cmdline.index("--host") + 1] == "0.0.0.0"
    if kind == "systemd":
        assert _status_file(ctr)["service"] == "systemd"
        assert ctr.exec("systemctl", "is-enabled", "nsgraph.service").stdout.strip() == "enabled"
        assert ctr.exec("systemctl", "is-active", "nsgraph.service").stdout.strip() == "active"
        assert "systemd unit nsgraph.service" in provisioned["output"]
    else:
        assert _status_file(ctr)["service"] == "nohup"
        # Detached: its own session, so it outlives the provisioning shell.
        sid = ctr.exec("cat", "/proc/%s/stat" % pid).stdout.rsplit(")", 1)[1].split()[3]
        assert sid == pid
        assert "setsid nohup" in provisioned["output"] and "/var/log/nsgraph-serve.log" in provisioned["output"]


def test_docker_and_demo_image(provisioned):
    ctr = provisioned["ctr"]
    status = _status_file(ctr)
    progress("docker inside the container: %s; demo image: %s" % (status.get("docker"), status.get("demo_image")))
    info = ctr.exec("docker", "info", "--format", "{{.ServerVersion}} {{.Driver}}", check=False)
    # The script's verdict must match what the system says.
    if status["docker"] == "ok":
        assert info.returncode == 0, info.stderr
        assert status["demo_image"] == "ok", provisioned["output"][-3000:]
        images = ctr.exec("docker", "images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
        assert images, "demo-image reported success but no image exists"
        run_ns = ctr.exec("docker", "run", "--rm", images[0], "readlink", "/proc/self/ns/uts",
                          timeout=120).stdout.strip()
        own = ctr.exec("readlink", "/proc/self/ns/uts").stdout.strip()
        assert re.fullmatch(r"uts:\[\d+\]", run_ns) and run_ns != own
    else:
        assert info.returncode != 0
        assert status["docker"].startswith("unavailable: ")
        assert "Docker is unavailable" in provisioned["output"]
    # This machine can run a nested dockerd: provisioning must have managed it.
    assert status["docker"] == "ok"


def api(port: int, token: str, method: str, path: str, timeout: float = 30):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), method=method,
                                 data=b"{}" if method == "POST" else None,
                                 headers={"Authorization": "Bearer " + token,
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def test_seed_demo_runs_from_the_dashboard(provisioned):
    """What the README tells VM users to do: start a demo scenario in the dashboard."""
    ctr, port = provisioned["ctr"], provisioned["port"]
    token = ctr.exec("cat", STATE_DIR + "/token").stdout.strip()
    run_id = api(port, token, "POST", "/api/demos/ls-ns")["run_id"]
    deadline = time.monotonic() + 120
    run_state = {}
    while time.monotonic() < deadline:
        run_state = api(port, token, "GET", "/api/demos/runs/%s" % run_id)
        if run_state["status"] in ("succeeded", "failed"):
            break
        time.sleep(1)
    try:
        assert run_state.get("status") == "succeeded", run_state
        # The demo container's uts namespace, from its own `ls -la /proc/self/ns/`,
        # is not the machine's (read from the machine's /proc).
        shown = re.findall(r"uts:\[(\d+)\]", run_state["output"])
        machine = ctr.exec("readlink", "/proc/1/ns/uts").stdout.strip()
        assert shown and "uts:[%s]" % shown[0] != machine, run_state["output"]
    finally:
        api(port, token, "POST", "/api/demos/cleanup")


def test_trace_sees_unshare_inside(provisioned):
    ctr, name = provisioned["ctr"], provisioned["name"]
    # The first line is the tracer's pid inside, so it can be stopped by pid.
    tracer = subprocess.Popen(["docker", "exec", name, "sh", "-c",
                               'echo "$$"; exec %s trace --json --duration 150' % NSGRAPH],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    tracer_pid = int(tracer.stdout.readline())
    events: queue.Queue = queue.Queue()
    ready = threading.Event()
    errors = []

    def read_out():
        for line in tracer.stdout:
            try:
                events.put(json.loads(line))
            except ValueError:
                errors.append(line)

    def read_err():
        for line in tracer.stderr:
            errors.append(line)
            if line.startswith("Tracing"):
                ready.set()

    threading.Thread(target=read_out, daemon=True).start()
    threading.Thread(target=read_err, daemon=True).start()
    holder_pids = []
    holders = []
    try:
        assert ready.wait(120), "nsgraph trace did not start inside the container:\n" + "".join(errors[-20:])
        # The unshare'd shell stays alive (exec sleep) so both /proc views can be read.
        holder = subprocess.Popen(
            ["docker", "exec", name, "unshare", "--uts", "sh", "-c",
             'echo "$$ $(readlink /proc/$$/ns/uts)"; exec sleep 60'],
            stdout=subprocess.PIPE, text=True)
        holders.append(holder)
        vpid_s, uts = holder.stdout.readline().split()
        vpid = int(vpid_s)
        holder_pids.append(vpid)
        inode = int(re.fullmatch(r"uts:\[(\d+)\]", uts).group(1))
        assert uts != ctr.exec("readlink", "/proc/1/ns/uts").stdout.strip()

        match = None
        deadline = time.monotonic() + 30
        seen = []
        while match is None and time.monotonic() < deadline:
            try:
                ev = events.get(timeout=1)
            except queue.Empty:
                continue
            seen.append(ev)
            if ev.get("syscall") == "unshare" and ev.get("vpid") == vpid and ev.get("ns", {}).get("uts") == inode:
                match = ev
        assert match is not None, "no unshare event for pid %d uts %d among %d events: %s" % (
            vpid, inode, len(seen), [e for e in seen if e.get("syscall") == "unshare"][:5])
        assert match["comm"] == "unshare"
        assert "CLONE_NEWUTS" in match["flags"]
        # The event's pid is the host's view of the same process.
        with open("/proc/%d/status" % match["pid"]) as fh:
            nspid = [l.split()[1:] for l in fh if l.startswith("NSpid:")][0]
        assert int(nspid[-1]) == vpid
        assert os.readlink("/proc/%d/ns/uts" % match["pid"]) == uts
    finally:
        ctr.exec("kill", str(tracer_pid), *map(str, holder_pids), check=False)
        for proc in [tracer, *holders]:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_provisioning_again_restarts_the_dashboard(provisioned):
    """Runs last (module order): `vagrant provision` after `vagrant rsync`."""
    ctr, port = provisioned["ctr"], provisioned["port"]
    token = ctr.exec("cat", STATE_DIR + "/token").stdout.strip()
    old_pid = dashboard_pid(ctr, provisioned["kind"])
    rc, output, took = run_provision(provisioned["name"], port)
    provisioned["timings"]["provision_again"] = took
    assert rc == 0, output[-4000:]
    new_pid = dashboard_pid(ctr, provisioned["kind"])
    assert new_pid != old_pid
    assert ctr.exec("test", "-e", "/proc/" + old_pid, check=False).returncode != 0, "the old dashboard still runs"
    # Same token, so a bookmarked URL keeps working.
    assert ctr.exec("cat", STATE_DIR + "/token").stdout.strip() == token
    assert http_status("http://127.0.0.1:%d/api/status?token=%s" % (port, token)) == 200
    assert "apt-get update" not in output, "a second run should find every package installed"


def wait_status(url: str, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    code = 0
    while time.monotonic() < deadline:
        try:
            code = http_status(url)
        except OSError:  # refused or reset while the machine boots
            code = 0
        if code == 200:
            break
        time.sleep(1)
    return code


def test_dashboard_after_restart(provisioned):
    """Runs last (module order).  systemd: back by itself; without systemd: back
    only by provisioning again, as the script says."""
    ctr, kind, name = provisioned["ctr"], provisioned["kind"], provisioned["name"]
    token = ctr.exec("cat", STATE_DIR + "/token").stdout.strip()
    started = time.monotonic()
    run(["docker", "restart", "-t", "10", name], timeout=180)
    wait_booted(ctr, kind)
    port = host_port_of(name)  # Docker may pick another host port after a restart
    url = "http://127.0.0.1:%d/api/status?token=%s" % (port, token)
    if kind == "systemd":
        assert wait_status(url, 180) == 200, ctr.exec("journalctl", "-u", "nsgraph", "-n", "30", check=False).stdout
        provisioned["timings"]["back_after_restart"] = time.monotonic() - started
    else:
        assert wait_status(url, 5) != 200
        rc, output, _ = run_provision(name, port)
        assert rc == 0, output[-4000:]
        assert http_status(url) == 200
    progress("timings (%s): %s" % (kind, {k: round(v) for k, v in provisioned["timings"].items()}))
