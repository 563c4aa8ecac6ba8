"""Zombies are members of their pid and user namespaces (issue 10 item 8), as lsns counts
them: /proc keeps those two links of an exited, unreaped process.  Pure logic on
synthetic snapshots; the real-kernel version is tests/kernel/test_threads_zombies.py."""

from __future__ import annotations

import collections
import dataclasses

from synthetic import DEV, HOST, ev, host_snapshot, with_

from tracer import nstypes
from tracer.graph import NamespaceGraph
from tracer.host.snapshot import NsInfo, ProcInfo, Snapshot

INNER = with_(HOST, pid=300, pid_for_children=300)


def snapshot(zombie=True, taken_at=2000.0) -> Snapshot:
    """The host, pid 1, and (zombie) pid 40 alone in pid namespace 300."""
    snap = host_snapshot(pids=(1,), extra_ns=(NsInfo("pid", 300, DEV, ns_id=300, owner_inode=105,
                                                     parent_inode=101),), taken_at=taken_at)
    if zombie:
        # What /proc shows for a zombie: state Z, only the pid and user links.
        snap.processes[40] = ProcInfo(40, 1, 0, "child", [], 4000, "0::/",
                                      {"pid": (DEV, 300), "user": (DEV, 105)}, "Z")
    else:
        snap.namespaces.pop(("pid", DEV, 300))
    return snap


def test_a_snapshot_counts_a_zombie_in_its_pid_and_user_namespaces():
    g = NamespaceGraph(dev=DEV)
    g.load_snapshot(snapshot())
    assert g.namespace("pid:300")["pids"] == [40]
    assert 40 in g.namespace("user:105")["pids"] and 40 not in g.namespace("net:102")["pids"]
    proc = g.process(40)
    assert proc["zombie"] is True and set(proc["ns"]) == {"pid", "user"}
    assert g.zombies() == [(40, 4000)]
    copy = NamespaceGraph.from_state(g.export_state())
    assert copy.process(40)["zombie"] is True and copy.zombies() == [(40, 4000)]
    assert g.check_invariants() == []


def test_live_an_exit_leaves_a_zombie_until_proc_shows_it_reaped():
    g = NamespaceGraph(dev=DEV)
    g.load_snapshot(host_snapshot(pids=(1, 30)))
    # 30 clones 40 into a new pid namespace; 40 exits; its parent has not waited yet.
    g.apply(ev("clone", 30, child_pid=40, ns=INNER, before=HOST, raw_flags=nstypes.CLONE_NEWPID,
               syscall="clone3"))
    g.apply(ev("exit", 40, exit_code=0))
    assert g.namespace("pid:300")["pending_end"] and g.namespace("pid:300")["pids"] == []
    # The settle the orphan triggers finds the zombie holding the namespace.
    v0 = g.version
    g.reconcile(snapshot(zombie=True), since_version=v0, full=False)
    ns = g.namespace("pid:300")
    assert (ns["alive"], ns["pending_end"], ns["pids"]) == (True, False, [40])
    assert g.process(40)["zombie"] and g.counters["repaired"] == 0
    # An exit event arriving after /proc showed the zombie changes nothing.
    g.apply(ev("exit", 40, exit_code=0))
    assert g.namespace("pid:300")["pids"] == [40]
    # Reaped: a later reading lacks it; its namespace then ends.
    v1 = g.version
    g.reconcile(snapshot(zombie=False, taken_at=3000.0), since_version=v1, full=False)
    assert g.process(40) is None and g.namespace("pid:300")["pending_end"]
    g.reconcile(snapshot(zombie=False, taken_at=3001.0), since_version=g.version, full=False)
    assert g.namespace("pid:300") is None and g.namespace(ns["id"])["alive"] is False
    assert g.counters["repaired"] == 0 and g.check_invariants() == []


def test_the_reaping_op_leaves_a_live_process_that_took_the_pid_alone():
    g = NamespaceGraph(dev=DEV)
    g.load_snapshot(snapshot())
    # Reaped, and the pid reused before the service's check ran.
    g.apply(ev("clone", 1, child_pid=40, ns={}, before=None))
    assert g.process(40).get("zombie") is None and g.zombies() == []
    g.apply_ops([{"op": "proc_gone", "pid": 40, "zombie": True, "ts": 5.0}])
    assert g.process(40) is not None and g.counters["repaired"] == 0


def test_a_full_reconcile_turns_a_process_whose_exit_was_missed_into_a_zombie():
    g = NamespaceGraph(dev=DEV)
    g.load_snapshot(host_snapshot(pids=(1,)))
    live = host_snapshot(pids=(1,), extra_ns=(NsInfo("pid", 300, DEV, ns_id=300),))
    live.processes[40] = dataclasses.replace(live.processes[1], pid=40, start_ticks=4000,
                                             ns={s: (DEV, i) for s, i in INNER.items()})
    g.reconcile(live, since_version=g.version)
    assert g.namespace("pid:300")["pids"] == [40] and not g.process(40).get("zombie")
    g.reconcile(snapshot(zombie=True), since_version=g.version)
    proc = g.process(40)
    assert proc["zombie"] and set(proc["ns"]) == {"pid", "user"} and proc["repaired"]
    assert 40 not in g.namespace("mnt:100")["pids"] and g.check_invariants() == []
    assert collections.Counter(g.zombies()) == {(40, 4000): 1}


def test_the_service_finds_a_real_zombie_after_its_exit_and_drops_it_once_reaped():
    # A real child of this test, exited and not yet waited for: /proc shows it as Z.
    import os
    import time

    from tracer.service import NsgraphService
    child = os.fork()
    if child == 0:
        os._exit(0)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with open("/proc/%d/stat" % child) as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
            time.sleep(0.01)
        truth = {t: os.stat("/proc/%d/ns/%s" % (child, t)).st_ino for t in ("pid", "user")}
        g = NamespaceGraph(dev=os.stat("/proc/self/ns/net").st_dev)
        svc = NsgraphService().use_graph(g)
        g.apply(ev("exit", child, exit_code=0))             # the model dropped it at its exit
        svc.watch_zombies(time.time())                      # noted; checked a tick later
        assert g.process(child) is None
        svc.watch_zombies(time.time())
        proc = g.process(child)
        assert proc is not None and proc["zombie"] is True
        assert {t: g.namespace(proc["ns"][t])["inode"] for t in proc["ns"]} == truth
        assert g.namespace("pid:%d" % truth["pid"])["pids"] == [child]
    finally:
        os.waitpid(child, 0)
    svc.watch_zombies(time.time())
    assert g.process(child) is None and g.zombies() == []
