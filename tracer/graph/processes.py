"""Processes, their threads with namespaces of their own, and the namespaces they hold.

A process's membership slots (mnt, pid, net, ...) make it a member of a
namespace; its *_for_children slots, and the slots of a thread that moved on
its own (setns/unshare in one thread), only hold a reference, as the kernel's
nsproxy does.  `set_ns` is the one place slots change.
"""

from __future__ import annotations

from collections import deque
from typing import Mapping, NamedTuple, Optional

from ..nstypes import SLOT_TYPE
from .changelog import ChangeLog
from .entities import MEMBER_SLOTS, Namespace, Process
from .nstable import NamespaceTable


class Creation(NamedTuple):
    """What one clone/unshare call created, for set_ns."""
    types: dict             # inode -> namespace type, for each namespace the call made
    creator: dict           # schema.Creator of the call
    before: Mapping         # the caller's slot -> inode map before the call


class Processes:
    def __init__(self, namespaces: NamespaceTable, changes: ChangeLog, counters: dict):
        self.namespaces = namespaces
        self.changes = changes
        self.counters = counters
        self.procs = {}                     # pid -> Process
        # (version, pid) of recent exits: a reconcile whose snapshot predates an exit
        # must not bring the process back.
        self.exits = deque(maxlen=65536)
        self.zombies = set()                # pids of Process.zombie ones (the service watches them)

    def get(self, pid) -> Optional[Process]:
        return self.procs.get(pid)

    def add(self, proc: Process) -> Process:
        self.procs[proc.pid] = proc
        return proc

    def set_zombie(self, proc: Process, zombie: bool) -> None:
        proc.zombie = zombie
        (self.zombies.add if zombie else self.zombies.discard)(proc.pid)

    def exited_after(self, version: int) -> set:
        return {pid for v, pid in self.exits if v > version}

    def recent_exits(self, version: int, limit: int) -> list:
        """Up to `limit` pids whose exit the model applied after `version`, newest first."""
        out = []
        for v, pid in reversed(self.exits):
            if v <= version or len(out) >= limit:
                break
            out.append(pid)
        return out

    # -- birth and death ---------------------------------------------------------------

    def discover(self, pid, ppid, uid, comm, ns_map, id_map, ts) -> Process:
        """A process the model did not know (started before the probes, or a lost event)."""
        proc = Process(pid, ppid, uid, comm)
        self.set_ns(proc, ns_map or {}, id_map or {}, ts)
        self.procs[pid] = proc
        self.counters["discovered"] += 1
        self.changes.record("add", "process", pid)
        return proc

    def remove(self, proc: Process, ts) -> None:
        pid = proc.pid
        procs = self.procs
        if procs.get(pid) is proc:
            del procs[pid]
            if proc.zombie:
                self.zombies.discard(pid)
        if proc.threads:
            for tid in list(proc.threads):
                self.drop_thread(proc, tid, ts)
        table = self.namespaces
        for slot, ns in proc.ns.items():
            if slot in MEMBER_SLOTS:
                ns.members.discard(pid)
            else:
                ns.refs -= 1
            if not ns.members and ns.refs <= 0:
                table.check_orphan(ns, ts)
        proc.ns = {}
        proc.sig = None
        if table.held_by:
            table.release_holder(pid, ts)
        # changes.record("remove", "process", pid), inline: this runs for every exit.
        changes = self.changes
        if not changes.bumped:
            changes.version += 1
            changes.bumped = True
        self.exits.append((changes.version, pid))
        changes.records.append((changes.version, "remove", "process", pid))

    def note_unknown_exit(self, pid) -> None:
        """An exit of a process the model never knew (born before the probes, or its clone lost)."""
        self.exits.append((self.changes.version + 1, pid))

    def thread_map(self, proc: Process, tid) -> dict:
        """The slot map of one of proc's threads, made (holding proc's namespaces) if new."""
        threads = proc.threads if proc.threads is not None else {}
        tmap = threads.get(tid)
        if tmap is None:
            tmap = {}
            for slot, ns in proc.ns.items():
                tmap[slot] = ns
                ns.refs += 1
            threads[tid] = tmap
        proc.threads = threads
        return tmap

    def set_threads(self, proc: Process, maps: dict, ts) -> None:
        """A /proc reading of proc's threads (tid -> slot -> inode, only threads whose
        namespaces differ from the process's): the whole truth, others let go."""
        for tid in [t for t in (proc.threads or {}) if t not in maps]:
            self.drop_thread(proc, tid, ts)
        for tid, ns_map in maps.items():
            tmap = self.thread_map(proc, tid)
            self.set_ns(proc, ns_map, {}, ts, thread=tmap)
            detach = self.namespaces.detach
            for slot in [s for s in tmap if s not in ns_map]:
                detach(tmap.pop(slot), ts)

    def drop_thread(self, proc: Process, tid, ts) -> None:
        tmap = proc.threads.pop(tid, None) if proc.threads else None
        if tmap:
            detach = self.namespaces.detach
            for ns in tmap.values():
                detach(ns, ts)
        if proc.threads is not None and not proc.threads:
            proc.threads = None

    def drop_stale(self, ns: Namespace) -> bool:
        """ns ended while these members still pointed at it (missed events): they lose
        the slot until a repair reads them again.  True when a process was affected."""
        stale = False
        for pid in list(ns.members):
            proc = self.procs.get(pid)
            if proc is not None:
                for slot, cur in list(proc.ns.items()):
                    if cur is ns:
                        del proc.ns[slot]
                proc.sig = None
                stale = True
        return stale

    # -- namespaces ----------------------------------------------------------------------

    def set_ns(self, proc: Process, ns_map: Mapping, ids: Mapping, ts,
               creation: Optional[Creation] = None, thread: Optional[dict] = None) -> None:
        """Point proc's slots (or, with `thread`, that thread's slot map) at the namespaces
        ns_map names (slot -> inode; ids: slot -> kernel ns_id where known).  `creation`:
        the namespaces the call made.  The maps must be valid (entities.check_maps)."""
        member = thread is None
        created = creation.types if creation is not None else None
        if member and created is None and (ns_map is proc.sig or ns_map == proc.sig):
            return
        target = proc.ns if member else thread
        table = self.namespaces
        changes = self.changes
        made = None
        pid = proc.pid
        for slot, inode in ns_map.items():
            cur = target.get(slot)
            nid = ids.get(slot) if ids else None
            if created is not None and inode in created:
                if made is None:
                    made = {}
                ns = made.get(inode)
                if ns is None:
                    ns = made[inode] = table.create(created[inode], inode, nid, ts, dict(creation.creator))
            else:
                if (cur is not None and cur.inode == inode
                        and (nid is None or cur.ns_id is None or cur.ns_id == nid)):
                    continue
                ns = table.resolve(SLOT_TYPE[slot], inode, nid, ts)
            if ns is cur:
                continue
            is_member = member and slot in MEMBER_SLOTS
            if cur is not None:
                table.detach(cur, ts, pid if is_member else None)
            target[slot] = ns
            if is_member:
                ns.members.add(pid)
            else:
                ns.refs += 1
            if ns.orphaned_at is not None:
                table.unorphan(ns)
            ns.version = changes.version if changes.bumped else changes.version + 1   # next_version, inline
        if made:
            self._link_created(made, ns_map, creation.before)
        if member:
            proc.sig = ns_map if len(ns_map) == len(target) else None

    def set_exact(self, proc: Process, ns_map: Mapping, ids: Mapping, ts) -> None:
        """set_ns, and slots ns_map lacks are let go (a /proc reading is the whole truth)."""
        self.set_ns(proc, ns_map, ids, ts)
        detach = self.namespaces.detach
        for slot in [s for s in proc.ns if s not in ns_map]:
            detach(proc.ns.pop(slot), ts, proc.pid if slot in MEMBER_SLOTS else None)

    def _link_created(self, made: dict, after: Mapping, before: Mapping) -> None:
        """Owners and parents of namespaces a call created, as the kernel assigns them."""
        table = self.namespaces
        for ns in made.values():
            if ns.type == "user":
                parent = table.live_in_slot("user", before)
                table.set_relations(ns, parent, parent)
            else:
                owner = table.live_in_slot("user", after)
                parent = None
                if ns.type == "pid":
                    parent = table.live_in_slot("pid_for_children", before) or table.live_in_slot("pid", before)
                table.set_relations(ns, owner, parent)
