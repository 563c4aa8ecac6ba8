"""NamespaceGraph logic on synthetic events (fast, no root).

The live tests (tests/docker/test_graph_live.py) check the same model against the real
kernel; here every case is built by hand so each rule is pinned down.
"""

from __future__ import annotations

from synthetic import DEV, HOST, ev, fresh_graph, host_snapshot, with_

from tracer import nstypes
from tracer.graph.model import NamespaceGraph
from tracer.host.snapshot import NsInfo


def test_snapshot_load_gives_host_namespaces_and_members():
    g = fresh_graph(pids=(1, 50))
    data = g.to_json()
    by_inode = {n["inode"]: n for n in data["namespaces"]}
    assert by_inode[102]["pids"] == [1, 50]
    assert by_inode[102]["id"] == "net:4:102:0"
    assert by_inode[102]["owner"] == 105 and by_inode[102]["owner_id"] == "user:4:105:0"
    assert data["host_ns"]["net"] == "net:4:102:0"
    assert g.check_invariants() == []
    assert data["counters"]["namespaces_alive"] == 8


def test_clone_with_new_uts_records_creator_and_moves_only_the_child():
    g = fresh_graph(pids=(1, 50))
    g.apply(ev("clone", 50, ns=with_(HOST, uts=200), before=HOST, child_pid=51,
               raw_flags=nstypes.CLONE_NEWUTS | 17, comm="unshare", ts=1001.0))
    child = g.process(51)
    assert child["ns"]["uts"] == "uts:4:200:0"
    assert g.process(50)["ns"]["uts"] == "uts:4:103:0"
    ns = g.namespace("uts:4:200:0")
    assert ns["creator"]["pid"] == 50 and ns["creator"]["child_pid"] == 51
    assert ns["creator"]["flags"] == ["CLONE_NEWUTS"] and ns["created"] == 1001.0
    assert ns["owner_id"] == "user:4:105:0"
    assert g.check_invariants() == []


def test_recycled_inode_gives_distinct_namespaces_with_their_own_times():
    g = fresh_graph(pids=(1, 50))
    cur = dict(HOST)
    for i in range(23):
        new = with_(cur, uts=300 if i % 2 == 0 else 301)   # the kernel hands the same inodes out again
        g.apply(ev("unshare", 50, ns=new, before=cur, raw_flags=nstypes.CLONE_NEWUTS, ts=2000.0 + i))
        cur = new
    g.apply(ev("exit", 50, ts=2100.0))
    g.end_orphans()
    uts = [n for n in g.history("uts") if n["inode"] in (300, 301)]
    assert len(uts) == 23
    assert len({n["id"] for n in uts}) == 23
    created = sorted(n["created"] for n in uts)
    assert created == [2000.0 + i for i in range(23)]
    for n in uts:
        assert n["ended"] is not None and n["ended"] > n["created"]
    assert g.check_invariants() == []


def test_orphan_is_confirmed_or_kept_by_a_pin():
    g = fresh_graph(pids=(1, 50, 60))
    g.apply(ev("unshare", 50, ns=with_(HOST, net=400), before=HOST, raw_flags=nstypes.CLONE_NEWNET, comm="ip"))
    g.apply(ev("unshare", 60, ns=with_(HOST, net=401), before=HOST, raw_flags=nstypes.CLONE_NEWNET, comm="ip"))
    v0 = g.version
    g.apply(ev("exit", 50, ts=3000.0))
    g.apply(ev("exit", 60, ts=3001.0))
    assert g.orphans == 2
    pinned = NsInfo("net", 401, DEV, pinned=["/run/netns/x"])
    snap = host_snapshot(pids=(1,), extra_ns=[pinned], taken_at=3002.0)
    assert g.reconcile(snap, since_version=g.version, full=False) == 0
    n400 = [n for n in g.history("net") if n["inode"] == 400][0]
    n401 = g.namespace("net:401")
    assert n400["alive"] is False and n400["ended"] == 3000.0
    assert n401["alive"] is True and n401["pinned"] == ["/run/netns/x"]
    assert g.orphans == 0
    assert v0 < g.version


def test_ns_id_tells_a_recycled_inode_from_the_same_namespace():
    g = fresh_graph(pids=(1, 50, 60))
    g.apply(ev("unshare", 50, ns=with_(HOST, ipc=500), before=HOST, raw_flags=nstypes.CLONE_NEWIPC,
               ns_id={"ipc": 9000}))
    # 60 setns into "ipc 500" but the kernel id differs: 50's namespace is gone (a missed event).
    g.apply(ev("setns", 60, ns=with_(HOST, ipc=500), before=HOST, raw_flags=nstypes.CLONE_NEWIPC,
               ns_id={"ipc": 9001}))
    ipc = [n for n in g.history("ipc") if n["inode"] == 500]
    assert len(ipc) == 2
    assert {n["ns_id"] for n in ipc} == {9000, 9001}
    assert g.counters["repaired"] >= 1
    assert g.check_invariants() == []
    assert g.needs_repair


def test_thread_setns_keeps_the_process_in_place():
    g = fresh_graph(pids=(1, 70))
    g.apply(ev("unshare", 70, ns=with_(HOST, net=600), before=HOST, raw_flags=nstypes.CLONE_NEWNET))
    g.apply(ev("setns", 80, tid=81, ns=with_(HOST, net=600), before=HOST, raw_flags=nstypes.CLONE_NEWNET,
               comm="dockerd"))
    g.apply(ev("exit", 70))
    assert g.process(80)["ns"]["net"] == "net:4:102:0"      # discovered, main thread unchanged
    assert g.namespace("net:600")["alive"]                  # the thread still holds it
    g.apply(ev("setns", 80, tid=81, ns=HOST, before=with_(HOST, net=600), raw_flags=nstypes.CLONE_NEWNET,
               comm="dockerd"))
    assert g.orphans == 1


def test_diff_since_and_too_old():
    g = NamespaceGraph(dev=DEV, changelog_size=50)
    g.load_snapshot(host_snapshot(pids=(1, 50)))
    v = g.version
    g.apply(ev("clone", 50, ns=HOST, before=HOST, child_pid=90, raw_flags=17))
    d = g.diff_since(v)
    assert d["version"] == g.version
    assert [(c["op"], c["entity"], c["id"]) for c in d["changes"]] == [("add", "process", 90)]
    assert d["changes"][0]["data"]["pid"] == 90
    assert g.diff_since(g.version)["changes"] == []
    for i in range(100):
        g.apply(ev("clone", 50, ns=HOST, before=HOST, child_pid=1000 + i, raw_flags=17))
    assert g.diff_since(v) is None
    assert g.diff_since(g.version + 5) is None
    g.apply(ev("exit", 1000))
    d = g.diff_since(g.version - 1)
    assert d["changes"] == [{"op": "remove", "entity": "process", "id": 1000, "data": None}]


def test_a_diff_tells_when_a_namespace_pending_its_end_is_joined_again():
    """A setns (with the changed slot only, as the probes send it) into a namespace nobody
    was in any more clears its pending_end: the diff carries the namespace, as it did
    when it was orphaned, or a page applying diffs would show it ending."""
    g = fresh_graph(pids=(1, 30, 31))
    g.apply(ev("unshare", 31, ns={"uts": 500}, before={"uts": 103}, raw_flags=nstypes.CLONE_NEWUTS))
    v = g.version
    g.apply(ev("setns", 31, ns={"uts": 103}, before={"uts": 500}, fd=3))
    orphaned = {c["id"]: c["data"] for c in g.diff_since(v)["changes"] if c["entity"] == "namespace"}
    assert orphaned["uts:4:500:0"]["pending_end"] is True
    v = g.version
    g.apply(ev("setns", 30, ns={"uts": 500}, before={"uts": 103}, fd=3))
    back = {c["id"]: c["data"] for c in g.diff_since(v)["changes"] if c["entity"] == "namespace"}
    assert back["uts:4:500:0"]["pending_end"] is False and back["uts:4:500:0"]["pids"] == [30]
    assert g.process(30)["ns"]["uts"] == "uts:4:500:0" and g.process(30)["ns"]["net"] == "net:4:102:0"
    assert g.check_invariants() == []


def test_state_round_trip_and_exports():
    g = fresh_graph(pids=(1, 50))
    g.apply(ev("clone", 50, ns=with_(HOST, pid=700, pid_for_children=700, mnt=701), before=HOST,
               child_pid=51, raw_flags=nstypes.CLONE_NEWPID | nstypes.CLONE_NEWNS | 17))
    g.apply(ev("exec", 51, ns=with_(HOST, pid=700, pid_for_children=700, mnt=701), filename="/bin/sleep",
               comm="sleep"))
    pidns = g.namespace("pid:700")
    assert pidns["parent"] == 101 and pidns["parent_id"] == "pid:4:101:0"
    copy = NamespaceGraph.from_state(g.export_state())
    a, b = g.to_json(), copy.to_json()
    a.pop("time"), b.pop("time")
    assert a == b
    dot = g.to_dot()
    assert dot.startswith("digraph") and '"pid:4:700:0" -> "pid:4:101:0"' in dot


def test_reconcile_repairs_a_stale_model():
    g = fresh_graph(pids=(1, 50, 60))
    v0 = g.version
    # The model missed 60's exit and 61's birth and 50's unshare.
    snap = host_snapshot(pids=(1, 50, 61), taken_at=5000.0)
    snap.processes[50].ns["uts"] = (DEV, 800)
    snap.namespaces[("uts", DEV, 800)] = NsInfo("uts", 800, DEV)
    repaired = g.reconcile(snap, since_version=v0)
    assert repaired == 3
    assert g.process(60) is None and g.process(61)["repaired"]
    assert g.process(50)["ns"]["uts"] == "uts:4:800:0"
    assert g.check_invariants() == []
    assert g.reconcile(snap, since_version=g.version) == 0


def test_bad_events_are_counted_not_raised():
    g = fresh_graph()
    g.apply(ev("bogus", 5))
    g.apply(ev("clone", 5, ns={"net": "x"}, before=HOST, child_pid=6))   # garbage inode
    g.apply(ev("exit", 424242))                                           # unknown pid: nothing to do
    g.apply(ev("setns", 7, ns=HOST, before=HOST, ret=-1, raw_flags=nstypes.CLONE_NEWNET))
    assert g.counters["failed_calls"] == 1
    g.apply(ev("clone", 1, ns={"bogus_slot": 5}, before=HOST, child_pid=8))
    assert g.counters["rejected"] >= 3
    assert g.process(6) is None and g.process(8) is None
    assert g.check_invariants() == []
    assert g.to_json()["counters"]["events"] == 5


def _stream(n=400, seed=7):
    """Forks, execs, unshares, setns and exits of a small host, with maps shared as decoded."""
    import random
    from types import MappingProxyType
    rng = random.Random(seed)
    procs = {50: dict(HOST)}
    out, next_pid, inode = [], 1000, 900
    for _ in range(n):
        pid = rng.choice(sorted(procs))
        cur = MappingProxyType(dict(procs[pid]))
        r = rng.random()
        if r < 0.35 or len(procs) < 3:
            next_pid += 1
            procs[next_pid] = dict(cur)
            out.append(ev("clone", pid, ns=cur, before=cur, child_pid=next_pid, raw_flags=17, shared=True))
        elif r < 0.55:
            out.append(ev("exec", pid, ns=cur, filename="/bin/true", shared=True))
        elif r < 0.85 and pid != 50:
            del procs[pid]
            out.append(ev("exit", pid))
        elif r < 0.93:
            inode += 1
            procs[pid] = new = with_(cur, uts=inode)
            out.append(ev("unshare", pid, ns=new, before=cur, raw_flags=nstypes.CLONE_NEWUTS))
        else:
            procs[pid] = new = with_(cur, net=102)          # back to the host's
            out.append(ev("setns", pid, ns=new, before=cur, raw_flags=nstypes.CLONE_NEWNET))
    out.append(ev("clone", 50, ns=HOST, before=HOST, child_pid=5, raw_flags=17, ret=-11))   # failed
    out.append(ev("bogus", 50))
    return out


def test_apply_batch_is_apply_event_by_event_with_one_notification():
    events = _stream()
    one, batched = fresh_graph(pids=(1, 50)), fresh_graph(pids=(1, 50))
    heard = []
    batched.subscribe(heard.append)
    journal_one, journal_batched = [], []
    one.add_journal(lambda kind, payload, seq: journal_one.append((kind, payload.seq, seq)))
    batched.add_journal(lambda kind, payload, seq: journal_batched.append((kind, payload.seq, seq)))
    v0 = one.version
    for e in events:
        one.apply(e)
    batched.apply_batch(events[:150])
    assert heard == [batched.version]
    batched.apply_batch(iter(events[150:]))
    assert heard[-1] == batched.version and len(heard) == 2
    a, b = one.to_json(), batched.to_json()
    a.pop("time"), b.pop("time")
    assert a == b
    assert one.version == batched.version and one.version - v0 > len(events) // 2
    assert one.changes_since(0) == batched.changes_since(0)
    assert one.diff_since(v0) == batched.diff_since(v0)
    assert journal_one == journal_batched and len(journal_one) == len(events)
    assert one.counters["failed_calls"] == 1 and one.counters["rejected"] == 1
    assert one.check_invariants() == [] and batched.check_invariants() == []
    batched.apply_batch([])
    assert len(heard) == 2                        # nothing changed: nobody is told


def test_change_only_events_are_completed_from_the_model():
    """ABI 4 records name only what changed; a plain fork names nothing at all."""
    g = fresh_graph(pids=(1, 50))
    # unshare(CLONE_NEWPID): only pid_for_children changes; the caller stays in its pid namespace.
    g.apply(ev("unshare", 50, ns={"pid_for_children": 700}, before={"pid_for_children": 101},
               raw_flags=nstypes.CLONE_NEWPID))
    p50 = g.process(50)["ns"]
    assert p50["pid_for_children"] == "pid:4:700:0" and p50["pid"] == "pid:4:101:0"
    assert g.namespace("pid:4:700:0")["parent_id"] == "pid:4:101:0"
    # Brief forks: the child is in its parent's pid_for_children, and so are its children.
    brief = dict(ns={}, before={}, raw_flags=0, brief=True, uid=None, ppid=None, syscall=None)
    g.apply(ev("clone", 50, child_pid=51, **brief))
    g.apply(ev("clone", 51, child_pid=52, **brief))
    for pid in (51, 52):
        ns = g.process(pid)["ns"]
        assert ns["pid"] == ns["pid_for_children"] == "pid:4:700:0"
        assert {s: n for s, n in ns.items() if not s.startswith("pid")} == \
            {s: n for s, n in p50.items() if not s.startswith("pid")}
    assert g.process(51)["uid"] == 0 and g.process(52)["ppid"] == 51
    # A change-only unshare keeps the other slots; the new namespace's owner is the
    # caller's user namespace, which the record does not name.
    g.apply(ev("unshare", 51, ns={"uts": 800}, before={"uts": 103}, raw_flags=nstypes.CLONE_NEWUTS))
    assert g.process(51)["ns"]["uts"] == "uts:4:800:0" and g.process(51)["ns"]["net"] == "net:4:102:0"
    assert g.namespace("uts:4:800:0")["owner_id"] == "user:4:105:0"
    # CLONE_PARENT, as the fork showed it: the child is its grandparent's.
    g.apply(ev("clone", 52, child_pid=53, **dict(brief, raw_flags=0x00008000)))
    assert g.process(53)["ppid"] == 51
    assert g.check_invariants() == []
    assert not g.needs_repair


def test_brief_fork_of_an_unknown_parent_asks_for_a_repair():
    g = fresh_graph(pids=(1,))
    g.apply(ev("clone", 900, child_pid=901, ns={}, before={}, brief=True, uid=None, ppid=None, syscall=None))
    assert g.process(901) is not None and g.needs_repair


def test_a_namespaces_container_does_not_depend_on_set_order():
    # Two processes of different containers join net 300, the later-loaded one first: the
    # live member set and the one a checkpoint rebuilds (in process order) iterate differently.
    g = NamespaceGraph(dev=DEV)
    g.load_snapshot(host_snapshot(pids=(1,)))
    for pid, cid in ((16, "a" * 64), (8, "b" * 64)):
        g.apply_ops([{"op": "proc", "pid": pid, "ppid": 1, "uid": 0, "comm": "sh", "cmdline": ["sh"],
                      "cgroup": "0::/", "ns": HOST, "ts": 1.0,
                      "container": {"id": cid, "name": cid[:1], "image": None, "runtime": "docker", "pid": pid,
                                    "labels": {}, "state": None, "pod_uid": None, "source": "test"}}])
    g.apply(ev("unshare", 8, ns=with_(HOST, net=300), before=HOST, raw_flags=nstypes.CLONE_NEWNET))
    g.apply(ev("setns", 16, ns=with_(HOST, net=300), before=HOST, raw_flags=nstypes.CLONE_NEWNET))
    copy = NamespaceGraph.from_state(g.export_state())
    assert g.namespace("net:300")["container"] == copy.namespace("net:300")["container"] == "b"
