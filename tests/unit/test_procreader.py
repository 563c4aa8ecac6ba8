"""The graph's lazy process reads: live from this machine's /proc (no root needed for our
own processes), replayed from a journal, and a live graph whose reads replay exactly."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time

from synthetic import DEV, HOST, ev, host_snapshot

from tracer.graph import LiveProcReader, NamespaceGraph, ReplayProcReader
from tracer.history.replay import replay_records


def _proc_text(pid, name):
    with open("/proc/%d/%s" % (pid, name), "rb") as f:
        return f.read()


def test_live_read_is_what_proc_shows():
    seen = []

    def resolve(pid, cgroup):
        seen.append((pid, cgroup))
        return {"id": "f" * 64, "name": "x", "image": None, "runtime": "docker", "pid": pid, "labels": {},
                "state": None, "pod_uid": None, "source": "test"}

    reader = LiveProcReader(resolve)
    pid = os.getpid()
    op = reader.read(pid)
    argv = [a.decode() for a in _proc_text(pid, "cmdline").split(b"\0")[:-1]]
    cgroup = _proc_text(pid, "cgroup").decode().strip()
    assert op["op"] == "procread" and op["pid"] == pid
    assert op["cmdline"] == argv and op["cgroup"] == cgroup
    assert seen == [(pid, cgroup)] and op["container"]["id"] == "f" * 64
    assert reader.dev == os.stat("/proc/self/ns/net").st_dev


def test_a_failing_container_lookup_is_logged_and_the_read_kept(caplog):
    def resolve(pid, cgroup):
        raise RuntimeError("engine away")

    with caplog.at_level(logging.ERROR):
        op = LiveProcReader(resolve).read(os.getpid())
    assert op["cmdline"] and "container" not in op
    assert any("container lookup" in r.getMessage() for r in caplog.records)


def test_running_and_vanished_processes():
    reader = LiveProcReader()
    assert reader.running(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _proc_text(child.pid, "stat").split(b") ")[1][:1] != b"Z":
        time.sleep(0.01)
    assert not reader.running(child.pid)            # a zombie has exited
    child.wait()
    assert not reader.running(child.pid)
    op = reader.read(child.pid)                      # gone: nothing read, nothing invented
    assert (op["cmdline"], op["cgroup"]) == (None, None)
    offline = ReplayProcReader()
    assert not offline.running(os.getpid()) and offline.read(os.getpid()) is None


def test_a_live_graph_journals_its_reads_and_a_replay_rebuilds_it():
    pid = os.getpid()
    live = NamespaceGraph(dev=DEV, reader=LiveProcReader())
    live.load_snapshot(host_snapshot(pids=(1,)))
    state = live.export_state()
    journal = []
    live.add_journal(lambda kind, payload, seq: journal.append((kind, payload)))
    # our own process, as a snapshot would give it but without its command line
    live.apply_ops([{"op": "proc", "pid": pid, "ppid": 1, "uid": 0, "comm": "python", "ns": HOST, "ts": 1.0}])
    child = 4_194_400                                # above any pid_max: /proc has nothing for it
    live.apply(ev("clone", pid, ns=HOST, before=HOST, child_pid=child, raw_flags=17))
    live.apply(ev("exec", pid, ns=HOST, filename=sys.executable, comm="python"))
    data = live.to_json()                            # reads our command line now, journaled
    mine = [p for p in data["processes"] if p["pid"] == pid][0]
    assert mine["cmdline"] == " ".join(a.decode() for a in _proc_text(pid, "cmdline").split(b"\0")[:-1])
    reads = [payload for kind, payload in journal if kind == "op"]
    assert [r["pid"] for r in reads if r["pid"] == pid] == [pid] and not any(r.get("nested") for r in reads)
    copy = NamespaceGraph.from_state(state)
    replay_records(copy, journal)
    a, b = live.to_json(), copy.to_json()
    a.pop("time"), b.pop("time")
    assert a == b


def test_a_lookup_that_reports_back_during_a_read_replays_the_same():
    # ContainerCatalog.resolve tells its subscribers what it found in the calling thread, and
    # the service turns that into apply_ops: here, in the middle of the event whose read asked.
    me = os.getpid()
    container = {"id": "ab" * 32, "name": "web", "image": None, "runtime": "docker", "pid": me, "labels": {},
                 "state": "running", "pod_uid": None, "source": "docker"}

    def resolve(pid, cgroup):
        live.apply_ops([{"op": "container", "data": container}])
        return container

    live = NamespaceGraph(dev=DEV, reader=LiveProcReader(resolve))
    live.load_snapshot(host_snapshot(pids=(1,)))
    inside = dict(HOST, net=300)
    live.apply_ops([{"op": "ns", "type": "net", "inode": 300, "ts": 1.0},
                    {"op": "proc", "pid": me, "ppid": 1, "uid": 0, "comm": "python", "ns": inside, "ts": 1.0}])
    state = live.export_state()
    journal = []
    live.add_journal(lambda kind, payload, seq: journal.append((kind, payload)))
    stranger = 4_194_401                             # no such pid: nothing to read for it
    live.apply(ev("setns", stranger, ns=inside, before=HOST, raw_flags=0x40000000, comm="nsenter"))
    live.apply(ev("exec", stranger, ns=inside, filename="/bin/true", comm="true"))
    (session,) = live.to_json()["joins"]
    assert session["container_id"] == "ab" * 32 and session["container"] == "web"
    kinds = [(kind, payload.get("pid") if kind == "op" else None) for kind, payload in journal]
    assert kinds == [("event", None), ("event", None), ("op", stranger), ("op", me), ("ops", None)]
    copy = NamespaceGraph.from_state(state)
    replay_records(copy, journal)
    a, b = live.to_json(), copy.to_json()
    a.pop("time"), b.pop("time")
    assert a == b
