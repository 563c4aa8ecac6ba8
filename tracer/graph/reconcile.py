"""Snapshots to ops: loading one, and reconciling the model with a fresh one.

Pure functions: a /proc Snapshot (tracer/host/snapshot.py) and a read-only view
of the model in, a list of ops (ops.py) out; NamespaceGraph applies them.

Reconcile rules (the model may have missed events, or the snapshot may have
raced with them):
- anything the model changed after `since_version` is left alone: the snapshot
  may predate that change;
- full=True (a repair, or the timer): processes the snapshot lacks are gone
  (unless `running` says the snapshot raced with their start), processes
  whose namespaces differ are read again, every namespace the snapshot shows
  is (re)stated, owners and parents relinked;
- always: a live namespace the snapshot does not show has ended, at the time
  it lost its last reference; full=False (settling, about once a second while
  orphans exist) ends only those no process holds, and updates pins and fd
  holders of the others;
- always: zombies (exited, not reaped) are members of the pid and user
  namespaces /proc still shows for them, as lsns counts them: the snapshot's
  zombies the model lacks are added (an exit event drops a process; no event
  says it stays unreaped), the model's zombies the snapshot lacks are gone.
"""

from __future__ import annotations

from typing import Callable, Iterable, List, Optional, Protocol

from .entities import Namespace, Process, container_json


class ModelView(Protocol):
    """What reconciling reads of the model (read only)."""

    def processes(self) -> Iterable[Process]: ...

    def process(self, pid: int) -> Optional[Process]: ...

    def alive(self) -> Iterable[Namespace]: ...

    def alive_at(self, inode: int) -> Optional[Namespace]: ...

    def exited_after(self, version: int) -> set:
        """pids whose exit the model applied after `version`."""

    def ended_after(self, version: int) -> Iterable[Namespace]: ...


class TablesView:
    """A ModelView over the model's process and namespace tables."""

    def __init__(self, processes, namespaces):
        self._processes = processes
        self._namespaces = namespaces

    def processes(self):
        return list(self._processes.procs.values())

    def process(self, pid):
        return self._processes.get(pid)

    def alive(self):
        return list(self._namespaces.alive.values())

    def alive_at(self, inode):
        return self._namespaces.alive.get(inode)

    def exited_after(self, version):
        return self._processes.exited_after(version)

    def ended_after(self, version):
        return self._namespaces.recently_ended(version)


def _never(pid: int) -> bool:
    return False


# -- loading -----------------------------------------------------------------------------

def ns_op(info, ts, repair: bool = False) -> dict:
    return {"op": "ns", "type": info.type, "inode": info.inode, "ns_id": info.ns_id,
            "owner_inode": info.owner_inode, "parent_inode": info.parent_inode,
            "owner_uid": info.owner_uid, "uid_map": info.uid_map, "gid_map": info.gid_map,
            "pinned": list(info.pinned), "holders": list(info.holders), "repair": repair, "ts": ts}


def proc_op(p, container_of: Optional[Callable] = None, repair: bool = False, ts=None) -> dict:
    op = {"op": "proc", "ts": ts, "pid": p.pid, "ppid": p.ppid, "uid": p.uid, "comm": p.comm,
          "cmdline": list(p.cmdline), "cgroup": p.cgroup, "start_ticks": p.start_ticks,
          "ns": {slot: inode for slot, (dev, inode) in p.ns.items()}, "repair": repair}
    if zombie(p):
        op["zombie"] = True         # its threads are gone with it
    else:
        # Threads with namespaces of their own (/proc/<pid>/task/<tid>/ns): all of them,
        # so that the model lets go of the ones that have rejoined their process.
        op["threads"] = {str(tid): {slot: inode for slot, (dev, inode) in tns.items()}
                         for tid, tns in getattr(p, "threads", {}).items()}
    if container_of is not None:
        op["container"] = container_json(container_of(p.pid, p.cgroup))
    return op


def exited(p) -> bool:
    """A zombie or a process in do_exit: the model dropped it at its exit event."""
    return getattr(p, "state", "") in ("Z", "X") or "mnt" not in p.ns


def zombie(p) -> bool:
    """Exited and not reaped: /proc still shows its pid and user namespaces."""
    return getattr(p, "state", "") == "Z" and bool(p.ns)


def load_ops(snap, container_of: Optional[Callable] = None) -> List[dict]:
    """Everything a snapshot shows, for an empty model."""
    ops = [ns_op(info, snap.taken_at) for info in snap.namespaces.values()]
    ops += [proc_op(p, container_of, False, snap.taken_at) for p in snap.processes.values()
            if not exited(p) or zombie(p)]
    ops.append({"op": "link"})
    ops.append({"op": "host"})
    return ops


# -- reconciling ---------------------------------------------------------------------------

def reconcile_ops(snap, view: ModelView, since_version: int, full: bool = True,
                  container_of: Optional[Callable] = None,
                  running: Callable[[int], bool] = _never) -> List[dict]:
    """The ops that make the model agree with snap (taken after since_version was current)."""
    by_inode = {info.inode: info for info in snap.namespaces.values()}
    ops = []
    if full:
        ops += vanished_processes(snap, view, since_version, running)
        ops += changed_processes(snap, view, since_version, container_of)
        ops += shown_namespaces(snap, by_inode, view, since_version)
        ops.append({"op": "link"})
    ops += zombie_ops(snap, view, since_version, full, container_of)
    ops += unseen_namespaces(snap, by_inode, view, since_version, full)
    return ops


def zombie_ops(snap, view: ModelView, v0: int, full: bool, container_of=None) -> List[dict]:
    """The snapshot's zombies the model lacks, in (a live one of the model too, when
    full: the sync before a full reconcile applied its exit, had the kernel sent one);
    the model's zombies the snapshot no longer shows, out (reaped)."""
    ops = []
    for pid, sp in snap.processes.items():
        if not zombie(sp):
            continue
        proc = view.process(pid)
        if proc is None or (full and not proc.zombie and proc.version <= v0):
            ops.append(proc_op(sp, container_of, proc is not None, snap.taken_at))
    for proc in view.processes():
        if proc.zombie and proc.version <= v0:
            sp = snap.processes.get(proc.pid)
            if sp is None or not zombie(sp) or sp.start_ticks != proc.start_ticks:
                ops.append({"op": "proc_gone", "pid": proc.pid, "zombie": True, "ts": snap.taken_at})
    return ops


def vanished_processes(snap, view: ModelView, v0: int, running) -> List[dict]:
    """Processes of the model the snapshot lacks (or shows exiting); zombies: zombie_ops."""
    ops = []
    for proc in view.processes():
        sp = snap.processes.get(proc.pid)
        if (sp is not None and not exited(sp)) or proc.version > v0 or proc.zombie:
            continue
        if sp is not None and zombie(sp):
            continue        # a missed exit: zombie_ops makes it a zombie
        if running(proc.pid):
            continue        # the snapshot raced with this process's start
        ops.append({"op": "proc_gone", "pid": proc.pid, "repair": True, "ts": snap.taken_at})
    return ops


def changed_processes(snap, view: ModelView, v0: int, container_of) -> List[dict]:
    """Processes the model lacks, or has in other namespaces, read again."""
    exited_after = view.exited_after(v0)
    ops = []
    for pid, sp in snap.processes.items():
        if exited(sp):
            continue
        proc = view.process(pid)
        if proc is None:
            if pid in exited_after:
                continue    # the snapshot predates its exit
        elif proc.version > v0 or same_namespaces(proc, sp):
            continue
        ops.append(proc_op(sp, container_of, True, snap.taken_at))
    return ops


def same_namespaces(proc: Process, sp) -> bool:
    """The model's process (and its threads) holds what /proc shows."""
    if not _same_slots(proc.ns, sp.ns):
        return False
    threads = getattr(sp, "threads", {})
    have = proc.threads or {}
    if len(have) != len(threads):
        return False
    return all(tid in have and _same_slots(have[tid], tns) for tid, tns in threads.items())


def _same_slots(model: dict, seen: dict) -> bool:
    if len(model) != len(seen):
        return False
    for slot, (dev, inode) in seen.items():
        ns = model.get(slot)
        if ns is None or ns.inode != inode:
            return False
    return True


def shown_namespaces(snap, by_inode: dict, view: ModelView, v0: int) -> List[dict]:
    """Every namespace the snapshot shows (a repair where the model lacks it)."""
    ended_since = {ns.inode for ns in view.ended_after(v0)}
    ops = []
    for inode, info in by_inode.items():
        ns = view.alive_at(inode)
        if ns is None and inode in ended_since:
            continue        # ended after the snapshot was taken
        if ns is not None and ns.version > v0 and (ns.type != info.type or (
                info.ns_id is not None and ns.ns_id is not None and info.ns_id != ns.ns_id)):
            continue        # made since: the snapshot shows its predecessor at this inode
        ops.append(ns_op(info, snap.taken_at, ns is None or ns.type != info.type))
    return ops


def unseen_namespaces(snap, by_inode: dict, view: ModelView, v0: int, full: bool) -> List[dict]:
    """Live namespaces the snapshot does not show have ended; pins of those it shows."""
    touched = {p.pid for p in view.processes() if p.version > v0}
    ops = []
    for ns in view.alive():
        if ns.version > v0:
            continue
        info = by_inode.get(ns.inode)
        if info is not None and info.type == ns.type and \
                (info.ns_id is None or ns.ns_id is None or info.ns_id == ns.ns_id):
            if not full and (tuple(info.pinned) != tuple(ns.pinned) or tuple(info.holders) != tuple(ns.holders)):
                ops.append({"op": "ns", "type": ns.type, "inode": ns.inode, "ts": snap.taken_at,
                            "pinned": list(info.pinned), "holders": list(info.holders)})
            continue
        if ns.members & touched:
            continue
        process_held = bool(ns.members) or ns.refs > 0
        if not full and process_held:
            continue        # settling ends only what no process holds
        ended = ns.orphaned_at if ns.orphaned_at is not None else snap.taken_at
        ops.append({"op": "ns_gone", "type": ns.type, "inode": ns.inode, "ended": ended,
                    "repair": bool(full and process_held), "ts": snap.taken_at})
    return ops
