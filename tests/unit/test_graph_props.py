"""Property tests: random, kernel-like event sequences keep the model's invariants.

A small simulator plays the kernel: it allocates the lowest free inode (so
numbers are recycled at once, as Linux does), keeps namespaces alive by the
kernel's references (member and *_for_children slots, owned namespaces, child
pid namespaces), and emits the Events the probes would.  The model must then
agree with the simulator exactly, whatever the sequence.
"""

from __future__ import annotations

import collections
import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracer import nstypes
from tracer.events.event import Event
from tracer.graph.model import NamespaceGraph
from tracer.history.replay import replay_records
from tracer.host.snapshot import NsInfo, ProcInfo, Snapshot

DEV = 4
SLOTS = ("mnt", "pid", "pid_for_children", "net", "uts", "ipc", "user")
TYPES = ("mnt", "pid", "net", "uts", "ipc", "user")
FLAG = {t: nstypes.TYPE_FLAGS[t] for t in TYPES}


class Kernel:
    def __init__(self):
        self.ns = {}            # inode -> dict(type, owner, parent)
        self.procs = {}         # pid -> {slot: inode}
        self.created = 0
        self.next_pid = 2
        self.seq = itertools.count(1)
        self.ts = 1000.0
        host = {}
        for t in TYPES:
            host[t] = self._alloc(t, None, None, count=False)
        for t in TYPES:
            if t != "user":
                self.ns[host[t]]["owner"] = host["user"]
        self.procs[1] = {s: host[s.replace("_for_children", "")] for s in SLOTS}

    def _alloc(self, t, owner, parent, count=True):
        inode = 10
        while inode in self.ns:
            inode += 1
        self.ns[inode] = {"type": t, "owner": owner, "parent": parent}
        if count:
            self.created += 1
        return inode

    def _refs(self):
        refs = collections.Counter()
        for slots in self.procs.values():
            for inode in slots.values():
                refs[inode] += 1
        for info in self.ns.values():
            for rel in (info["owner"], info["parent"]):
                if rel is not None:
                    refs[rel] += 1
        return refs

    def collect(self):
        while True:
            refs = self._refs()
            dead = [i for i in self.ns if refs[i] == 0]
            if not dead:
                return
            for i in dead:
                del self.ns[i]

    def snapshot(self):
        namespaces = {(i["type"], DEV, inode): NsInfo(i["type"], inode, DEV, owner_inode=i["owner"],
                                                      parent_inode=i["parent"])
                      for inode, i in self.ns.items()}
        procs = {pid: ProcInfo(pid, 1, 0, "p", ["p"], pid, "0::/", {s: (DEV, v) for s, v in slots.items()})
                 for pid, slots in self.procs.items()}
        return Snapshot(self.ts, procs, namespaces, collections.Counter())

    def _event(self, kind, pid, ns, before=None, **kw):
        self.ts += 0.001
        if kind in ("clone", "unshare", "setns"):
            kw.setdefault("syscall", kind)
        return Event(kind=kind, seq=next(self.seq), ts=self.ts, pid=pid, tid=pid, ppid=1, uid=0, vpid=pid,
                     comm="p%d" % pid, ns=dict(ns), ns_before=dict(before) if before is not None else None, **kw)

    def _create(self, slots, types):
        """New namespaces of types for a task whose slots are `slots` (updated in place)."""
        old = dict(slots)
        if "user" in types:
            slots["user"] = self._alloc("user", old["user"], old["user"])
        for t in types:
            if t == "user":
                continue
            if t == "pid":
                slots["pid_for_children"] = self._alloc("pid", slots["user"], old["pid_for_children"])
            else:
                slots[t] = self._alloc(t, slots["user"], None)

    def fork(self, parent, types):
        pslots = self.procs[parent]
        child = dict(pslots)
        child["pid"] = pslots["pid_for_children"]
        self._create(child, types)
        if "pid" in types:
            child["pid"] = child["pid_for_children"]
        pid = self.next_pid
        self.next_pid += 1
        self.procs[pid] = child
        flags = sum(FLAG[t] for t in types) | 17
        return self._event("clone", parent, child, pslots, raw_flags=flags, child_pid=pid)

    def unshare(self, pid, types):
        before = dict(self.procs[pid])
        self._create(self.procs[pid], types)
        ev = self._event("unshare", pid, self.procs[pid], before, raw_flags=sum(FLAG[t] for t in types))
        self.collect()
        return ev

    def setns(self, pid, other, t):
        before = dict(self.procs[pid])
        slot = "pid_for_children" if t == "pid" else t
        self.procs[pid][slot] = self.procs[other]["pid" if t == "pid" else t]
        ev = self._event("setns", pid, self.procs[pid], before, raw_flags=FLAG[t])
        self.collect()
        return ev

    def exec_(self, pid):
        return self._event("exec", pid, self.procs[pid], filename="/bin/true")

    def exit(self, pid):
        del self.procs[pid]
        ev = self._event("exit", pid, {})
        self.collect()
        return ev


types_st = st.lists(st.sampled_from(TYPES), unique=True, max_size=3)
step_st = st.one_of(
    st.tuples(st.just("fork"), st.integers(0, 50), types_st),
    st.tuples(st.just("unshare"), st.integers(0, 50), types_st.filter(bool)),
    st.tuples(st.just("setns"), st.integers(0, 50), st.tuples(st.integers(0, 50),
                                                               st.sampled_from(("net", "uts", "ipc", "mnt", "pid")))),
    st.tuples(st.just("exec"), st.integers(0, 50), st.none()),
    st.tuples(st.just("exit"), st.integers(0, 50), st.none()),
)


def run(steps, check_each=False):
    k = Kernel()
    g = NamespaceGraph(dev=DEV, ended_retention=100000)
    g.load_snapshot(k.snapshot())
    for name, who, arg in steps:
        pids = sorted(k.procs)
        pid = pids[who % len(pids)]
        if name == "fork":
            e = k.fork(pid, arg)
        elif name == "unshare":
            e = k.unshare(pid, arg)
        elif name == "setns":
            e = k.setns(pid, pids[arg[0] % len(pids)], arg[1])
        elif name == "exec":
            e = k.exec_(pid)
        else:
            if pid == 1:
                continue
            e = k.exit(pid)
        g.apply(e)
        if check_each:
            assert g.check_invariants() == []
    return k, g


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(step_st, max_size=60))
def test_random_sequences_keep_invariants_and_match_the_kernel(steps):
    k, g = run(steps, check_each=True)
    g.end_orphans()
    assert g.check_invariants() == []
    # every process is in exactly one namespace of each type, the kernel's one
    assert g.process_ns() == k.procs
    for pid, slots in g.process_ns().items():
        data = g.process(pid)
        assert set(data["ns"]) == set(SLOTS)
    # the live namespaces are the kernel's, ended ones have no members
    assert set(g.alive_refs()) == {(i["type"], inode) for inode, i in k.ns.items()}
    history = g.history()
    for n in history:
        if not n["alive"]:
            assert n["pids"] == [] and n["ended"] is not None
    # every namespace the kernel created is one entry in history, recycled inodes included
    created = [n for n in history if n["creator"] is not None]
    assert len(created) == k.created
    assert len({n["id"] for n in history}) == len(history)


@settings(max_examples=40, deadline=None)
@given(st.lists(step_st, max_size=40))
def test_replaying_the_journal_rebuilds_the_same_graph(steps):
    k = Kernel()
    g = NamespaceGraph(dev=DEV)
    journal = []
    g.add_journal(lambda kind, payload, seq: journal.append((kind, payload)))
    g.load_snapshot(k.snapshot())
    for name, who, arg in steps:
        pids = sorted(k.procs)
        pid = pids[who % len(pids)]
        if name == "exit" and pid != 1:
            g.apply(k.exit(pid))
        elif name == "fork":
            g.apply(k.fork(pid, arg))
        elif name == "unshare":
            g.apply(k.unshare(pid, arg))
    g.reconcile(k.snapshot(), since_version=g.version, full=False)
    copy = NamespaceGraph(dev=DEV)
    replay_records(copy, journal)
    a, b = g.to_json(), copy.to_json()
    for d in (a, b):
        d.pop("time")
    assert a == b
