"""Synthetic inputs for the model: a small host as a /proc Snapshot, and Events made by hand.

For tests of any lane that need a real NamespaceGraph without root or a kernel
(`from synthetic import ...`: tests/ is on sys.path through its conftest.py).
The host has one namespace of each type; inodes are small numbers, the nsfs
device is DEV.
"""

from __future__ import annotations

import collections
import itertools

from tracer.events.event import Event
from tracer.graph import NamespaceGraph
from tracer.host.snapshot import NsInfo, ProcInfo, Snapshot

DEV = 4
HOST = {"mnt": 100, "pid": 101, "pid_for_children": 101, "net": 102, "uts": 103, "ipc": 104,
        "user": 105, "cgroup": 106, "time": 107, "time_for_children": 107}
_seq = itertools.count(1)


def ev(kind, pid, ns=None, before=None, ts=None, shared=False, **kw) -> Event:
    """An Event as the decoder would make it (ns/before: slot -> inode); its ns map is
    copied unless shared (decoded events share their maps)."""
    seq = next(_seq)
    base = dict(kind=kind, seq=seq, ts=ts if ts is not None else 1000.0 + seq / 1000, pid=pid,
                tid=kw.pop("tid", pid), ppid=kw.pop("ppid", 1), uid=0, vpid=pid,
                comm=kw.pop("comm", "sh"), ns=ns if shared else dict(ns or {}), ns_before=before)
    if kind in ("clone", "unshare", "setns"):
        base.setdefault("syscall", kw.pop("syscall", "clone" if kind == "clone" else kind))
    base.update(kw)
    return Event(**base)


def with_(ns: dict, **changes) -> dict:
    out = dict(ns)
    out.update(changes)
    return out


def host_snapshot(pids=(1,), extra_ns=(), taken_at=999.0) -> Snapshot:
    """pids, all in the host's namespaces (pid 1 is init), plus the namespaces extra_ns."""
    namespaces = {}
    for slot, inode in HOST.items():
        t = slot.replace("_for_children", "")
        namespaces[(t, DEV, inode)] = NsInfo(t, inode, DEV, ns_id=inode, owner_inode=None if t == "user" else 105)
    for info in extra_ns:
        namespaces[(info.type, DEV, info.inode)] = info
    procs = {pid: ProcInfo(pid, 0 if pid == 1 else 1, 0, "init" if pid == 1 else "sh", ["sh"], pid, "0::/",
                           {s: (DEV, i) for s, i in HOST.items()}) for pid in pids}
    return Snapshot(taken_at, procs, namespaces, collections.Counter())


def fresh_graph(pids=(1,), **kwargs) -> NamespaceGraph:
    """An offline graph holding host_snapshot(pids)."""
    g = NamespaceGraph(dev=DEV, **kwargs)
    g.load_snapshot(host_snapshot(pids))
    return g
