"""The inside view of real namespaces, field by field against the real tools run inside.

An `unshare` namespace set of all eight types (with a dummy interface, a
default route, listening sockets, System V and POSIX IPC objects, a cgroup
root and clock offsets made inside it), a nested pid namespace, a user
namespace made by an unprivileged user, and the host: each is read with
`nsgraph inspect --json` and compared with what hostname, ip, ss, ps, ipcs,
cat ... print when nsenter runs them inside (tests/workloads/inside_truth.py).
Then the ends: a namespace whose last member exits while it is read, stale
members, and a run of namespaces that live only a moment.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid

import pytest

from tests.workloads import inside_truth as truth
from tracer.containers.cgroups import cgroup2_mount
from tracer.host.inside.spawn import STATS
from tracer.host.inside.target import NsTarget
from tracer.host.inside.view import inspect
from tracer.host.procfs import nsfs_device

from conftest import REPO, wait_for

NSGRAPH = [sys.executable, "-m", "tracer.cli"]
# Correctness here, speed in bench/bench_inside.py: under the kernel matrix's emulated
# CPU a helper's Python can take longer than the 5 s default to start.
os.environ.setdefault("NSGRAPH_INSIDE_TIMEOUT", "120")
TAG = "nsgtest-inside-" + uuid.uuid4().hex[:6]
READY = "__READY__"

LISTENER = ("import socket,time\n"
            "t=socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
            "t.bind(('127.0.0.1', 7777)); t.listen()\n"
            "u=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('127.0.0.1', 7778))\n"
            "time.sleep(3600)\n")


def inspect_cli(*args) -> list:
    """nsgraph inspect --json ... -> the JSON objects it printed (exit status checked: 0)."""
    proc = subprocess.run(NSGRAPH + ["inspect", "--json", "--no-docker"] + list(args), cwd=REPO,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    assert proc.returncode == 0, "nsgraph inspect %s: exit %d: %s" % (" ".join(args), proc.returncode, proc.stderr)
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def read(pid: int, types: str) -> dict:
    """The inside views of pid's namespaces of these types, read in this process (the CLI path,
    which adds resolving through a /proc snapshot, is checked by the tests that run nsgraph)."""
    targets = [NsTarget(t, truth.ns_inode(pid, t), nsfs_device(), pids=[pid]) for t in types.split(",")]
    return by_type(inspect(targets))


def by_type(views: list) -> dict:
    out = {v["type"]: v for v in views}
    for v in out.values():
        assert v["state"] == "ok", v
    return out


def _wait_ready(proc, what: str) -> str:
    """The lines a set-up script printed up to READY (its stderr too); it fails at EOF without READY."""
    seen = []
    for line in iter(proc.stdout.readline, b""):
        seen.append(line.decode(errors="replace"))
        if line.strip() == READY.encode():
            return "".join(seen)
    raise AssertionError("%s did not start: %r" % (what, "".join(seen)))


def _stop(proc) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def nsset(root):
    """An unshare'd process in new uts, net, ipc, pid, mnt, cgroup and time namespaces, set up inside."""
    for tool in ("unshare", "nsenter", "ip", "ss", "ps", "ipcs", "ipcmk", "lsns"):
        assert shutil.which(tool), "%s is missing (util-linux, iproute2, procps)" % tool
    unified = cgroup2_mount()
    assert unified, "no cgroup2 mount: the cgroup namespace check needs one"
    group = os.path.join(unified, TAG)
    os.mkdir(group)
    mq = "/tmp/%s-mq" % TAG
    os.mkdir(mq)
    script = "\n".join([
        "hostname %s" % TAG, "echo nsgtest.example > /proc/sys/kernel/domainname",
        # A veth pair with both ends inside (kernels without CONFIG_DUMMY have veth).
        "ip link set lo up", "ip link add nsgv0 type veth peer name nsgv1", "ip addr add 10.77.0.1/24 dev nsgv0",
        "ip link set nsgv1 up", "ip link set nsgv0 up", "ip route add default via 10.77.0.254 dev nsgv0",
        "ipcmk -M 4096 >/dev/null", "ipcmk -M 8192 >/dev/null", "ipcmk -S 3 >/dev/null", "ipcmk -Q >/dev/null",
        "mount -t mqueue none %s" % mq, "touch %s/nsgq1 %s/nsgq2 %s/nsgq3" % (mq, mq, mq),
        "%s -c \"$LISTENER\" &" % sys.executable,
        "unshare --pid --fork --mount-proc sleep 3600 &",
        "sleep 0.5", "echo %s" % READY, "exec sleep 3600"])
    # The shell moves itself into a fresh cgroup first: that cgroup becomes the new
    # cgroup namespace's root.
    outer = "echo $$ > %s/cgroup.procs && exec unshare --uts --net --ipc --pid --fork --mount-proc " \
            "--cgroup --time --monotonic 3600 --boottime 7200 sh -c \"$SCRIPT\"" % group
    proc = subprocess.Popen(["sh", "-c", outer], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True,
                            env=dict(os.environ, LISTENER=LISTENER, SCRIPT=script))
    try:
        _wait_ready(proc, "the unshare namespace set")
        (inner,) = truth.children(proc.pid)          # unshare --fork's child: pid 1 inside
        nested_unshare = [c for c in truth.children(inner)
                          if open("/proc/%d/comm" % c).read().strip() == "unshare"]
        nested = wait_for(lambda: truth.children(nested_unshare[0]), "the nested pid namespace's sleep")[0]
        yield {"pid": inner, "nested": nested, "group": group, "mq": mq}
    finally:
        _stop(proc)
        for path, remove in ((mq, os.rmdir), (group, os.rmdir)):
            for _ in range(50):
                try:
                    remove(path)
                    break
                except OSError:
                    time.sleep(0.1)


def test_every_type_is_the_namespace_lsns_names(nsset):
    views = inspect_cli("--pid", str(nsset["pid"]))
    assert sorted(v["type"] for v in views) == sorted(["user", "pid", "mnt", "net", "uts", "ipc", "cgroup", "time"])
    lsns = truth.lsns(nsset["pid"])
    for v in views:
        assert v["state"] == "ok", v
        assert v["inode"] == lsns[v["type"]], (v["type"], v["inode"], lsns)


def test_uts_net_ipc_time_cgroup_match_the_tools_run_inside(nsset):
    pid = nsset["pid"]
    v = read(pid, "uts,net,ipc,time,cgroup")
    assert truth.hostname(pid) == TAG and truth.domainname(pid) == "nsgtest.example"
    assert v["uts"]["view"] == {"hostname": TAG, "domainname": "nsgtest.example"}
    assert v["uts"]["method"] == "helper"

    ip = truth.ip_addr(pid)
    links = {i["name"]: i for i in v["net"]["view"]["interfaces"]}
    assert set(links) == set(ip) == {"lo", "nsgv0", "nsgv1"}
    for name, link in links.items():
        assert link["state"] == ip[name]["state"] and link["mac"] == ip[name]["mac"], name
        assert link["flags"] == ip[name]["flags"], name
        assert {(a["family"], a["address"], a["prefixlen"]) for a in link["addresses"]} == ip[name]["addrs"], name
    assert ("inet", "10.77.0.1", 24) in ip["nsgv0"]["addrs"]
    assert links["nsgv0"]["kind"] == "veth" and links["nsgv0"]["link_index"] == links["nsgv1"]["index"]
    assert [(r["gateway"], r["dev"]) for r in v["net"]["view"]["default_route"]["ipv4"]] == \
        truth.default_routes(pid) == [("10.77.0.254", "nsgv0")]
    assert v["net"]["view"]["listening"]["total"] == truth.listening(pid) == 2

    ipc = truth.ipcs(pid)
    for kind, keys in ipc.items():
        part = v["ipc"]["view"][kind]
        assert part["count"] == len(keys) and sorted(o["key"] for o in part["objects"]) == sorted(keys), kind
    assert [len(ipc[k]) for k in ("shared_memory", "semaphores", "message_queues")] == [2, 1, 1]
    mq = len(truth.nsenter(pid, "-m", "ls", nsset["mq"]).split())
    assert v["ipc"]["view"]["posix_message_queues"] == {"count": mq, "error": None} and mq == 3

    offsets = truth.timens_offsets(pid)
    assert "3600" in offsets and "7200" in offsets
    assert v["time"]["view"]["monotonic_offset_s"] == 3600 and v["time"]["view"]["boottime_offset_s"] == 7200
    assert abs(v["time"]["view"]["uptime_s"] - truth.uptime(pid)) < 5

    inside = {line.split(":", 2)[0]: line.split(":", 2)[2] for line in truth.cgroup_inside(pid).splitlines()}
    hierarchies = {h["hierarchy"]: h for h in v["cgroup"]["view"]["hierarchies"]}
    assert {k: h["inside"] for k, h in hierarchies.items()} == inside
    unified_path = "/" + os.path.relpath(nsset["group"], cgroup2_mount())
    assert hierarchies["0"]["inside"] == "/" and v["cgroup"]["view"]["root"] == unified_path


def test_pid_and_mnt_match_ps_and_mountinfo_inside(nsset):
    pid = nsset["pid"]
    v = read(pid, "pid")
    rows = [(p["pid"], p["ppid"], p["comm"]) for p in v["pid"]["view"]["processes"]]
    assert sorted(rows) == sorted(truth.ps_e(pid))
    assert v["pid"]["view"]["init"]["pid"] == 1 and v["pid"]["view"]["init"]["host_pid"] == pid
    assert v["pid"]["method"] == "proc"

    # The mount table as a process inside reads it, before and after nsgraph's read (a
    # mount that comes or goes in between makes the comparison meaningless: read again).
    for _ in range(3):
        before = truth.mountinfo(pid)
        view = read(pid, "mnt")["mnt"]["view"]
        mounts = truth.mountinfo(pid)
        if before == mounts:
            break
    listed = [(m["target"], m["fstype"]) for m in view["mounts"]]
    assert view["count"] == len(mounts), (listed, mounts)
    assert listed == mounts[:len(view["mounts"])]
    assert ("/proc", "proc") in mounts and (nsset["mq"], "mqueue") in mounts


def test_nested_pid_namespace_seen_from_both_levels(nsset):
    outer, nested = nsset["pid"], nsset["nested"]
    outer_view = read(outer, "pid")["pid"]["view"]
    inner_view = read(nested, "pid")["pid"]["view"]
    assert inner_view["depth"] == outer_view["depth"] + 1
    assert [(p["pid"], p["ppid"], p["comm"]) for p in inner_view["processes"]] == truth.ps_e(nested) == [(1, 0, "sleep")]
    # The outer namespace lists the nested one's process too, under its outer pid.
    seen_outside = {p["host_pid"]: p["pid"] for p in outer_view["processes"]}
    in_outer = {row[0] for row in truth.ps_e(outer)}
    assert seen_outside[nested] in in_outer and seen_outside[nested] != 1


def test_user_namespace_of_an_unprivileged_user(root):
    proc = subprocess.Popen(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
                             "unshare", "--user", "--map-root-user", "sh", "-c", "echo %s; exec sleep 3600" % READY],
                            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_ready(proc, "the user namespace")
        pid = proc.pid
        v = read(pid, "user")["user"]["view"]
        assert truth.nsenter(pid, "-U", "cat", "/proc/self/uid_map").split() == ["0", "65534", "1"]
        assert v["uid_map"] == [{"inside": 0, "outside": 65534, "count": 1}]
        assert v["gid_map"] == [{"inside": 0, "outside": 65534, "count": 1}]
        assert v["setgroups"] == truth.nsenter(pid, "-U", "cat", "/proc/self/setgroups").strip() == "deny"
        assert v["owner_uid"] == 65534 and v["root_uid_outside"] == 65534 and v["depth"] == 1
    finally:
        _stop(proc)


@pytest.mark.host_only     # the host's own tools and process churn; nothing kernel-specific
def test_the_host_as_the_host_tools_see_it(root):
    before_ps = {(p, c) for p, _pp, c in _host_ps()}
    before_ip = truth.ip_addr(os.getpid())
    v = by_type(inspect_cli("--host", "--type", "uts,net,pid"))
    after_ps = {(p, c) for p, _pp, c in _host_ps()}
    after_ip = truth.ip_addr(os.getpid())
    assert v["uts"]["label"] == "host" and v["uts"]["view"]["hostname"] == socket.gethostname()
    links = {i["name"]: i for i in v["net"]["view"]["interfaces"]}
    # Other tests add and remove interfaces: compare those there before and after.
    stable = [n for n in before_ip if before_ip[n] == after_ip.get(n)]
    assert "lo" in stable
    for name in stable:
        assert {(a["family"], a["address"], a["prefixlen"]) for a in links[name]["addresses"]} == before_ip[name]["addrs"]
        assert links[name]["mac"] == before_ip[name]["mac"]
    listed = {p["pid"]: p["comm"] for p in v["pid"]["view"]["processes"]}
    steady = before_ps & after_ps
    assert len(steady) > 10 and {p for p, _c in steady} <= set(listed), sorted(steady)[:10]
    # A kworker's comm names the work it is doing now, so it can change between reads.
    changed = [(p, c, listed[p]) for p, c in steady if listed[p] != c and not c.startswith("kworker/")]
    assert not changed, changed[:10]


def _host_ps() -> list:
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid=,comm="], stdout=subprocess.PIPE, text=True, check=True).stdout
    return [(int(a), int(b), c.strip()) for a, b, c in (line.split(None, 2) for line in out.splitlines())]


def test_side_by_side_text(nsset):
    proc = subprocess.run(NSGRAPH + ["inspect", "--no-docker", "--compare", "--host", "--pid", str(nsset["pid"]),
                                     "--type", "uts,pid", "--lines", "5"], cwd=REPO, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:4] == ["==", "uts", "==", "host"] and lines[0].rstrip().endswith("pid %d (sleep)" % nsset["pid"])
    hostname = next(line for line in lines if line.startswith("* hostname"))
    assert hostname.split()[2:] == [socket.gethostname(), TAG]
    assert any("more)" in line for line in lines)          # the host's ps cut to 5 lines


@pytest.mark.host_only     # seven nsgraph runs: slow under the kernel matrix's emulated CPU
def test_exit_codes(root):
    for args, code in ((["uts:nope"], 2), (["--pid", "1", "--type", "bogus"], 2), ([], 2),
                       (["uts:4026500001"], 3), (["--pid", "999999999"], 3), (["--container", "nsgtest-none"], 3)):
        run = subprocess.run(NSGRAPH + ["inspect", "--no-docker"] + args, cwd=REPO, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, timeout=60)
        assert run.returncode == code, (args, run.returncode, run.stderr)
        assert run.stderr.startswith("nsgraph inspect") and "Traceback" not in run.stderr, run.stderr
    nobody = subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"] + NSGRAPH +
                            ["inspect", "--host"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, timeout=60)
    assert nobody.returncode == 77 and "needs root" in nobody.stderr, nobody.stderr


# -- ends: members that leave, namespaces that end -------------------------------------------

def _target(pid: int, ns_type: str, pids=None) -> NsTarget:
    return NsTarget(ns_type, truth.ns_inode(pid, ns_type), nsfs_device(), pids=list(pids or [pid]))


def _sleeper(*flags) -> subprocess.Popen:
    proc = subprocess.Popen(["unshare"] + list(flags) + ["sleep", "600"], start_new_session=True)
    wait_for(lambda: truth.ns_inode(proc.pid, "uts") != truth.ns_inode(os.getpid(), "uts")
             if "--uts" in flags else os.readlink("/proc/%d/exe" % proc.pid).endswith("sleep"), "the sleeper")
    return proc


def test_last_member_exiting_while_read_gives_ended_not_an_error(root):
    proc = _sleeper("--uts", "--mount")
    uts, mnt = _target(proc.pid, "uts"), _target(proc.pid, "mnt")

    def kill_last_member(_targets):
        proc.kill()
        proc.wait()

    views = inspect([uts, mnt], after_read=kill_last_member)
    for view in views:
        assert view["state"] == "ended" and view["view"] is None and "ended while" in view["message"], view
    # And once it is gone, asking again says so without a helper starting.
    started = STATS.snapshot()["started"]
    assert inspect([uts])[0]["state"] == "ended"
    assert STATS.snapshot()["started"] == started


def test_next_member_is_tried_first(root):
    first = _sleeper("--uts")
    try:
        second = subprocess.Popen(["nsenter", "-t", str(first.pid), "-u", "sleep", "600"], start_new_session=True)
        wait_for(lambda: truth.ns_inode(second.pid, "uts") == truth.ns_inode(first.pid, "uts"), "the second member")
        target = _target(first.pid, "uts", [first.pid, second.pid])
        hostname = truth.hostname(first.pid)

        def kill_first(_targets):
            first.kill()
            first.wait()

        (view,) = inspect([target], after_read=kill_first)
        assert view["state"] == "ok" and view["view"]["hostname"] == hostname
        # A stale member (exited before the read) is skipped for the next one.
        (view,) = inspect([target])
        assert view["state"] == "ok" and view["read_via"] == "pid %d" % second.pid
        second.kill()
        second.wait()
    finally:
        first.kill()
        first.wait()


@pytest.mark.host_only     # 180 helper starts: minutes under the kernel matrix's emulated CPU
def test_short_lived_namespaces_are_ok_or_ended_never_errors(root):
    """60 namespaces that live 0-50 ms, read while they end: every answer is ok or ended."""
    states = []
    for i in range(60):
        proc = subprocess.Popen(["unshare", "--uts", "--net", "--ipc", "sleep", "%.3f" % (0.001 * (i % 50))])
        try:
            targets = [_target(proc.pid, t) for t in ("uts", "net", "ipc")]
        except OSError:
            proc.wait()
            continue             # gone before its links could be read: nothing to ask
        states.extend(v["state"] for v in inspect(targets))
        proc.wait()
    assert states and set(states) <= {"ok", "ended"}, states
    assert "ended" in states and "ok" in states, states
