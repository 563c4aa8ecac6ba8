"""Ops: every input to the model that is not a tracer event, as a small JSON object.

Snapshot loads and repairs (reconcile.py), lazy /proc reads (procreader.py),
container updates, loss reports and the join timer all reach the model as ops,
so that a journal of (events, ops) replays to the very same graph offline.

  {"op": "ns", "type", "inode", ["ns_id", "owner_inode", "parent_inode", "owner_uid",
                "uid_map", "gid_map", "pinned", "holders", "created", "repair", "ts"]}
  {"op": "pins", "type", "inode", "local": [paths]} (pins in the reader's own mount namespace)
  {"op": "proc", "pid", "ns": {slot: inode}, ["ns_id", "ppid", "uid", "comm", "cmdline",
                "cgroup", "start_ticks", "container", "threads", "zombie", "repair", "ts"]}
  {"op": "proc_gone", "pid", ["zombie", "repair", "ts"]} (zombie: only if it is still one)      {"op": "ns_gone", "type", "inode", ["ended", "repair"]}
  {"op": "procread", "pid", "cmdline", "cgroup", ["container", "nested"]}
  {"op": "container", "data"}    {"op": "container_gone", "id"}
  {"op": "link"} (owners/parents from inodes)     {"op": "host"} (host namespaces from pid 1)
  {"op": "recount", "ts"} (rebuild members, references and orphans after an internal error)
  {"op": "lost", "n"}    {"op": "counted", "name", ["n"]}
  {"op": "join_command", "id", "command", ["source"]}    {"op": "joins_flush", "now"}

Each handler checks its op before it changes anything: a malformed op is a
BadEvent (counted as rejected, nothing applied).
"""

from __future__ import annotations

import time
from typing import Callable, Dict

from ..nstypes import MEMBER_TYPES
from .entities import BadEvent, Process, check_maps
from .invariants import recount

_NS_TYPES = frozenset(MEMBER_TYPES)
_INT, _STR, _NUMBER = (int,), (str,), (int, float)
_PROC_FIELDS = (("ppid", _INT), ("uid", _INT), ("comm", _STR), ("cgroup", _STR), ("start_ticks", _INT))
_NS_ATTRS = (("ns_id", _INT), ("owner_inode", _INT), ("parent_inode", _INT), ("owner_uid", _INT),
             ("uid_map", _STR), ("gid_map", _STR))


def _field(op: dict, key: str, types, optional: bool = False):
    """op[key], of one of the exact classes `types` (so True is no int), or None if optional."""
    value = op.get(key)
    if value is None and optional:
        return None
    if value.__class__ not in types:
        raise BadEvent("op %r: %s=%r" % (op.get("op"), key, value))
    return value


def _check_optional(op: dict, spec: tuple) -> None:
    """Each (key, classes) of spec is absent, None, or of those exact classes (one call:
    a snapshot load checks 10 000 ops)."""
    for key, types in spec:
        value = op.get(key)
        if value is not None and value.__class__ not in types:
            raise BadEvent("op %r: %s=%r" % (op.get("op"), key, value))


def _list_of(op: dict, key: str, item_type) -> list:
    value = op.get(key) or ()
    if value.__class__ is not list and value.__class__ is not tuple:
        raise BadEvent("op %r: %s=%r" % (op.get("op"), key, value))
    for item in value:
        if item.__class__ is not item_type:
            raise BadEvent("op %r: %s=%r" % (op.get("op"), key, value))
    return value


def _container(op: dict, key: str = "container"):
    data = op.get(key)
    if data is not None and not (data.__class__ is dict and data.get("id").__class__ is str):
        raise BadEvent("op %r: container %r" % (op.get("op"), data))
    return data


def note_container(g, data):
    """Keep a container's JSON (a change when it differs); its id, or None."""
    if not data:
        return None
    cid = data["id"]
    if g.containers.get(cid) != data:
        g.containers[cid] = dict(data)
        g.changes.record("update", "container", cid)
    return cid


# -- the handlers: (model, op, ts) --------------------------------------------------------

def op_ns(g, op, ts) -> None:
    ns_type, inode = _field(op, "type", _STR), _field(op, "inode", _INT)
    if ns_type not in _NS_TYPES:
        raise BadEvent("op 'ns': type %r" % ns_type)
    _check_optional(op, _NS_ATTRS)
    pinned = tuple(_list_of(op, "pinned", str)) if "pinned" in op else None
    holders = tuple(_list_of(op, "holders", int)) if "holders" in op else None
    created = _field(op, "created", _NUMBER, optional=True)
    nid = op.get("ns_id")
    table = g.namespaces
    ns = table.alive.get(inode)
    if ns is None or ns.type != ns_type or (nid is not None and ns.ns_id not in (None, nid)):
        if ns is not None:
            table.end_recycled(ns, ts)
        ns = table.add(ns_type, inode, nid, created, None)
        if op.get("repair"):
            ns.repaired = True
            g.counters["repaired"] += 1
    changed = False
    for attr, _ in _NS_ATTRS:
        value = op.get(attr)
        if value is not None and getattr(ns, attr) != value:
            setattr(ns, attr, value)
            changed = True
    if ns.ns_id is not None:
        table.by_nsid[ns.ns_id] = ns
    if pinned is not None and tuple(ns.pinned) != pinned:
        ns.pinned = pinned
        changed = True
    if holders is not None and tuple(ns.holders) != holders:
        table.set_holders(ns, holders)
        changed = True
    if ns.orphaned_at is not None and ns.referenced():
        table.unorphan(ns)
    if changed:
        g.changes.record("update", "namespace", ns.id)
    table.check_orphan(ns, ts)


def op_pins(g, op, ts) -> None:
    """The pins of a namespace in the reader's own mount namespace are now `local` (the mount
    table watch, tracer/host/nsrefresh.py); pins seen from other mount namespaces
    ("mnt:[N]/path") stay.  A namespace nothing holds any more once unpinned has ended
    (`ip netns del`): nothing else would tell."""
    ns_type, inode = _field(op, "type", _STR), _field(op, "inode", _INT)
    if ns_type not in _NS_TYPES:
        raise BadEvent("op 'pins': type %r" % ns_type)
    local = tuple(_list_of(op, "local", str))
    table = g.namespaces
    ns = table.live(ns_type, inode)
    if ns is None:
        if not local:
            return
        ns = table.add(ns_type, inode, None, None, None)
    # A mount point removed here is removed from the mount namespaces it propagated to as
    # well ("mnt:[N]" + the same path): `ip netns` makes /run/netns shared.  Where it was
    # not shared, the next reconcile puts the other copy back (a repair, counted).
    removed = {p for p in ns.pinned if not p.startswith("mnt:[")} - set(local)
    elsewhere = tuple(p for p in ns.pinned if p.startswith("mnt:[") and p[p.find("]") + 1:] not in removed)
    pinned = elsewhere + local
    if pinned != tuple(ns.pinned):
        ns.pinned = pinned
        g.changes.record("update", "namespace", ns.id)
    if ns.orphaned_at is not None and ns.referenced():
        table.unorphan(ns)
    table.check_orphan(ns, ts)
    if not local and ns.orphaned_at is not None:
        table.end(ns, ts)


def op_proc(g, op, ts) -> None:
    pid = op.get("pid")
    if pid.__class__ is not int:
        raise BadEvent("op 'proc': pid=%r" % (pid,))
    raw = op.get("ns") or {}
    try:
        ns_map = {slot: int(v) for slot, v in raw.items()}
    except (AttributeError, TypeError, ValueError):
        raise BadEvent("op 'proc': ns %r" % (raw,)) from None
    ids = op.get("ns_id") or {}
    check_maps(ns_map, ids)
    cmdline = _list_of(op, "cmdline", str) if op.get("cmdline") is not None else None
    _check_optional(op, _PROC_FIELDS)
    container = _container(op)
    processes = g.processes
    proc = processes.get(pid)
    if proc is not None and op.get("start_ticks") not in (None, proc.start_ticks) \
            and proc.start_ticks is not None:
        processes.remove(proc, ts)          # same pid, another process
        proc = None
    new = proc is None
    if new:
        proc = processes.add(Process(pid, op.get("ppid", 0), op.get("uid", 0), op.get("comm", "")))
    else:
        proc.ppid, proc.uid, proc.comm = op.get("ppid", proc.ppid), op.get("uid", proc.uid), op.get("comm", proc.comm)
    if "cmdline" in op:
        proc.cmdline = cmdline
        proc.cgroup = op.get("cgroup")
        proc.fresh = True
    proc.start_ticks = op.get("start_ticks", proc.start_ticks)
    if "container" in op:
        proc.container = note_container(g, container)
    processes.set_exact(proc, ns_map, ids, ts)
    processes.set_zombie(proc, op.get("zombie") is True)
    if "threads" in op or proc.zombie:      # a zombie's threads have exited
        processes.set_threads(proc, _thread_maps(op) if "threads" in op else {}, ts)
    if op.get("repair"):
        proc.repaired = True
        g.counters["repaired"] += 1
    changes = g.changes
    proc.version = changes.version if changes.bumped else changes.version + 1
    changes.record("add" if new else "update", "process", pid)


def _thread_maps(op: dict) -> dict:
    raw = op["threads"]
    try:
        maps = {int(tid): {slot: int(v) for slot, v in m.items()} for tid, m in raw.items()}
    except (AttributeError, TypeError, ValueError):
        raise BadEvent("op 'proc': threads %r" % (raw,)) from None
    check_maps(*maps.values())
    return maps


def op_proc_gone(g, op, ts) -> None:
    proc = g.processes.get(_field(op, "pid", _INT))
    if proc is not None and (proc.zombie or not op.get("zombie")):
        g.processes.remove(proc, ts)
        if op.get("repair"):
            g.counters["repaired"] += 1


def op_ns_gone(g, op, ts) -> None:
    ns = g.namespaces.live(_field(op, "type", _STR), _field(op, "inode", _INT))
    ended = _field(op, "ended", _NUMBER, optional=True)
    if ns is not None:
        if op.get("repair"):
            ns.repaired = True
            g.counters["repaired"] += 1
        g.namespaces.end(ns, ended if ended is not None else ts)


def op_procread(g, op, ts) -> None:
    pid = _field(op, "pid", _INT)
    cmdline = _list_of(op, "cmdline", str) if op.get("cmdline") is not None else None
    cgroup = _field(op, "cgroup", _STR, optional=True)
    container = _container(op)
    proc = g.processes.get(pid)
    if proc is not None:
        proc.cmdline = cmdline
        if cgroup is not None:
            proc.cgroup = cgroup
        if "container" in op:
            proc.container = note_container(g, container)
        proc.fresh = True


def op_container(g, op, ts) -> None:
    note_container(g, _container(op, "data"))


def op_container_gone(g, op, ts) -> None:
    cid = _field(op, "id", _STR)
    if g.containers.pop(cid, None) is not None:
        g.changes.record("remove", "container", cid)


def op_link(g, op, ts) -> None:
    g.namespaces.link_all()


def op_host(g, op, ts) -> None:
    # pid 1 can be unreadable (capabilities outside our bounding set); kthreadd
    # (pid 2) is always in the initial namespaces too.
    for pid in (1, 2):
        init = g.processes.get(pid)
        if init is not None and init.ns:
            g.host_ns = dict(init.ns)
            return


def op_recount(g, op, ts) -> None:
    g.counters["repaired"] += recount(g, ts)
    g.damaged = False


def op_lost(g, op, ts) -> None:
    g.counters["lost"] += _field(op, "n", _INT)
    g.needs_repair = True


def op_counted(g, op, ts) -> None:
    name, n = _field(op, "name", _STR), op.get("n", 1)
    if isinstance(n, bool) or not isinstance(n, int):
        raise BadEvent("op 'counted': n=%r" % (n,))
    g.counters[name] = g.counters.get(name, 0) + n


def op_join_command(g, op, ts) -> None:
    ident = op.get("id")
    if not (isinstance(ident, int) or (isinstance(ident, str) and ident.isdigit())):
        raise BadEvent("op 'join_command': id=%r" % (ident,))
    g.joins.set_command(int(ident), _field(op, "command", _STR), op.get("source", "hint"))


def op_joins_flush(g, op, ts) -> None:
    g.joins.flush(_field(op, "now", _NUMBER))


OP_HANDLERS: Dict[str, Callable] = {
    "ns": op_ns, "pins": op_pins, "proc": op_proc, "proc_gone": op_proc_gone, "ns_gone": op_ns_gone,
    "procread": op_procread, "container": op_container, "container_gone": op_container_gone,
    "link": op_link, "host": op_host, "recount": op_recount, "lost": op_lost, "counted": op_counted,
    "join_command": op_join_command, "joins_flush": op_joins_flush,
}


def apply_op(g, op) -> None:
    """Apply one op to model g (under its lock); BadEvent when it is malformed."""
    if op.__class__ is not dict:
        raise BadEvent("op %r is not an object" % (op,))
    try:
        handler = OP_HANDLERS[op.get("op")]
    except (KeyError, TypeError):
        raise BadEvent("unknown op %r" % (op.get("op"),))
    ts = op.get("ts")
    if ts is not None and ts.__class__ not in _NUMBER:
        raise BadEvent("op %r: ts=%r" % (op.get("op"), ts))
    handler(g, op, ts or time.time())

