"""The live graph against the real kernel, Docker and /proc (root, real Docker).

Ground truth is always /proc (two snapshots around each check, so processes
that come and go meanwhile - this machine is shared - are not held against the
model), `docker inspect`, and the helper's own readings of /proc/self/ns.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid

import pytest

from tracer.history.recording import JsonlRecorder, replay_file
from tracer.host.snapshot import take_snapshot

from conftest import require, wait_until

PREFIX = "nsgtest-graph-%s" % uuid.uuid4().hex[:8]


def _strip(data):
    data = dict(data)
    data.pop("time")
    return data


def quiesce(service, quiet=0.4, timeout=10.0):
    """Wait until the collector has had nothing new for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    last = service.collector.events
    since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = service.collector.events
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return


def diff_against_proc(graph) -> list:
    """Disagreements between the model and /proc, ignoring what changed during the check."""
    a = take_snapshot()
    time.sleep(0.5)
    with graph.lock:
        procs = graph.process_ns()
        alive = {(ns.type, ns.inode): ns for ns in graph.namespaces.alive.values()}
        pending = {k for k, ns in alive.items() if ns.orphaned_at is not None}
        info = {k: (ns.ns_id, ns.owner.inode if ns.owner else ns.owner_inode,
                    ns.parent.inode if ns.parent else ns.parent_inode) for k, ns in alive.items()}
    b = take_snapshot()
    problems = []
    stable = []
    for pid, pa in a.processes.items():
        pb = b.processes.get(pid)
        if pb is None or pa.start_ticks != pb.start_ticks or pa.ns != pb.ns or pa.state == "Z" \
                or set(pa.ns) != set(a.processes[2].ns if 2 in a.processes else pa.ns):
            continue
        stable.append(pid)
        want = {slot: inode for slot, (dev, inode) in pa.ns.items()}
        got = procs.get(pid)
        if got != want:
            problems.append("pid %d (%s): model %s, /proc %s" % (pid, pa.comm, got, want))
    for pid in procs:
        if pid not in a.processes and pid not in b.processes and not os.path.exists("/proc/%d" % pid):
            problems.append("pid %d is in the model but gone from /proc: %s" % (pid, graph.process(pid)))
    seen_a = {(r[0], r[2]) for r in a.namespaces}
    seen_b = {(r[0], r[2]) for r in b.namespaces}
    for key in seen_a & seen_b:
        if key not in alive:
            problems.append("namespace %s:%d is live in /proc but not in the model" % key)
            continue
        sa = a.namespaces[(key[0], a_dev(a), key[1])]
        ns_id, owner, parent = info[key]
        if sa.ns_id is not None and ns_id is not None and sa.ns_id != ns_id:
            problems.append("namespace %s:%d ns_id model %s /proc %s" % (key + (ns_id, sa.ns_id)))
        if sa.owner_inode is not None and owner != sa.owner_inode:
            problems.append("namespace %s:%d owner model %s /proc %s" % (key + (owner, sa.owner_inode)))
        if sa.parent_inode is not None and parent != sa.parent_inode:
            problems.append("namespace %s:%d parent model %s /proc %s" % (key + (parent, sa.parent_inode)))
    for key in alive:
        if key not in seen_a and key not in seen_b and key not in pending:
            problems.append("namespace %s:%d is live in the model but not in /proc" % key)
    return problems


def persistent_problems(graph, attempts=4) -> list:
    """Problems that survive several checks: the collector may lag a busy machine by a
    second, so a difference must persist to count as the model being wrong."""
    keep = None
    for _ in range(attempts):
        found = {p.split(":")[0] if p.startswith("pid ") else p: p for p in diff_against_proc(graph)}
        keep = found if keep is None else {k: v for k, v in found.items() if k in keep}
        if not keep:
            return []
        time.sleep(0.5)
    return sorted(keep.values())


def a_dev(snap):
    return next(iter(snap.namespaces))[1]


@pytest.fixture(scope="module")
def service(root, docker_client, tmp_path_factory):
    from webapp.demos.image import ensure_demo_image
    from tracer.service import NsgraphService, ServiceConfig
    image = ensure_demo_image(docker_client)
    tmp = tmp_path_factory.mktemp("graph-live")
    svc = NsgraphService(ServiceConfig(db=str(tmp / "history.db"), reconcile_s=3600))
    ok = svc.start()
    assert ok, svc.status.error
    recorder = JsonlRecorder(str(tmp / "rec.jsonl"))
    recorder.attach(svc.graph)
    svc.test_image = image
    svc.test_recorder = recorder
    yield svc
    svc.stop()
    recorder.close()
    for name in [c.name for c in docker_client.containers.list(all=True) if c.name.startswith(PREFIX)]:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    subprocess.run(["ip", "netns", "del", PREFIX], capture_output=True)


UNSHARE_23 = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
inodes = []
for i in range(23):
    if libc.unshare(0x04000000) != 0:
        sys.exit("unshare failed: errno %d" % ctypes.get_errno())
    inodes.append(os.stat("/proc/self/ns/uts").st_ino)
print(os.getpid(), *inodes)
"""


def test_23_unshares_give_23_namespaces_with_their_own_times(service):
    out = subprocess.run([sys.executable, "-c", UNSHARE_23], capture_output=True, text=True, check=True)
    pid, *inodes = map(int, out.stdout.split())
    assert len(set(inodes)) < 23, "the kernel did not recycle inodes this time: %s" % inodes
    quiesce(service)
    service.settle()
    mine = [n for n in service.graph.history("uts") if (n["creator"] or {}).get("pid") == pid]
    mine.sort(key=lambda n: n["created"])
    assert [n["inode"] for n in mine] == inodes
    assert len({n["id"] for n in mine}) == 23
    for i, n in enumerate(mine):
        assert n["created"] is not None and n["ended"] is not None, n
        assert n["ended"] >= n["created"]
        if i + 1 < len(mine):
            assert mine[i + 1]["created"] <= n["ended"] + 0.001
        assert n["creator"]["syscall"] == "unshare" and n["creator"]["flags"] == ["CLONE_NEWUTS"]
    assert len({n["ns_id"] for n in mine if n["ns_id"] is not None}) in (0, 23)


def test_docker_exec_is_one_join_session(service, docker_client):
    name = PREFIX + "-exec"
    subprocess.run(["docker", "run", "-d", "--name", name, service.test_image, "sleep", "300"],
                   check=True, capture_output=True)
    try:
        init_pid = docker_client.containers.get(name).attrs["State"]["Pid"]
        time.sleep(1.5)
        t0 = time.time()
        subprocess.run(["docker", "exec", name, "ps", "aux"], check=True, capture_output=True)

        def sessions():
            return [j for j in service.graph.to_json()["joins"]
                    if j["start"] >= t0 - 0.5 and j["container"] == name and not j["open"]]
        found = wait_until(lambda: [s for s in sessions() if s["command"] == "ps aux"], timeout=8)
        found = sessions()
        assert len(found) == 1, found
        s = found[0]
        assert s["types"] == ["ipc", "uts", "net", "pid", "mnt"]
        assert s["command"] == "ps aux"
        assert s["summary"] == "joined container %s's ipc, uts, net, pid, mnt namespaces and ran `ps aux`" % name
        for t in ("net", "mnt", "uts", "ipc", "pid"):
            inode = os.stat("/proc/%d/ns/%s" % (init_pid, t)).st_ino
            assert s["target"][t].split(":")[2] == str(inode)
        net = service.graph.namespace(s["target"]["net"])
        assert net["container"] == name and init_pid in net["pids"]
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


def test_workload_then_graph_equals_proc_and_replays(service, docker_client):
    require(shutil.which("ip") is not None, "iproute2 (ip) is needed for ip netns")
    require(shutil.which("unshare") is not None and shutil.which("nsenter") is not None, "util-linux")
    graph = service.graph
    keep = subprocess.Popen(["unshare", "--net", "--uts", "--ipc", "sleep", "120"])
    # its own session, so that killpg also ends the sleep inside the new pid namespace
    pidns = subprocess.Popen(["unshare", "--fork", "--pid", "--mount-proc", "sleep", "120"],
                             start_new_session=True)
    name = PREFIX + "-run"
    try:
        subprocess.run(["unshare", "--uts", "--mount", "sh", "-c", "hostname x; true"], check=True)
        subprocess.run(["sh", "-c", "(sleep 0.1 &) ; wait"], check=True)
        time.sleep(0.3)
        subprocess.run(["nsenter", "-t", str(keep.pid), "-n", "-u", "true"], check=True)
        subprocess.run(["ip", "netns", "add", PREFIX], check=True)
        subprocess.run(["ip", "netns", "exec", PREFIX, "true"], check=True)
        subprocess.run(["docker", "run", "-d", "--name", name, service.test_image, "sleep", "300"],
                       check=True, capture_output=True)
        subprocess.run(["docker", "exec", name, "hostname"], check=True, capture_output=True)
        subprocess.run(["docker", "run", "--rm", "--name", name + "-rm", service.test_image, "true"],
                       check=True, capture_output=True)
        quiesce(service)
        service.settle()
        assert persistent_problems(graph) == [], graph.counters
        pinned = graph.namespace("net:%d" % os.stat("/run/netns/" + PREFIX).st_ino)
        assert pinned["alive"] and pinned["pinned"] and pinned["pids"] == []
        assert pinned["creator"]["comm"] == "ip"
        init_pid = docker_client.containers.get(name).attrs["State"]["Pid"]
        for t in ("net", "pid", "mnt"):
            ns = graph.namespace("%s:%d" % (t, os.stat("/proc/%d/ns/%s" % (init_pid, t)).st_ino))
            assert ns["container"] == name and init_pid in ns["pids"]
            assert ns["creator"] is not None and ns["creator"]["comm"].startswith("runc")

        subprocess.run(["docker", "rm", "-f", name], check=True, capture_output=True)
        subprocess.run(["ip", "netns", "del", PREFIX], check=True)
        keep.kill()
        keep.wait()
        quiesce(service)
        service.settle()
        service.settle()      # owners whose last child ended are confirmed in the next round
        assert persistent_problems(graph) == []
        assert graph.namespace(pinned["id"])["alive"] is False
        assert graph.check_invariants() == []
        assert service.reconcile() == 0, "the timer reconcile found something the events missed"

        with graph.lock:
            live = _strip(graph.to_json())
            service.test_recorder.detach()
            at = time.time()
        service.test_recorder.close()
        assert service.test_recorder.dropped == 0
        replayed = _strip(replay_file(service.test_recorder.path).to_json())
        replayed["counters"].pop("replay_skipped_lines")
        differing = [(j, [k for k in live["joins"] if k["id"] == j["id"]])
                     for j in replayed["joins"] if j not in live["joins"]]
        assert differing == []
        assert replayed == live
        service.store.flush()
        assert _strip(service.store.graph_at(at).to_json()) == live
    finally:
        keep.kill()
        try:
            os.killpg(pidns.pid, 9)
        except ProcessLookupError:
            pass
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
        subprocess.run(["ip", "netns", "del", PREFIX], capture_output=True)


def test_forced_loss_is_reported_and_repaired(root):
    from tracer.kernel.probes import ProbeOptions
    from tracer.service import NsgraphService, ServiceConfig
    svc = NsgraphService(ServiceConfig(db="none", docker=False, reconcile_s=3600,
                                       probe_options=ProbeOptions(ringbuf_pages=1)))
    assert svc.start(), svc.status.error
    try:
        subprocess.run(["sh", "-c", "i=0; while [ $i -lt 1500 ]; do /bin/true; i=$((i+1)); done"], check=True)
        lost = wait_until(lambda: svc.graph.counters["lost"], timeout=5)
        assert lost > 0
        # every loss the kernel side counted reaches the model's counter
        assert wait_until(lambda: svc.collector.stats()["lost"] == svc.graph.counters["lost"], timeout=5)
        assert wait_until(lambda: not svc.graph.needs_repair and svc.graph.counters["reconciles"] >= 2,
                          timeout=15)
        quiesce(svc)
        time.sleep(0.5)         # let the last loss-triggered reconcile finish
        wait_until(lambda: not svc.graph.needs_repair, timeout=10)
        svc.settle()
        assert svc.graph.counters["repaired"] > 0
        assert persistent_problems(svc.graph) == []
        assert svc.graph.check_invariants() == []
    finally:
        svc.stop()
