"""reconcile.py directly: synthetic snapshots and a read-only view of a model -> ops.

Each rule of reconcile_ops is pinned down by the ops it returns, before any is
applied; the last tests apply them and check the model agrees with the snapshot.
"""

from __future__ import annotations

from synthetic import DEV, HOST, ev, fresh_graph, host_snapshot, with_

from tracer import nstypes
from tracer.graph.reconcile import load_ops, reconcile_ops
from tracer.host.snapshot import NsInfo


def kinds(ops):
    return [(op["op"], op.get("pid", op.get("inode"))) for op in ops]


def frozen(g):
    data = g.to_json()
    data.pop("time")
    return data


def test_load_ops_state_every_namespace_and_process_then_link():
    snap = host_snapshot(pids=(1, 50, 51, 52))
    snap.processes[51].state = "Z"                  # a zombie: a member where /proc still shows it
    snap.processes[52].state = "X"                  # dead: nothing left to be a member of
    ops = load_ops(snap, container_of=lambda pid, cgroup: None)
    assert [op["op"] for op in ops] == ["ns"] * 8 + ["proc", "proc", "proc", "link", "host"]
    assert [(op["pid"], op.get("zombie")) for op in ops if op["op"] == "proc"] == [(1, None), (50, None), (51, True)]
    assert all(op["ts"] == snap.taken_at for op in ops if op["op"] in ("ns", "proc"))
    assert all(op["container"] is None for op in ops if op["op"] == "proc")


def test_an_agreeing_snapshot_gives_no_repairs():
    g = fresh_graph(pids=(1, 50))
    before = frozen(g)
    ops = reconcile_ops(host_snapshot(pids=(1, 50), taken_at=2000.0), g.view(), g.version)
    assert [op["op"] for op in ops] == ["ns"] * 8 + ["link"]
    assert not any(op.get("repair") for op in ops)
    assert frozen(g) == before                       # reading the view changed nothing


def test_missed_birth_exit_and_move_become_repairs():
    g = fresh_graph(pids=(1, 50, 60))
    snap = host_snapshot(pids=(1, 50, 61), taken_at=2000.0)
    snap.processes[50].ns["uts"] = (DEV, 800)
    snap.namespaces[("uts", DEV, 800)] = NsInfo("uts", 800, DEV)
    ops = reconcile_ops(snap, g.view(), g.version)
    gone = [op for op in ops if op["op"] == "proc_gone"]
    assert [(op["pid"], op["repair"], op["ts"]) for op in gone] == [(60, True, 2000.0)]
    procs = [op for op in ops if op["op"] == "proc"]
    assert [(op["pid"], op["repair"]) for op in procs] == [(50, True), (61, True)]
    assert procs[0]["ns"]["uts"] == 800
    new_ns = [op for op in ops if op["op"] == "ns" and op["inode"] == 800]
    assert [op["repair"] for op in new_ns] == [True]


def test_a_process_the_snapshot_missed_is_kept_while_running_says_so():
    g = fresh_graph(pids=(1, 50, 60))
    snap = host_snapshot(pids=(1, 50), taken_at=2000.0)
    asked = []
    ops = reconcile_ops(snap, g.view(), g.version, running=lambda pid: asked.append(pid) or pid == 60)
    assert asked == [60] and "proc_gone" not in [op["op"] for op in ops]


def test_changes_after_since_version_are_left_alone():
    g = fresh_graph(pids=(1, 50))
    v0 = g.version
    snap = host_snapshot(pids=(1, 50, 70), taken_at=2000.0)     # taken before the events below
    g.apply(ev("clone", 50, ns=HOST, before=HOST, child_pid=90, raw_flags=17))     # born after it
    g.apply(ev("exit", 70))                                                         # unknown, exited after it
    g.apply(ev("unshare", 50, ns=with_(HOST, uts=300), before=HOST, raw_flags=nstypes.CLONE_NEWUTS))
    ops = reconcile_ops(snap, g.view(), v0)
    assert [op for op in ops if op["op"] in ("proc", "proc_gone")] == []
    assert not [op for op in ops if op["op"] == "ns_gone"]       # uts 300 is newer than the snapshot


def test_a_namespace_that_ended_after_the_snapshot_is_not_brought_back():
    g = fresh_graph(pids=(1, 50))
    g.apply(ev("unshare", 50, ns=with_(HOST, uts=300), before=HOST, raw_flags=nstypes.CLONE_NEWUTS))
    snap = host_snapshot(pids=(1, 50), extra_ns=[NsInfo("uts", 300, DEV)], taken_at=2000.0)
    snap.processes[50].ns["uts"] = (DEV, 300)
    v0 = g.version
    g.apply(ev("unshare", 50, ns=with_(HOST, uts=301), before=with_(HOST, uts=300),
               raw_flags=nstypes.CLONE_NEWUTS))
    g.end_orphans()                                          # uts 300 ended after the snapshot
    ops = reconcile_ops(snap, g.view(), v0)
    assert 300 not in [op["inode"] for op in ops if op["op"] == "ns"]


def test_settling_ends_unseen_orphans_at_their_orphan_time_and_updates_pins():
    g = fresh_graph(pids=(1, 50, 60, 70))
    g.apply(ev("unshare", 50, ns=with_(HOST, net=400), before=HOST, raw_flags=nstypes.CLONE_NEWNET, comm="ip"))
    g.apply(ev("unshare", 60, ns=with_(HOST, net=401), before=HOST, raw_flags=nstypes.CLONE_NEWNET, comm="ip"))
    g.apply(ev("unshare", 70, ns=with_(HOST, uts=402), before=HOST, raw_flags=nstypes.CLONE_NEWUTS))
    g.apply(ev("exit", 50, ts=3000.0))
    g.apply(ev("exit", 60, ts=3001.0))
    pinned = NsInfo("net", 401, DEV, pinned=["/run/netns/x"])
    snap = host_snapshot(pids=(1, 70), extra_ns=[pinned], taken_at=3002.0)
    ops = reconcile_ops(snap, g.view(), g.version, full=False)
    assert ops == [
        {"op": "ns_gone", "type": "net", "inode": 400, "ended": 3000.0, "repair": False, "ts": 3002.0},
        {"op": "ns", "type": "net", "inode": 401, "ts": 3002.0, "pinned": ["/run/netns/x"], "holders": []},
    ]       # uts 402 is unseen too, but a process holds it: only a full reconcile ends that


def test_a_full_reconcile_ends_a_held_namespace_the_snapshot_lacks_as_a_repair():
    g = fresh_graph(pids=(1, 70))
    g.apply(ev("unshare", 70, ns=with_(HOST, uts=402), before=HOST, raw_flags=nstypes.CLONE_NEWUTS))
    snap = host_snapshot(pids=(1, 70), taken_at=3002.0)         # 70 is back in the host's uts
    ops = reconcile_ops(snap, g.view(), g.version)
    assert {"op": "ns_gone", "type": "uts", "inode": 402, "ended": 3002.0, "repair": True,
            "ts": 3002.0} in ops
    assert [op["pid"] for op in ops if op["op"] == "proc"] == [70]


def test_an_inode_with_another_kernel_id_is_another_namespace():
    g = fresh_graph(pids=(1, 50))
    g.apply(ev("unshare", 50, ns=with_(HOST, ipc=500), before=HOST, raw_flags=nstypes.CLONE_NEWIPC,
               ns_id={"ipc": 9000}))
    g.apply(ev("exit", 50))
    snap = host_snapshot(pids=(1,), extra_ns=[NsInfo("ipc", 500, DEV, ns_id=9001)], taken_at=3000.0)
    ops = reconcile_ops(snap, g.view(), g.version, full=False)
    assert [(op["op"], op["inode"]) for op in ops] == [("ns_gone", 500)]


def test_applying_the_ops_makes_the_model_agree_with_the_snapshot():
    g = fresh_graph(pids=(1, 50, 60))
    snap = host_snapshot(pids=(1, 50, 61), taken_at=5000.0)
    snap.processes[50].ns["uts"] = (DEV, 800)
    snap.namespaces[("uts", DEV, 800)] = NsInfo("uts", 800, DEV)
    assert g.reconcile(snap, since_version=g.version) == 3
    assert g.process_ns() == {pid: {s: i for s, (d, i) in p.ns.items()} for pid, p in snap.processes.items()}
    assert set(g.alive_refs()) == {(info.type, info.inode) for info in snap.namespaces.values()}
    assert g.check_invariants() == [] and g.counters["reconciles"] == 1
    assert reconcile_ops(snap, g.view(), g.version)[-1] == {"op": "link"}
    assert g.reconcile(snap, since_version=g.version) == 0
