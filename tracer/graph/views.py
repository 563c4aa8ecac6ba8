"""JSON views of the model: the Graph JSON, diffs, lookups and history (shapes: schema.py).

Functions of a NamespaceGraph `g`, called under its lock by its methods of the
same name.  Building a process's JSON may read its command line first
(`g.ensure_read`: a lazy /proc read, journaled, and a change of its own).
"""

from __future__ import annotations

import time
from typing import List, Optional, Tuple

from .entities import MEMBER_SLOTS
from .schema import (ContainerDetail, Counters, GraphDiff, GraphJSON, NamespaceDetail, NamespaceJSON,
                     ProcessJSON)

# Shortest container-id prefix a lookup accepts (as `docker` and the catalog do).
MIN_ID_PREFIX = 4


def host_ids(g) -> set:
    return {ns.id for ns in g.host_ns.values()}


def container_name(g, cid) -> Optional[str]:
    """A container's display name: its name when known, else its short id."""
    if cid is None:
        return None
    c = g.containers.get(cid)
    return c.get("name") if c else cid[:12]


def member_containers(g, ns) -> List[str]:
    """The container ids of a namespace's member processes, once each, in the order of
    their lowest member pid (pid order, not set order: the same live and replayed)."""
    procs = g.processes.procs
    found = {}
    for pid in sorted(ns.members):
        proc = procs.get(pid)
        if proc is not None:
            g.ensure_read(proc)
            if proc.container is not None:
                found.setdefault(proc.container, pid)
    return list(found)


def owner_by_rule(g, ns_type: str, candidates: List[str], members) -> Optional[str]:
    """The owner among member containers when no creating event named it (a namespace
    found by a /proc read): a container that joined another's namespace of this type
    at creation (docker inspect's `container:X` modes) names X; else the one whose
    init process is a member (ties: the lowest init pid); else, with no engine data
    (cgroup paths only), the container of the lowest member pid."""
    if not candidates:
        return None
    containers = g.containers

    def joined(cid):
        return ((containers.get(cid) or {}).get("shares") or {}).get(ns_type)
    for cid in sorted(candidates):
        target = joined(cid)
        if target:
            # `--network container:B` where B itself joined A's: A made it.  Follow the
            # chain (bounded: a damaged record must not loop) to a container that did not join.
            for _ in range(len(containers)):
                further = joined(target)
                if not further or further == target:
                    break
                target = further
            return target
    inits = sorted(((containers.get(cid) or {}).get("pid"), cid) for cid in candidates
                   if (containers.get(cid) or {}).get("pid") in members)
    return inits[0][1] if inits else candidates[0]


def namespace_owner(g, ns, hosts: set) -> Tuple[Optional[str], List[str]]:
    """(owner container id, sharer container ids sorted) of a namespace; (None, []) for
    the host's.

    The owner is the container whose runtime created the namespace (the creating
    event's container, kept in its creator); else owner_by_rule.  Every other member
    container shares it.  Deterministic: nothing here depends on set order, so the
    answer is the same live, replayed and from a fresh snapshot."""
    if ns.id in hosts:
        return None, []
    candidates = member_containers(g, ns)
    owner = (ns.creator or {}).get("container_id") or owner_by_rule(g, ns.type, candidates, ns.members)
    return owner, sorted(cid for cid in candidates if cid != owner)


def namespace_container(g, ns, hosts: set) -> Optional[str]:
    """The owning container's id (namespace_owner), None for the host's namespaces."""
    return namespace_owner(g, ns, hosts)[0]


def thread_members(g) -> dict:
    """namespace id -> sorted tids of threads that are in it on their own (a thread that
    called unshare or setns: its process is not a member, the thread is)."""
    out = {}
    for proc in list(g.processes.procs.values()):
        if proc.threads:
            for tid, tmap in proc.threads.items():
                for slot, ns in tmap.items():
                    if slot in MEMBER_SLOTS and proc.ns.get(slot) is not ns:
                        out.setdefault(ns.id, set()).add(tid)
    return {k: sorted(v) for k, v in out.items()}


def ns_json(g, ns, hosts: set, tids: Optional[dict] = None) -> NamespaceJSON:
    if tids is None:
        tids = thread_members(g)
    cid, sharers = namespace_owner(g, ns, hosts)
    owner, parent = ns.owner, ns.parent
    cname = container_name(g, cid)
    if cid is not None and cid not in g.containers and (ns.creator or {}).get("container_id") == cid:
        cname = ns.creator.get("container") or cname    # gone since: the name it had then
    return {
        "id": ns.id, "type": ns.type, "inode": ns.inode, "dev": ns.dev, "generation": ns.gen,
        "ns_id": ns.ns_id, "alive": ns.ended is None, "created": ns.created, "ended": ns.ended,
        "creator": ns.creator, "pids": sorted(ns.members), "tids": tids.get(ns.id, []), "container": cname,
        "container_id": cid,
        "sharers": [container_name(g, s) for s in sharers], "sharer_ids": sharers,
        "owner": owner.inode if owner is not None else ns.owner_inode,
        "owner_id": owner.id if owner is not None else None,
        "parent": parent.inode if parent is not None else ns.parent_inode,
        "parent_id": parent.id if parent is not None else None,
        "owner_uid": ns.owner_uid, "uid_map": ns.uid_map, "gid_map": ns.gid_map,
        "pinned": list(ns.pinned), "holders": list(ns.holders),
        "pending_end": ns.orphaned_at is not None, "repaired": ns.repaired,
    }


def proc_json(g, proc) -> ProcessJSON:
    g.ensure_read(proc)
    cmd = " ".join(proc.cmdline) if proc.cmdline else (proc.filename or proc.comm)
    out = {"pid": proc.pid, "ppid": proc.ppid, "comm": proc.comm, "cmdline": cmd, "uid": proc.uid,
           "ns": {slot: ns.id for slot, ns in proc.ns.items()},
           "container": container_name(g, proc.container), "container_id": proc.container,
           "repaired": proc.repaired}
    if proc.threads:
        out["threads"] = {str(tid): {s: n.id for s, n in m.items()} for tid, m in proc.threads.items()}
    if proc.zombie:
        out["zombie"] = True
    return out


def counters(g) -> Counters:
    table = g.namespaces
    out = dict(g.counters)
    out.update({"namespaces_alive": len(table.alive), "namespaces_by_type": table.counts_by_type(),
                "namespaces_ended_kept": len(table.ended), "processes": len(g.processes.procs),
                "orphans": len(table.orphans), "joins": len(g.joins.sessions),
                "housekeeping_joins": g.joins.housekeeping_count()})
    return out


def graph_json(g, include_ended: bool = True, include_processes: bool = True,
               include_housekeeping: bool = False) -> GraphJSON:
    hosts = host_ids(g)
    table = g.namespaces
    spaces = list(table.alive.values())
    if include_ended:
        spaces += [ns for ns in table.ended if ns.ended is not None]
    tids = thread_members(g)
    namespaces = [ns_json(g, ns, hosts, tids) for ns in spaces]
    processes = [proc_json(g, p) for p in list(g.processes.procs.values())] if include_processes else []
    return {
        "version": g.version, "time": time.time(), "node": g.node,
        "host_ns": {slot: ns.id for slot, ns in g.host_ns.items()},
        "namespaces": namespaces,
        "processes": processes,
        "containers": [dict(c) for c in g.containers.values()],
        "joins": g.joins.to_json(include_housekeeping),
        "counters": counters(g),
    }


def diff_since(g, version: int) -> Optional[GraphDiff]:
    net = g.changes.net_since(version)
    if net is None:
        return None
    # Entity reads below may record changes (lazy /proc reads): those belong
    # to the next diff, so this one ends at the version seen now.
    current = g.version
    hosts = host_ids(g)
    tids = thread_members(g)
    changes = []
    for entity, ident, op in net:
        data = None
        if op != "remove":
            data = entity_json(g, entity, ident, hosts, tids)
            if data is None:
                op = "remove"
        changes.append({"op": op, "entity": entity, "id": ident, "data": data})
    changes.reverse()
    return {"version": current, "since": version, "changes": changes}


def entity_json(g, entity: str, ident, hosts: set, tids: Optional[dict] = None):
    if entity == "namespace":
        ns = g.namespaces.by_id.get(ident)
        return ns_json(g, ns, hosts, tids) if ns is not None else None
    if entity == "process":
        proc = g.processes.get(ident)
        return proc_json(g, proc) if proc is not None else None
    if entity == "container":
        c = g.containers.get(ident)
        return dict(c) if c is not None else None
    if entity == "join":        # diffs leave the engines' own switches out, as graph_json does
        return g.joins.get_json(ident, include_housekeeping=False)
    return None


# -- lookups --------------------------------------------------------------------------------

def find_namespace(g, ident: str):
    """By id "type:dev:inode:gen", or "type:inode" for the live one."""
    ns = g.namespaces.by_id.get(ident)
    if ns is None:
        parts = ident.split(":")
        if len(parts) == 2 and parts[1].isdigit():
            ns = g.namespaces.live(parts[0], int(parts[1]))
    return ns


def namespace_detail(g, ident: str) -> Optional[NamespaceDetail]:
    ns = find_namespace(g, ident)
    if ns is None:
        return None
    out = ns_json(g, ns, host_ids(g))
    procs = g.processes.procs
    out["processes"] = [proc_json(g, procs[p]) for p in sorted(ns.members) if p in procs]
    return out


def find_container(g, name_or_id: str) -> Optional[str]:
    """A container id by name, id, or id prefix of MIN_ID_PREFIX+ characters."""
    for c in g.containers.values():
        if c.get("name") == name_or_id or c["id"] == name_or_id or \
                (len(name_or_id) >= MIN_ID_PREFIX and c["id"].startswith(name_or_id)):
            return c["id"]
    return None


def container_detail(g, name_or_id: str) -> Optional[ContainerDetail]:
    cid = find_container(g, name_or_id)
    if cid is None:
        return None
    hosts = host_ids(g)
    procs = [p for p in g.processes.procs.values() if p.container == cid]
    owned, shared = [], []
    tids = thread_members(g)
    for ns in list(g.namespaces.alive.values()):
        owner, sharers = namespace_owner(g, ns, hosts)
        if owner == cid:
            owned.append(ns)
        elif cid in sharers:
            shared.append(ns)
    return {"container": dict(g.containers[cid]),
            "processes": [proc_json(g, p) for p in procs],
            "namespaces": [ns_json(g, ns, hosts, tids) for ns in owned],
            "shared": [ns_json(g, ns, hosts, tids) for ns in shared]}


def history(g, ns_type: Optional[str] = None) -> List[NamespaceJSON]:
    hosts = host_ids(g)
    tids = thread_members(g)
    return [ns_json(g, ns, hosts, tids) for ns in list(g.namespaces.by_id.values())
            if ns_type is None or ns.type == ns_type]
