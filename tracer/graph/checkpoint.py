"""Checkpoints: the whole model as JSON-safe state, and back (history store, recordings).

`export_state(g)` holds everything needed to continue from that moment;
`load_state(g, state)` fills a new, empty model with it (NamespaceGraph.from_state).
A replay of the inputs journaled after the checkpoint then rebuilds the live
graph exactly (history/replay.py).
"""

from __future__ import annotations

from .entities import MEMBER_SLOTS, Namespace, Process
from .schema import namespace_id

_NS_ATTRS = ("ended", "owner_inode", "parent_inode", "owner_uid", "uid_map", "gid_map",
             "orphaned_at", "repaired")


def export_state(g) -> dict:
    """Called under g's lock."""
    table = g.namespaces
    spaces = list(table.alive.values()) + [ns for ns in table.ended if ns.ended is not None]
    return {
        "input_seq": g.input_seq, "version": g.version, "dev": g.dev, "node": g.node,
        "ended_retention": table.retention,
        "gens": [[t, i, gen] for (t, i), gen in table.gens.items()],
        "namespaces": [_ns_state(ns) for ns in spaces],
        "processes": [_proc_state(p) for p in g.processes.procs.values()],
        "containers": list(g.containers.values()),
        "host": {slot: ns.id for slot, ns in g.host_ns.items()},
        "counters": dict(g.counters),
        "joins": g.joins.export_state(),
    }


def load_state(g, state: dict) -> None:
    """Fill the empty model g (made with state["dev"]) from export_state output."""
    table = g.namespaces
    g.input_seq = state["input_seq"]
    g.changes.version = state["version"]
    table.gens.update({(t, i): gen for t, i, gen in state["gens"]})
    by_id = {}
    for s in state["namespaces"]:
        ns = Namespace(s["type"], g.dev, s["inode"], s["gen"], s["ns_id"], s["created"], s["creator"])
        for attr in _NS_ATTRS:
            setattr(ns, attr, s[attr])
        ns.pinned, ns.holders = tuple(s["pinned"]), tuple(s["holders"])
        ns.refs = s["refs"]
        by_id[ns.id] = ns
        table.restore(ns)
    for s in state["namespaces"]:
        ns = by_id[namespace_id(s["type"], g.dev, s["inode"], s["gen"])]
        ns.owner = by_id.get(s["owner_id"]) if s["owner_id"] else None
        ns.parent = by_id.get(s["parent_id"]) if s["parent_id"] else None
        ns.children = s["children"]
    for s in state["processes"]:
        p = Process(s["pid"], s["ppid"], s["uid"], s["comm"])
        p.cmdline, p.cgroup, p.start_ticks = s["cmdline"], s["cgroup"], s["start_ticks"]
        p.container, p.fresh, p.filename, p.repaired = s["container"], s["fresh"], s["filename"], s["repaired"]
        p.ns = {slot: by_id[i] for slot, i in s["ns"].items()}
        for slot, ns in p.ns.items():
            if slot in MEMBER_SLOTS:
                ns.members.add(p.pid)
        if s.get("threads"):
            p.threads = {int(t): {slot: by_id[i] for slot, i in m.items()} for t, m in s["threads"].items()}
        g.processes.add(p)
        g.processes.set_zombie(p, bool(s.get("zombie")))
    g.containers.update({c["id"]: dict(c) for c in state["containers"]})
    # Namespace ids (inodes in checkpoints written before ids were stored).
    host = {slot: table.by_id.get(ref) if isinstance(ref, str) else table.alive.get(ref)
            for slot, ref in state["host"].items()}
    g.host_ns = {slot: ns for slot, ns in host.items() if ns is not None}
    g.counters.update(state["counters"])
    g.joins.load_state(state.get("joins") or {})


def _ns_state(ns) -> dict:
    return {"type": ns.type, "inode": ns.inode, "gen": ns.gen, "ns_id": ns.ns_id, "created": ns.created,
            "creator": ns.creator, "ended": ns.ended, "owner_inode": ns.owner_inode,
            "parent_inode": ns.parent_inode, "owner_uid": ns.owner_uid, "uid_map": ns.uid_map,
            "gid_map": ns.gid_map, "orphaned_at": ns.orphaned_at, "repaired": ns.repaired,
            "pinned": list(ns.pinned), "holders": list(ns.holders), "refs": ns.refs,
            "children": ns.children,
            "owner_id": ns.owner.id if ns.owner is not None else None,
            "parent_id": ns.parent.id if ns.parent is not None else None}


def _proc_state(p) -> dict:
    out = {"pid": p.pid, "ppid": p.ppid, "uid": p.uid, "comm": p.comm, "cmdline": p.cmdline,
           "cgroup": p.cgroup, "start_ticks": p.start_ticks, "container": p.container, "fresh": p.fresh,
           "filename": p.filename, "repaired": p.repaired, "zombie": p.zombie,
           "ns": {slot: ns.id for slot, ns in p.ns.items()}}
    if p.threads:
        out["threads"] = {str(t): {s: n.id for s, n in m.items()} for t, m in p.threads.items()}
    return out
