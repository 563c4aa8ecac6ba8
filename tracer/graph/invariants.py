"""The model's invariants, checked on demand (tests, the debug endpoint)."""

from __future__ import annotations

from typing import List

from ..nstypes import SLOT_TYPE
from .entities import MEMBER_SLOTS


def check_invariants(g) -> List[str]:
    """Broken invariants of model g (empty when all hold); called under g's lock."""
    problems = []
    procs = g.processes.procs
    table = g.namespaces
    for pid, proc in procs.items():
        for slot, ns in proc.ns.items():
            if ns.ended is not None:
                problems.append("pid %d slot %s in ended %s" % (pid, slot, ns.id))
            if slot in MEMBER_SLOTS and pid not in ns.members:
                problems.append("pid %d missing from members of %s" % (pid, ns.id))
            if SLOT_TYPE[slot] != ns.type:
                problems.append("pid %d slot %s holds a %s namespace" % (pid, slot, ns.type))
    for ns in table.alive.values():
        for pid in ns.members:
            proc = procs.get(pid)
            if proc is None or ns not in [proc.ns.get(s) for s in MEMBER_SLOTS]:
                problems.append("%s lists pid %d that is not in it" % (ns.id, pid))
        if table.alive.get(ns.inode) is not ns:
            problems.append("%s not indexed" % ns.id)
    for ns in table.ended:
        if ns.members:
            problems.append("ended %s has members" % ns.id)
    return problems


def recount(g, ts) -> int:
    """Rebuild what the model derives from its processes and relations, after an
    internal error may have left a change half-applied: every live namespace's
    members, references and children, the orphans, the fd-holder index; process
    slots that point at ended namespaces are dropped (the reconcile that follows
    reads those processes again).  Called under g's lock, as the "recount" op.
    Returns how many namespaces and processes it had to fix."""
    table = g.namespaces
    alive = list(table.alive.values())
    before = {ns: (frozenset(ns.members), ns.refs, ns.children) for ns in alive}
    for ns in alive:
        ns.members, ns.refs, ns.children = set(), 0, 0
    fixed = 0
    for proc in g.processes.procs.values():
        stale = [slot for slot, ns in proc.ns.items() if ns.ended is not None]
        for slot in stale:
            del proc.ns[slot]
        if stale:
            proc.sig = None
            fixed += 1
        for slot, ns in proc.ns.items():
            if slot in MEMBER_SLOTS:
                ns.members.add(proc.pid)
            else:
                ns.refs += 1
        for tid, tmap in list((proc.threads or {}).items()):
            for slot in [s for s, ns in tmap.items() if ns.ended is not None]:
                del tmap[slot]
            for ns in tmap.values():
                ns.refs += 1
    for ns in alive:
        for rel in (ns.owner, ns.parent):
            if rel is not None and rel is not ns and rel.ended is None:
                rel.children += 1
    table.held_by.clear()
    for ns in alive:
        table.set_holders(ns, tuple(ns.holders))
    for ns in alive:
        if ns.referenced():
            if ns.orphaned_at is not None:
                table.unorphan(ns)
        else:
            table.check_orphan(ns, ts)
        if before[ns] != (frozenset(ns.members), ns.refs, ns.children):
            fixed += 1
            g.changes.record("update", "namespace", ns.id)
    return fixed
