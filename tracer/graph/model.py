"""The live namespace graph: a snapshot, kept current by tracer events.

One lock guards everything: the collector thread applies events while web
threads read.  Every change bumps `version`; a bounded change log serves
`diff_since`.  All inputs that are not tracer events (snapshot loads, repairs,
lazy /proc reads, container updates) are expressed as small JSON "ops", so that
a journal of (events, ops) replays to the very same graph offline (history/store.py,
history/recording.py).

Identity: the kernel recycles namespace inode numbers at once, so a namespace
is keyed by (type, dev, inode, generation); the generation of a (type, inode)
advances each time a namespace with that inode is seen to end.  The kernel's
64-bit ns_id, where both sides have it, tells a recycled inode from the same
namespace.

Ending: a namespace that loses its last reference (member, *_for_children slot,
thread, owned/child namespace, pin, fd holder) is only *orphaned*: it may still
be pinned by a bind mount we cannot see in events (`ip netns add` mounts after
its unshare).  `reconcile(snapshot, full=False)` (the service runs it about
once a second while orphans exist) ends those the snapshot does not show, at
the time they lost their last reference.  An orphan whose inode turns up for a
new namespace has certainly ended at once (inodes are unique among live
namespaces of all types).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from typing import Callable, Iterable, Optional

from ..events.flags import CLONE_PARENT, CLONE_THREAD, CSIGNAL
from ..nstypes import MEMBER_TYPES, NS_FLAGS_MASK, SLOT_TYPE

log = logging.getLogger(__name__)

MEMBER_SLOTS = frozenset(MEMBER_TYPES)

DEFAULT_ENDED_RETENTION = 2000      # ended namespaces kept for history
DEFAULT_CHANGELOG = 20000           # change records kept for diff_since
DEFAULT_JOIN_RETENTION = 500


class BadEvent(ValueError):
    """An event whose content cannot be right (counted as rejected, never applied)."""


def _check_maps(*maps) -> None:
    for source in maps:
        if source:
            for slot in source:
                if slot not in SLOT_TYPE or type(source[slot]) is not int:
                    raise BadEvent("namespace slot %r=%r" % (slot, source[slot]))


def nsfs_device() -> int:
    try:
        return os.stat("/proc/self/ns/net").st_dev
    except OSError:
        return 0


class Namespace:
    __slots__ = ("type", "dev", "inode", "gen", "id", "ns_id", "created", "ended", "creator",
                 "members", "refs", "children", "owner", "parent", "owner_inode", "parent_inode",
                 "owner_uid", "uid_map", "gid_map", "pinned", "holders", "orphaned_at",
                 "repaired", "version")

    def __init__(self, ns_type, dev, inode, gen, ns_id, created, creator):
        self.type = ns_type
        self.dev = dev
        self.inode = inode
        self.gen = gen
        self.id = "%s:%d:%d:%d" % (ns_type, dev, inode, gen)
        self.ns_id = ns_id
        self.created = created
        self.ended = None
        self.creator = creator
        self.members = set()
        self.refs = 0            # *_for_children slots and threads holding it
        self.children = 0        # live namespaces owned by it or having it as parent
        self.owner = None
        self.parent = None
        self.owner_inode = None
        self.parent_inode = None
        self.owner_uid = None
        self.uid_map = None
        self.gid_map = None
        self.pinned = ()
        self.holders = ()
        self.orphaned_at = None
        self.repaired = False
        self.version = 0

    @property
    def key(self) -> tuple:
        return (self.type, self.dev, self.inode, self.gen)

    def referenced(self) -> bool:
        return bool(self.members or self.refs > 0 or self.children > 0 or self.pinned or self.holders)


class Process:
    __slots__ = ("pid", "ppid", "uid", "comm", "cmdline", "cgroup", "start_ticks", "ns", "threads",
                 "container", "fresh", "filename", "version", "repaired", "sig")

    def __init__(self, pid, ppid, uid, comm):
        self.pid = pid
        self.ppid = ppid
        self.uid = uid
        self.comm = comm
        self.cmdline = None      # list of args; None until read (lazily) from /proc
        self.cgroup = None
        self.start_ticks = None
        self.ns = {}             # slot -> Namespace
        self.threads = None      # tid -> {slot: Namespace} for threads with namespaces of their own
        self.container = None    # container id
        self.fresh = False       # cmdline/cgroup read since the last exec
        self.filename = None
        self.version = 0
        self.repaired = False
        self.sig = None          # the slot -> inode map ns was last set from (fast equality)


class NamespaceGraph:
    """The model.  `live=False` never touches /proc (replays, benchmarks, tests)."""

    def __init__(self, *, dev: Optional[int] = None, node: str = "host", live: bool = True,
                 ended_retention: int = DEFAULT_ENDED_RETENTION,
                 changelog_size: int = DEFAULT_CHANGELOG,
                 resolve_container: Optional[Callable] = None,
                 join_gap: float = 1.0):
        from .joins import JoinTracker
        self._lock = threading.RLock()
        self.dev = nsfs_device() if dev is None else dev
        self.node = node
        self.live = live
        self.ended_retention = ended_retention
        self.resolve_container = resolve_container
        self._alive = {}            # inode -> Namespace (inodes are unique among live namespaces)
        self._by_id = {}            # id -> Namespace, live and retained ended ones
        self._by_nsid = {}          # kernel ns_id -> Namespace
        self._gens = {}             # (type, inode) -> next generation
        self._ended = deque()
        self._orphans = {}          # id -> Namespace
        self._procs = {}
        self._holder_index = {}     # pid -> set of Namespace it holds an fd to
        self._containers = {}       # id -> container JSON
        self._exits = deque(maxlen=65536)   # (version, pid): reconcile must not resurrect these
        self._changes = deque(maxlen=changelog_size)
        self._bumped = False
        self.version = 0
        self.input_seq = 0
        self.counters = {"events": 0, "lost": 0, "repaired": 0, "rejected": 0, "discovered": 0,
                         "failed_calls": 0, "reconciles": 0, "settled": 0}
        self.host_ns = {}           # slot -> Namespace of pid 1
        self._journals = []
        self._listeners = []
        self.needs_repair = False
        self._in_apply = False
        self._stash = {}            # pid -> deque of procread ops (replay only)
        self.joins = JoinTracker(self, gap=join_gap, retention=DEFAULT_JOIN_RETENTION)

    # -- wiring ------------------------------------------------------------

    @property
    def lock(self):
        return self._lock

    def add_journal(self, callback: Callable[[str, object, int], None]) -> None:
        """callback(kind, payload, input_seq) for every input, under the graph lock:
        ("event", Event), ("ops", [op, ...]) for one apply_ops call, ("op", procread op)
        for a lazy /proc read (op["nested"] when made while an event was applied).
        Must be quick and must not call back in.  replay_input() is the inverse."""
        self._journals.append(callback)

    def remove_journal(self, callback) -> None:
        with self._lock:
            if callback in self._journals:
                self._journals.remove(callback)

    def subscribe(self, callback: Callable[[int], None]) -> Callable[[], None]:
        """callback(version) after each change, outside the lock."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback) if callback in self._listeners else None

    def _notify(self, version) -> None:
        for cb in list(self._listeners):
            try:
                cb(version)
            except Exception:
                log.exception("graph listener failed")

    # -- change log --------------------------------------------------------

    def _log(self, op: str, entity: str, ident) -> None:
        if not self._bumped:
            self.version += 1
            self._bumped = True
        self._changes.append((self.version, op, entity, ident))

    def _input(self, kind, payload) -> None:
        self.input_seq += 1
        for journal in self._journals:
            journal(kind, payload, self.input_seq)

    # -- events ------------------------------------------------------------

    def apply(self, event) -> None:
        """Apply one tracer Event (collector thread)."""
        with self._lock:
            changed = self._apply_one(event)
            version = self.version
        if changed and self._listeners:
            self._notify(version)

    def apply_batch(self, events: Iterable) -> None:
        """Apply events in order under one lock: the same graph, versions and journal
        as apply() on each, but listeners hear once, with the last version."""
        changed = False
        with self._lock:
            one = self._apply_one
            for event in events:
                if one(event):
                    changed = True
            version = self.version
        if changed and self._listeners:
            self._notify(version)

    def _apply_one(self, ev) -> bool:
        """One event under the lock; True when it changed the graph (a new version).
        (One function, not two: this runs for every event.)"""
        self._bumped = False
        if self._journals:
            self._input("event", ev)
        self._in_apply = True
        counters = self.counters
        try:
            counters["events"] += 1
            kind = ev.kind
            if kind in ("clone", "unshare", "setns") and ev.ret < 0:
                counters["failed_calls"] += 1
            elif kind == "clone" or kind == "exit" or kind == "exec" or kind == "unshare" or kind == "setns":
                if kind == "clone":
                    self._on_clone(ev)
                elif kind == "exit":
                    proc = self._procs.get(ev.pid)
                    if proc is not None:
                        self._remove_proc(proc, ev.ts)
                    else:
                        self._on_exit(ev)
                elif kind == "exec":
                    self._on_exec(ev)
                else:
                    self._on_move(ev)
                joins = self.joins
                if kind == "setns" or joins._open:     # JoinTracker.active, without a property call
                    joins.feed(ev)
            else:
                counters["rejected"] += 1
        except Exception:
            counters["rejected"] += 1
            if counters["rejected"] == 1:
                log.exception("event rejected: %r", ev)
        self._in_apply = False
        changed = self._bumped
        self._bumped = False
        return changed

    def _on_clone(self, ev) -> None:
        flags = ev.raw_flags
        child_pid = ev.child_pid
        if flags & CLONE_THREAD or child_pid is None:
            return
        procs = self._procs
        ev_ns = ev.ns
        parent = procs.get(ev.pid)
        sig0 = parent.sig if parent is not None else None
        # Decoded events share their namespace maps, so identity usually settles it.
        same = sig0 is not None and (ev_ns is sig0 or ev_ns == sig0)
        if not same:
            _check_maps(ev_ns, ev.ns_before)
        if parent is None:
            parent = self._discover(ev.pid, ev.ppid, ev.uid, ev.comm, ev.ns_before or ev_ns,
                                    ev.ns_id_before or ev.ns_id, ev.ts)
        old = procs.get(child_pid)
        if old is not None:
            # The pid came back without an exit we saw: the old process is gone.
            self._remove_proc(old, ev.ts)
            self._repaired()
        child = Process(child_pid, parent.ppid if flags & CLONE_PARENT else ev.pid, ev.uid, ev.comm)
        child.cmdline = parent.cmdline
        child.cgroup = parent.cgroup
        child.container = parent.container
        child.fresh = parent.fresh
        before = ev.ns_before if ev.ns_before else {s: n.inode for s, n in parent.ns.items()}
        after = ev_ns if ev_ns else before
        if ev.syscall != "clone3":
            flags &= ~CSIGNAL
        created = self._created(ev, before, after) if flags & NS_FLAGS_MASK else None
        psig = parent.sig
        if created is None and psig is not None and (
                after is psig or (same if after is ev_ns and psig is sig0 else after == psig)):
            # A plain fork: the child shares every namespace of its parent.
            child.ns = pns = dict(parent.ns)
            for slot, ns in pns.items():
                if slot in MEMBER_SLOTS:
                    ns.members.add(child_pid)
                else:
                    ns.refs += 1
            child.sig = psig
        else:
            _check_maps(after, before)
            self._set_ns(child, child.ns, True, after, ev.ns_id, ev.ts, created, ev,
                         ev.ns_id_before or {}, before)
        procs[child_pid] = child
        # self._log("add", "process", pid), inline: this runs for every fork.
        if not self._bumped:
            self.version += 1
            self._bumped = True
        child.version = self.version
        self._changes.append((self.version, "add", "process", child_pid))

    def _on_move(self, ev) -> None:
        _check_maps(ev.ns, ev.ns_before)
        proc = self._procs.get(ev.pid)
        if proc is None:
            proc = self._discover(ev.pid, ev.ppid, ev.uid, ev.comm, ev.ns_before or ev.ns,
                                  ev.ns_id_before or ev.ns_id, ev.ts)
        if not ev.ns:
            return
        before = ev.ns_before or {}
        created = self._created(ev, before, ev.ns) if ev.kind == "unshare" else None
        if ev.tid != ev.pid and ev.tid:
            threads = proc.threads if proc.threads is not None else {}
            tmap = threads.get(ev.tid)
            if tmap is None:
                tmap = {}
                for slot, ns in proc.ns.items():
                    tmap[slot] = ns
                    ns.refs += 1
                threads[ev.tid] = tmap
            proc.threads = threads
            self._set_ns(proc, tmap, False, ev.ns, ev.ns_id, ev.ts, created, ev,
                         ev.ns_id_before or {}, before)
            if all(proc.ns.get(s) is n for s, n in tmap.items()) and len(tmap) == len(proc.ns):
                # Back where its process is: no longer a thread of interest.
                self._drop_thread(proc, ev.tid, ev.ts)
        else:
            self._set_ns(proc, proc.ns, True, ev.ns, ev.ns_id, ev.ts, created, ev,
                         ev.ns_id_before or {}, before)
        proc.version = self.version + (0 if self._bumped else 1)
        self._log("update", "process", proc.pid)

    def _on_exec(self, ev) -> None:
        ev_ns = ev.ns
        proc = self._procs.get(ev.pid)
        sig = proc.sig if proc is not None else None
        same = sig is not None and (ev_ns is sig or ev_ns == sig)
        if not same:
            _check_maps(ev_ns)
        if proc is None:
            proc = self._discover(ev.pid, ev.ppid, ev.uid, ev.comm, ev_ns, ev.ns_id, ev.ts)
        proc.comm = ev.comm
        proc.filename = ev.filename
        proc.fresh = False
        proc.cmdline = None
        if proc.threads:
            # exec ends every other thread.
            for tid in list(proc.threads):
                self._drop_thread(proc, tid, ev.ts)
        # _set_ns returns at once when the map is the process's sig: skip the call then.
        if ev_ns and not (same and proc.sig is sig):
            self._set_ns(proc, proc.ns, True, ev_ns, ev.ns_id, ev.ts, None, None, {}, {})
        if not self._bumped:
            self.version += 1
            self._bumped = True
        proc.version = self.version
        self._changes.append((self.version, "update", "process", proc.pid))

    def _on_exit(self, ev) -> None:
        proc = self._procs.get(ev.pid)
        if proc is None:
            # Unknown (born before the probes, or its clone was lost): a reconcile
            # whose snapshot predates this exit must not bring it back.
            self._exits.append((self.version + 1, ev.pid))
            return
        self._remove_proc(proc, ev.ts)

    # -- processes ---------------------------------------------------------

    def _discover(self, pid, ppid, uid, comm, ns_map, id_map, ts) -> Process:
        """A process the model did not know (started before the probes, or a lost event)."""
        proc = Process(pid, ppid, uid, comm)
        self._set_ns(proc, proc.ns, True, ns_map or {}, id_map or {}, ts, None, None, {}, {})
        self._procs[pid] = proc
        self.counters["discovered"] += 1
        self._log("add", "process", pid)
        return proc

    def _remove_proc(self, proc, ts) -> None:
        pid = proc.pid
        if self._procs.get(pid) is proc:
            del self._procs[pid]
        if proc.threads:
            for tid in list(proc.threads):
                self._drop_thread(proc, tid, ts)
        for slot, ns in proc.ns.items():
            if slot in MEMBER_SLOTS:
                ns.members.discard(pid)
            else:
                ns.refs -= 1
            if not ns.members and ns.refs <= 0:
                self._check_orphan(ns, ts)
        proc.ns = {}
        proc.sig = None
        if self._holder_index:
            held = self._holder_index.pop(pid, None)
            if held:
                for ns in held:
                    if pid in ns.holders:
                        ns.holders = tuple(h for h in ns.holders if h != pid)
                        self._check_orphan(ns, ts)
        if not self._bumped:
            self.version += 1
            self._bumped = True
        self._exits.append((self.version, pid))
        self._changes.append((self.version, "remove", "process", pid))

    def _drop_thread(self, proc, tid, ts) -> None:
        tmap = proc.threads.pop(tid, None) if proc.threads else None
        if tmap:
            for slot, ns in tmap.items():
                self._detach(None, slot, ns, False, ts)
        if proc.threads is not None and not proc.threads:
            proc.threads = None

    # -- namespaces --------------------------------------------------------

    @staticmethod
    def _created(ev, before, after):
        """inode -> type of the namespaces this call created, or None."""
        flags = ev.raw_flags
        if ev.kind == "clone" and ev.syscall != "clone3":
            flags &= ~CSIGNAL
        if not flags & NS_FLAGS_MASK:
            return None
        types = ev.flag_ns_types()
        if not types:
            return None
        seen = {}
        for slot, inode in before.items():
            seen.setdefault(SLOT_TYPE[slot], set()).add(inode)
        created = None
        for slot, inode in after.items():
            t = SLOT_TYPE[slot]
            if t in types and inode not in seen.get(t, ()):
                if created is None:
                    created = {}
                created[inode] = t
        return created

    def _set_ns(self, proc, target, member, ns_map, id_map, ts, created, ev, id_before, before) -> None:
        """Point target's slots at ns_map (inodes); create what this call created."""
        if member and created is None and (ns_map is proc.sig or ns_map == proc.sig):
            return
        _check_maps(ns_map, before)
        made = None
        pid = proc.pid
        for slot, inode in ns_map.items():
            cur = target.get(slot)
            nid = id_map.get(slot) if id_map else None
            if created is not None and inode in created:
                if made is None:
                    made = {}
                ns = made.get(inode)
                if ns is None:
                    ns = made[inode] = self._make(created[inode], inode, nid, ts, ev)
            else:
                if (cur is not None and cur.inode == inode
                        and (nid is None or cur.ns_id is None or cur.ns_id == nid)):
                    continue
                ns = self._resolve(SLOT_TYPE[slot], inode, nid, ts)
            if ns is cur:
                continue
            if cur is not None:
                self._detach(pid if member else None, slot, cur, member and slot in MEMBER_SLOTS, ts)
            target[slot] = ns
            if member and slot in MEMBER_SLOTS:
                ns.members.add(pid)
            else:
                ns.refs += 1
            if ns.orphaned_at is not None:
                ns.orphaned_at = None
                self._orphans.pop(ns.id, None)
            ns.version = self.version + (0 if self._bumped else 1)
        if made:
            self._link_created(made, ns_map, before, ts)
        if member:
            proc.sig = ns_map if len(ns_map) == len(target) else None

    def _link_created(self, made, after, before, ts) -> None:
        """Owners and parents of namespaces a call created, as the kernel assigns them."""
        def live(slot, source):
            inode = source.get(slot)
            ns = self._alive.get(inode) if inode is not None else None
            return ns if ns is not None and ns.type == SLOT_TYPE[slot] else None
        for ns in made.values():
            if ns.type == "user":
                parent = live("user", before)
                self._set_rel(ns, parent, parent)
            else:
                owner = live("user", after)
                parent = None
                if ns.type == "pid":
                    parent = live("pid_for_children", before) or live("pid", before)
                self._set_rel(ns, owner, parent)

    def _set_rel(self, ns, owner, parent) -> None:
        for attr in ("owner", "parent"):
            old = getattr(ns, attr)
            new = owner if attr == "owner" else parent
            if new is ns:
                new = None
            if old is new:
                continue
            if old is not None and ns.ended is None:
                old.children -= 1
            setattr(ns, attr, new)
            if new is not None:
                setattr(ns, attr + "_inode", new.inode)
                if ns.ended is None:
                    new.children += 1
                    if new.orphaned_at is not None:
                        new.orphaned_at = None
                        self._orphans.pop(new.id, None)

    def _make(self, ns_type, inode, nid, ts, ev) -> "Namespace":
        """A namespace created by event ev: the inode is new whatever the model thought."""
        old = self._alive.get(inode)
        if old is not None:
            if old.type == ns_type and nid is not None and old.ns_id == nid:
                return old
            self._end_recycled(old, ts)
        creator = None
        if ev is not None:
            creator = {"pid": ev.pid, "tid": ev.tid, "comm": ev.comm, "syscall": ev.syscall or ev.kind,
                       "flags": ev.flags, "ts": ev.ts}
            if ev.kind == "clone":
                creator["child_pid"] = ev.child_pid
            if ev.container:
                # Known from the cgroup the kernel saw: kept when the container is long gone.
                creator["container"] = ev.container
        return self._new(ns_type, inode, nid, ts, creator)

    def _resolve(self, ns_type, inode, nid, ts) -> "Namespace":
        ns = self._alive.get(inode)
        if ns is not None:
            if ns.type == ns_type and (nid is None or ns.ns_id is None or ns.ns_id == nid):
                if nid is not None and ns.ns_id is None:
                    ns.ns_id = nid
                    self._by_nsid[nid] = ns
                return ns
            self._end_recycled(ns, ts)
        return self._new(ns_type, inode, nid, None, None)

    def _end_recycled(self, ns, ts) -> None:
        # An orphan was simply not confirmed yet; anything else means we missed events.
        if ns.orphaned_at is None:
            self._repaired()
        self._end(ns, ns.orphaned_at if ns.orphaned_at is not None else ts)

    def _new(self, ns_type, inode, nid, created, creator) -> "Namespace":
        if nid is not None:
            old = self._by_nsid.get(nid)
            if old is not None and old.ended is not None and old.type == ns_type and old.inode == inode:
                # Seen ending, but the kernel says it is the same namespace: it lived on.
                old.ended = None
                self._alive[inode] = old
                self._ended_remove(old)
                old.repaired = True
                self._repaired()
                self._log("update", "namespace", old.id)
                return old
        gen = self._gens.get((ns_type, inode), 0)
        ns = Namespace(ns_type, self.dev, inode, gen, nid, created, creator)
        ns.version = self.version + (0 if self._bumped else 1)
        self._alive[inode] = ns
        self._by_id[ns.id] = ns
        if nid is not None:
            self._by_nsid[nid] = ns
        self._log("add", "namespace", ns.id)
        return ns

    def _ended_remove(self, ns) -> None:
        try:
            self._ended.remove(ns)
        except ValueError:
            pass

    def _detach(self, pid, slot, ns, member, ts) -> None:
        if member:
            ns.members.discard(pid)
        else:
            ns.refs -= 1
        if not ns.members and ns.refs <= 0:
            self._check_orphan(ns, ts)

    def _check_orphan(self, ns, ts) -> None:
        if ns.ended is not None or ns.orphaned_at is not None or ns.referenced():
            return
        ns.orphaned_at = ts
        self._orphans[ns.id] = ns
        self._log("update", "namespace", ns.id)

    def _end(self, ns, ts) -> None:
        if ns.ended is not None:
            return
        ns.ended = ts
        ns.orphaned_at = None
        ns.version = self.version + (0 if self._bumped else 1)
        self._orphans.pop(ns.id, None)
        if self._alive.get(ns.inode) is ns:
            del self._alive[ns.inode]
        key = (ns.type, ns.inode)
        if self._gens.get(key, 0) <= ns.gen:
            self._gens[key] = ns.gen + 1
        self._log("update", "namespace", ns.id)
        # Processes still pointing here are stale (missed events): they lose the slot
        # until a repair reads them again.
        for pid in list(ns.members):
            proc = self._procs.get(pid)
            if proc is not None:
                for slot, cur in list(proc.ns.items()):
                    if cur is ns:
                        del proc.ns[slot]
                proc.sig = None
                self.needs_repair = True
        ns.members.clear()
        ns.refs = 0
        for rel in (ns.owner, ns.parent):
            if rel is not None:
                rel.children -= 1
                self._check_orphan(rel, ts)
        self._ended.append(ns)
        while len(self._ended) > self.ended_retention:
            old = self._ended.popleft()
            if old.ended is not None and self._by_id.get(old.id) is old:
                del self._by_id[old.id]
                if old.ns_id is not None and self._by_nsid.get(old.ns_id) is old:
                    del self._by_nsid[old.ns_id]
                self._log("remove", "namespace", old.id)

    def _repaired(self, n: int = 1) -> None:
        self.counters["repaired"] += n

    # -- ops: every non-event input ----------------------------------------

    def apply_ops(self, ops: Iterable[dict]) -> None:
        """Apply ops (journaled, so a replay does the same)."""
        ops = list(ops)
        with self._lock:
            changed, version = self._apply_ops_locked(ops)
        if changed and self._listeners:
            self._notify(version)

    def _apply_ops_locked(self, ops: list) -> tuple:
        """apply_ops under the lock the caller holds: (changed, version) to notify with."""
        self._bumped = False
        if self._journals:
            self._input("ops", ops)
        nested, self._in_apply = self._in_apply, True
        for op in ops:
            try:
                self._op(op)
            except Exception:
                self.counters["rejected"] += 1
                log.exception("op rejected: %r", op)
        self._in_apply = nested
        changed, version = self._bumped, self.version
        self._bumped = False
        return changed, version

    def _op(self, op: dict) -> None:
        kind = op["op"]
        ts = op.get("ts") or time.time()
        if kind == "ns":
            self._op_ns(op, ts)
        elif kind == "proc":
            self._op_proc(op, ts)
        elif kind == "proc_gone":
            proc = self._procs.get(op["pid"])
            if proc is not None:
                self._remove_proc(proc, ts)
                if op.get("repair"):
                    self._repaired()
        elif kind == "ns_gone":
            ns = self._alive.get(op["inode"])
            if ns is not None and ns.type == op["type"]:
                if op.get("repair"):
                    ns.repaired = True
                    self._repaired()
                self._end(ns, op.get("ended", ts))
        elif kind == "procread":
            proc = self._procs.get(op["pid"])
            if proc is not None:
                proc.cmdline = op.get("cmdline")
                if op.get("cgroup") is not None:
                    proc.cgroup = op["cgroup"]
                if "container" in op:
                    proc.container = self._note_container(op["container"])
                proc.fresh = True
        elif kind == "container":
            self._note_container(op["data"])
        elif kind == "container_gone":
            if self._containers.pop(op["id"], None) is not None:
                self._log("remove", "container", op["id"])
        elif kind == "link":
            self._link_all()
        elif kind == "host":
            self._set_host()
        elif kind == "lost":
            self.counters["lost"] += int(op["n"])
            self.needs_repair = True
        elif kind == "counted":
            self.counters[op["name"]] = self.counters.get(op["name"], 0) + int(op.get("n", 1))
        elif kind == "join_command":
            self.joins.set_command(op["id"], op["command"], op.get("source", "hint"))
        elif kind == "joins_flush":
            self.joins.flush(op["now"])
        else:
            self.counters["rejected"] += 1

    def _note_container(self, data):
        if not data:
            return None
        cid = data["id"]
        if self._containers.get(cid) != data:
            self._containers[cid] = dict(data)
            self._log("update", "container", cid)
        return cid

    def _op_ns(self, op, ts) -> None:
        ns_type, inode = op["type"], op["inode"]
        nid = op.get("ns_id")
        ns = self._alive.get(inode)
        if ns is None or ns.type != ns_type or (nid is not None and ns.ns_id not in (None, nid)):
            if ns is not None:
                self._end_recycled(ns, ts)
            ns = self._new(ns_type, inode, nid, op.get("created"), None)
            if op.get("repair"):
                ns.repaired = True
                self._repaired()
        changed = False
        for attr in ("ns_id", "owner_inode", "parent_inode", "owner_uid", "uid_map", "gid_map"):
            if attr in op and op[attr] is not None and getattr(ns, attr) != op[attr]:
                setattr(ns, attr, op[attr])
                changed = True
        if ns.ns_id is not None:
            self._by_nsid[ns.ns_id] = ns
        for attr in ("pinned", "holders"):
            if attr in op:
                value = tuple(op[attr] or ())
                if tuple(getattr(ns, attr)) != value:
                    if attr == "holders":
                        for pid in ns.holders:
                            self._holder_index.get(pid, set()).discard(ns)
                        for pid in value:
                            self._holder_index.setdefault(pid, set()).add(ns)
                    setattr(ns, attr, value)
                    changed = True
        if ns.orphaned_at is not None and ns.referenced():
            ns.orphaned_at = None
            self._orphans.pop(ns.id, None)
        if changed:
            self._log("update", "namespace", ns.id)
        self._check_orphan(ns, ts)

    def _op_proc(self, op, ts) -> None:
        pid = op["pid"]
        proc = self._procs.get(pid)
        if proc is not None and op.get("start_ticks") not in (None, proc.start_ticks) \
                and proc.start_ticks is not None:
            self._remove_proc(proc, ts)         # same pid, another process
            proc = None
        new = proc is None
        if new:
            proc = Process(pid, op.get("ppid", 0), op.get("uid", 0), op.get("comm", ""))
            self._procs[pid] = proc
        else:
            proc.ppid, proc.uid, proc.comm = op.get("ppid", proc.ppid), op.get("uid", proc.uid), op.get("comm", proc.comm)
        if "cmdline" in op:
            proc.cmdline = op["cmdline"]
            proc.cgroup = op.get("cgroup")
            proc.fresh = True
        proc.start_ticks = op.get("start_ticks", proc.start_ticks)
        if "container" in op:
            proc.container = self._note_container(op["container"])
        ns_map = {slot: int(v) for slot, v in (op.get("ns") or {}).items()}
        self._set_ns(proc, proc.ns, True, ns_map, op.get("ns_id") or {}, ts, None, None, {}, {})
        for slot in [s for s in proc.ns if s not in ns_map]:
            self._detach(pid, slot, proc.ns.pop(slot), slot in MEMBER_SLOTS, ts)
        if op.get("repair"):
            proc.repaired = True
            self._repaired()
        proc.version = self.version + (0 if self._bumped else 1)
        self._log("add" if new else "update", "process", pid)

    def _link_all(self) -> None:
        by_inode = self._alive
        for ns in list(by_inode.values()):
            owner = by_inode.get(ns.owner_inode) if ns.owner_inode else None
            parent = by_inode.get(ns.parent_inode) if ns.parent_inode else None
            self._set_rel(ns, owner if owner is not None and owner.type == "user" else None,
                          parent if parent is not None and parent.type == ns.type else None)

    def _set_host(self) -> None:
        # pid 1 can be unreadable (capabilities outside our bounding set); kthreadd
        # (pid 2) is always in the initial namespaces too.
        for pid in (1, 2):
            init = self._procs.get(pid)
            if init is not None and init.ns:
                self.host_ns = dict(init.ns)
                return

    # -- snapshots: load, reconcile, settle ---------------------------------

    def snapshot_ops(self, snap, container_of: Optional[Callable] = None, repair: bool = False,
                     skip_pids=(), skip_inodes=()) -> list:
        ops = []
        for ref, info in snap.namespaces.items():
            if info.inode in skip_inodes:
                continue
            ops.append(ns_op(info, snap.taken_at, repair))
        for pid, p in snap.processes.items():
            if pid in skip_pids or _exited(p):
                continue
            ops.append(proc_op(p, container_of, repair, snap.taken_at))
        ops.append({"op": "link"})
        ops.append({"op": "host"})
        return ops

    def load_snapshot(self, snap, container_of: Optional[Callable] = None) -> None:
        self.apply_ops(self.snapshot_ops(snap, container_of))

    def reconcile(self, snap, since_version: int, container_of: Optional[Callable] = None,
                  full: bool = True) -> int:
        """Make the model agree with snap (taken after since_version was current).

        Items the model changed after since_version are left alone: the snapshot
        may predate that change.  full=False only settles orphans and pin-only
        namespaces (routine; not counted as repairs).  Returns the repair count.
        """
        # Computed and applied under one hold of the lock: an event applied in between
        # (an exit, say) would be undone by ops computed before it.
        with self._lock:
            before = self.counters["repaired"]
            ops = self._reconcile_ops(snap, since_version, container_of, full)
            ops.append({"op": "counted", "name": "reconciles" if full else "settled"})
            changed, version = self._apply_ops_locked(ops)
            if full:
                self.needs_repair = False
            repaired = self.counters["repaired"] - before
        if changed and self._listeners:
            self._notify(version)
        return repaired

    def _reconcile_ops(self, snap, v0, container_of, full) -> list:
        ops = []
        snap_ns = {}
        for info in snap.namespaces.values():
            snap_ns[info.inode] = info
        exited_after = {pid for v, pid in self._exits if v > v0}
        if full:
            for pid, proc in self._procs.items():
                sp = snap.processes.get(pid)
                if (sp is not None and not _exited(sp)) or proc.version > v0:
                    continue
                if self.live and _running(pid):
                    continue        # the snapshot raced with this process's start
                ops.append({"op": "proc_gone", "pid": pid, "repair": True, "ts": snap.taken_at})
            for pid, sp in snap.processes.items():
                if _exited(sp):
                    continue
                proc = self._procs.get(pid)
                if proc is None:
                    if pid in exited_after:
                        continue
                elif proc.version > v0 or _same_ns(proc, sp):
                    continue
                ops.append(proc_op(sp, container_of, True, snap.taken_at))
            for inode, info in snap_ns.items():
                ns = self._alive.get(inode)
                if ns is None and any(e.inode == inode and e.version > v0 for e in self._recent_ended(v0)):
                    continue
                if ns is not None and ns.version > v0 and (ns.type != info.type or (
                        info.ns_id is not None and ns.ns_id is not None and info.ns_id != ns.ns_id)):
                    continue        # made since: the snapshot shows its predecessor at this inode
                repair = ns is None or ns.type != info.type
                ops.append(ns_op(info, snap.taken_at, repair))
            ops.append({"op": "link"})
        # Namespaces without processes the snapshot does not show have ended.
        touched = {p.pid for p in self._procs.values() if p.version > v0}
        for inode, ns in list(self._alive.items()):
            if ns.version > v0:
                continue
            info = snap_ns.get(inode)
            if info is not None and info.type == ns.type and \
                    (info.ns_id is None or ns.ns_id is None or info.ns_id == ns.ns_id):
                if not full and (tuple(info.pinned) != tuple(ns.pinned)
                                 or tuple(info.holders) != tuple(ns.holders)):
                    ops.append({"op": "ns", "type": ns.type, "inode": inode,
                                "pinned": list(info.pinned), "holders": list(info.holders)})
                continue
            if ns.members & touched:
                continue
            process_held = bool(ns.members) or ns.refs > 0
            if not full and process_held:
                continue
            ended = ns.orphaned_at if ns.orphaned_at is not None else snap.taken_at
            ops.append({"op": "ns_gone", "type": ns.type, "inode": inode, "ended": ended,
                        "repair": bool(full and process_held), "ts": snap.taken_at})
        return ops

    def _recent_ended(self, v0):
        return [ns for ns in self._ended if ns.version > v0]

    def on_lost(self, n: int) -> None:
        """The tracer lost n events: count them; the service repairs from /proc."""
        self.apply_ops([{"op": "lost", "n": int(n)}])

    @property
    def orphans(self) -> int:
        with self._lock:
            return len(self._orphans)

    def pinned_only(self) -> int:
        with self._lock:
            return sum(1 for ns in self._alive.values()
                       if not ns.members and ns.refs <= 0 and (ns.pinned or ns.holders))

    def end_orphans(self) -> None:
        """Offline: accept every orphan as ended (no /proc to confirm with)."""
        while True:     # an ended namespace can orphan its owner or parent in turn
            with self._lock:
                ops = [{"op": "ns_gone", "type": ns.type, "inode": ns.inode, "ended": ns.orphaned_at}
                       for ns in list(self._orphans.values())]
            if not ops:
                return
            self.apply_ops(ops)

    # -- lazy /proc reads ---------------------------------------------------

    def _fresh(self, proc) -> None:
        """Read cmdline and cgroup of a process created or exec'd since the last read."""
        if proc.fresh:
            return
        if not self.live:
            # Replay: the read the live run made at this point was stashed by the replayer.
            queue = self._stash.get(proc.pid)
            if queue:
                op = queue.popleft()
                if not queue:
                    del self._stash[proc.pid]
                self._op(op)
            return
        cmdline = cgroup = None
        try:
            with open("/proc/%d/cmdline" % proc.pid, "rb") as f:
                raw = f.read(65536)
            args = raw.split(b"\0")
            if args and args[-1] == b"":
                args.pop()
            cmdline = [a.decode("utf-8", "replace") for a in args]
            with open("/proc/%d/cgroup" % proc.pid, "rb") as f:
                cgroup = f.read(65536).decode("utf-8", "replace").strip()
        except OSError:
            pass            # vanished: keep what we inherited; the exit event follows
        op = {"op": "procread", "pid": proc.pid, "cmdline": cmdline, "cgroup": cgroup}
        if cgroup is not None and self.resolve_container is not None:
            try:
                op["container"] = _container_json(self.resolve_container(proc.pid, cgroup))
            except Exception:
                log.exception("container lookup failed")
        if self._in_apply:
            op["nested"] = True
        if self._journals:
            self._input("op", op)
        if self._in_apply:
            self._op(op)
        else:
            # A read made for a reader (to_json, diff_since, lookups) is a change
            # of its own, at its own version: not folded into the last published one.
            self._bumped = False
            self._op(op)
            self._bumped = False

    def replay_input(self, kind: str, payload) -> None:
        """Feed one journaled input back (offline graphs); see add_journal.

        A read made while the live run applied an event or ops is journaled after
        them: the caller must pass it *before* them (replay_records does)."""
        if kind == "event":
            self.apply(payload)
        elif kind == "ops":
            self.apply_ops(payload)
        elif kind == "op":
            if payload.get("nested"):
                self.stash(payload)
            else:
                self.apply_ops([payload])

    def stash(self, op: dict) -> None:
        """Replay: hold a read the live run made while applying the preceding event."""
        self._stash.setdefault(op["pid"], deque()).append(op)

    def flush_stash(self) -> None:
        with self._lock:
            for queue in self._stash.values():
                for op in queue:
                    self._op(op)
            self._stash.clear()

    def command_of(self, pid: int) -> Optional[str]:
        """The command line of pid, read now if needed (joins)."""
        with self._lock:
            proc = self._procs.get(pid)
            if proc is None:
                return None
            self._fresh(proc)
            if proc.cmdline:
                return " ".join(proc.cmdline)
            return None

    # -- queries -------------------------------------------------------------

    def _container_name(self, cid):
        if cid is None:
            return None
        c = self._containers.get(cid)
        return c.get("name") if c else cid[:12]

    def _ns_container(self, ns, host_ids):
        if ns.id in host_ids:
            return None
        procs = self._procs
        for pid in ns.members:
            proc = procs.get(pid)
            if proc is not None:
                self._fresh(proc)
                if proc.container is not None:
                    return proc.container
        return None

    def ns_container_name(self, ns) -> Optional[str]:
        host_ids = {n.id for n in self.host_ns.values()}
        return self._container_name(self._ns_container(ns, host_ids))

    def _ns_json(self, ns, host_ids, container_cache) -> dict:
        cid = container_cache.get(ns.id, False)
        if cid is False:
            cid = self._ns_container(ns, host_ids)
        owner, parent = ns.owner, ns.parent
        return {
            "id": ns.id, "type": ns.type, "inode": ns.inode, "dev": ns.dev, "generation": ns.gen,
            "ns_id": ns.ns_id, "alive": ns.ended is None, "created": ns.created, "ended": ns.ended,
            "creator": ns.creator, "pids": sorted(ns.members), "container": self._container_name(cid),
            "container_id": cid,
            "owner": owner.inode if owner is not None else ns.owner_inode,
            "owner_id": owner.id if owner is not None else None,
            "parent": parent.inode if parent is not None else ns.parent_inode,
            "parent_id": parent.id if parent is not None else None,
            "owner_uid": ns.owner_uid, "uid_map": ns.uid_map, "gid_map": ns.gid_map,
            "pinned": list(ns.pinned), "holders": list(ns.holders),
            "pending_end": ns.orphaned_at is not None, "repaired": ns.repaired,
        }

    def _proc_json(self, proc) -> dict:
        self._fresh(proc)
        cmd = " ".join(proc.cmdline) if proc.cmdline else (proc.filename or proc.comm)
        out = {"pid": proc.pid, "ppid": proc.ppid, "comm": proc.comm, "cmdline": cmd, "uid": proc.uid,
               "ns": {slot: ns.id for slot, ns in proc.ns.items()},
               "container": self._container_name(proc.container), "container_id": proc.container,
               "repaired": proc.repaired}
        if proc.threads:
            out["threads"] = {str(tid): {s: n.id for s, n in m.items()} for tid, m in proc.threads.items()}
        return out

    def _counters(self) -> dict:
        by_type = {}
        for ns in self._alive.values():
            by_type[ns.type] = by_type.get(ns.type, 0) + 1
        out = dict(self.counters)
        out.update({"namespaces_alive": len(self._alive), "namespaces_by_type": by_type,
                    "namespaces_ended_kept": len(self._ended), "processes": len(self._procs),
                    "orphans": len(self._orphans), "joins": len(self.joins.sessions)})
        return out

    def counters_snapshot(self) -> dict:
        with self._lock:
            return self._counters()

    def to_json(self, include_ended: bool = True, include_processes: bool = True) -> dict:
        """The Graph JSON of docs/ARCHITECTURE.md."""
        with self._lock:
            host_ids = {n.id for n in self.host_ns.values()}
            cache = {}
            if include_ended:
                spaces = list(self._alive.values()) + [n for n in self._ended if n.ended is not None]
            else:
                spaces = list(self._alive.values())
            namespaces = [self._ns_json(ns, host_ids, cache) for ns in spaces]
            processes = [self._proc_json(p) for p in self._procs.values()] if include_processes else []
            return {
                "version": self.version, "time": time.time(), "node": self.node,
                "host_ns": {slot: ns.id for slot, ns in self.host_ns.items()},
                "namespaces": namespaces,
                "processes": processes,
                "containers": [dict(c) for c in self._containers.values()],
                "joins": self.joins.to_json(),
                "counters": self._counters(),
            }

    def diff_since(self, version: int) -> Optional[dict]:
        """Changes after `version`, or None when the log no longer reaches back that far."""
        with self._lock:
            if version > self.version or version < 0:
                return None
            changes_log = self._changes
            # A full log may have lost the first records of its oldest version.
            if version < self.version and len(changes_log) == changes_log.maxlen \
                    and changes_log[0][0] > version:
                return None
            latest = {}
            # Entity reads below may record changes (lazy /proc reads): those belong
            # to the next diff, so this one ends at the version seen now.
            current = self.version
            for v, op, entity, ident in reversed(self._changes):
                if v <= version:
                    break
                key = (entity, ident)
                if key not in latest:
                    latest[key] = op
                elif latest[key] == "remove" and op == "add":
                    latest[key] = "remove"
            host_ids = {n.id for n in self.host_ns.values()}
            changes = []
            for (entity, ident), op in latest.items():
                data = None
                if op != "remove":
                    data = self._entity_json(entity, ident, host_ids)
                    if data is None:
                        op = "remove"
                changes.append({"op": op, "entity": entity, "id": ident, "data": data})
            changes.reverse()
            return {"version": current, "since": version, "changes": changes}

    def _entity_json(self, entity, ident, host_ids):
        if entity == "namespace":
            ns = self._by_id.get(ident)
            return self._ns_json(ns, host_ids, {}) if ns is not None else None
        if entity == "process":
            proc = self._procs.get(ident)
            return self._proc_json(proc) if proc is not None else None
        if entity == "container":
            c = self._containers.get(ident)
            return dict(c) if c is not None else None
        if entity == "join":
            return self.joins.get_json(ident)
        return None

    # -- lookups -------------------------------------------------------------

    def namespace(self, ident: str) -> Optional[dict]:
        """By id "type:dev:inode:gen", or "type:inode" for the live one."""
        with self._lock:
            ns = self._by_id.get(ident)
            if ns is None:
                parts = ident.split(":")
                if len(parts) == 2 and parts[1].isdigit():
                    cand = self._alive.get(int(parts[1]))
                    if cand is not None and cand.type == parts[0]:
                        ns = cand
            if ns is None:
                return None
            host_ids = {n.id for n in self.host_ns.values()}
            out = self._ns_json(ns, host_ids, {})
            out["processes"] = [self._proc_json(self._procs[p]) for p in sorted(ns.members) if p in self._procs]
            return out

    def process(self, pid: int) -> Optional[dict]:
        with self._lock:
            proc = self._procs.get(pid)
            return self._proc_json(proc) if proc is not None else None

    def container(self, name_or_id: str) -> Optional[dict]:
        with self._lock:
            cid = None
            for c in self._containers.values():
                if c.get("name") == name_or_id or c["id"] == name_or_id or \
                        (len(name_or_id) >= 4 and c["id"].startswith(name_or_id)):
                    cid = c["id"]
                    break
            if cid is None:
                return None
            host_ids = {n.id for n in self.host_ns.values()}
            procs = [p for p in self._procs.values() if p.container == cid]
            spaces = [ns for ns in self._alive.values() if self._ns_container(ns, host_ids) == cid]
            return {"container": dict(self._containers[cid]),
                    "processes": [self._proc_json(p) for p in procs],
                    "namespaces": [self._ns_json(ns, host_ids, {}) for ns in spaces]}

    def join(self, ident) -> Optional[dict]:
        with self._lock:
            return self.joins.get_json(int(ident)) if str(ident).isdigit() else None

    def alive_refs(self) -> dict:
        """(type, inode) -> sorted member pids of every live namespace (tests, checks)."""
        with self._lock:
            return {(ns.type, ns.inode): sorted(ns.members) for ns in self._alive.values()}

    def process_ns(self) -> dict:
        """pid -> {slot: inode} (tests, checks)."""
        with self._lock:
            return {pid: {s: n.inode for s, n in p.ns.items()} for pid, p in self._procs.items()}

    def history(self, ns_type: Optional[str] = None) -> list:
        """Every namespace the model knows, live and retained ended, as JSON."""
        with self._lock:
            host_ids = {n.id for n in self.host_ns.values()}
            out = [self._ns_json(ns, host_ids, {}) for ns in self._by_id.values()
                   if ns_type is None or ns.type == ns_type]
        return out

    def check_invariants(self) -> list:
        """Broken invariants (empty when all hold): tests and the debug endpoint."""
        problems = []
        with self._lock:
            for pid, proc in self._procs.items():
                for slot, ns in proc.ns.items():
                    if ns.ended is not None:
                        problems.append("pid %d slot %s in ended %s" % (pid, slot, ns.id))
                    if slot in MEMBER_SLOTS and pid not in ns.members:
                        problems.append("pid %d missing from members of %s" % (pid, ns.id))
                    if SLOT_TYPE[slot] != ns.type:
                        problems.append("pid %d slot %s holds a %s namespace" % (pid, slot, ns.type))
            for ns in self._alive.values():
                for pid in ns.members:
                    proc = self._procs.get(pid)
                    if proc is None or ns not in [proc.ns.get(s) for s in MEMBER_SLOTS]:
                        problems.append("%s lists pid %d that is not in it" % (ns.id, pid))
                if self._alive.get(ns.inode) is not ns:
                    problems.append("%s not indexed" % ns.id)
            for ns in self._ended:
                if ns.members:
                    problems.append("ended %s has members" % ns.id)
        return problems

    # -- export --------------------------------------------------------------

    def to_dot(self) -> str:
        """Graphviz: live namespaces, ownership (dashed) and pid/user parents (solid)."""
        with self._lock:
            host_ids = {n.id for n in self.host_ns.values()}
            lines = ["digraph nsgraph {", '  rankdir=LR; node [shape=box, fontname="monospace"];']
            for ns in sorted(self._alive.values(), key=lambda n: (n.type, n.inode)):
                cname = self._container_name(self._ns_container(ns, host_ids))
                label = "%s %d\\n%d process%s" % (ns.type, ns.inode, len(ns.members),
                                                  "" if len(ns.members) == 1 else "es")
                if cname:
                    label += "\\ncontainer %s" % _dot_escape(cname)
                if ns.pinned:
                    label += "\\npinned %s" % _dot_escape(", ".join(ns.pinned))
                style = ', style="bold"' if ns.id in host_ids else ""
                lines.append('  "%s" [label="%s"%s];' % (ns.id, label, style))
            for ns in self._alive.values():
                if ns.owner is not None and ns.owner.ended is None:
                    lines.append('  "%s" -> "%s" [style=dashed, label="owner"];' % (ns.id, ns.owner.id))
                if ns.parent is not None and ns.parent is not ns.owner and ns.parent.ended is None:
                    lines.append('  "%s" -> "%s" [label="parent"];' % (ns.id, ns.parent.id))
            lines.append("}")
            return "\n".join(lines) + "\n"

    # -- checkpoints (store.py) ----------------------------------------------

    def export_state(self) -> dict:
        """Everything needed to continue from here (checkpoints): JSON-safe."""
        with self._lock:
            spaces = list(self._alive.values()) + [n for n in self._ended if n.ended is not None]
            return {
                "input_seq": self.input_seq, "version": self.version, "dev": self.dev, "node": self.node,
                "ended_retention": self.ended_retention,
                "gens": [[t, i, g] for (t, i), g in self._gens.items()],
                "namespaces": [_ns_state(ns) for ns in spaces],
                "processes": [_proc_state(p) for p in self._procs.values()],
                "containers": list(self._containers.values()),
                "host": {slot: ns.inode for slot, ns in self.host_ns.items()},
                "counters": dict(self.counters),
                "joins": self.joins.export_state(),
            }

    @classmethod
    def from_state(cls, state: dict, **kwargs) -> "NamespaceGraph":
        kwargs.setdefault("live", False)
        # A replay keeps as many ended namespaces as the run it continues did.
        kwargs.setdefault("ended_retention", state.get("ended_retention", DEFAULT_ENDED_RETENTION))
        g = cls(dev=state["dev"], node=state.get("node", "host"), **kwargs)
        g.input_seq = state["input_seq"]
        g.version = state["version"]
        g._gens = {(t, i): gen for t, i, gen in state["gens"]}
        by_id = {}
        for s in state["namespaces"]:
            ns = Namespace(s["type"], g.dev, s["inode"], s["gen"], s["ns_id"], s["created"], s["creator"])
            for attr in ("ended", "owner_inode", "parent_inode", "owner_uid", "uid_map", "gid_map",
                         "orphaned_at", "repaired"):
                setattr(ns, attr, s[attr])
            ns.pinned, ns.holders = tuple(s["pinned"]), tuple(s["holders"])
            ns.refs = s["refs"]
            by_id[ns.id] = ns
            g._by_id[ns.id] = ns
            if ns.ns_id is not None:
                g._by_nsid[ns.ns_id] = ns
            if ns.ended is None:
                g._alive[ns.inode] = ns
                if ns.orphaned_at is not None:
                    g._orphans[ns.id] = ns
            else:
                g._ended.append(ns)
            for pid in ns.holders:
                g._holder_index.setdefault(pid, set()).add(ns)
        for s in state["namespaces"]:
            ns = by_id["%s:%d:%d:%d" % (s["type"], g.dev, s["inode"], s["gen"])]
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
            g._procs[p.pid] = p
        g._containers = {c["id"]: dict(c) for c in state["containers"]}
        g.host_ns = {slot: g._alive[i] for slot, i in state["host"].items() if i in g._alive}
        g.counters.update(state["counters"])
        g.joins.load_state(state.get("joins") or {})
        return g


def replay_records(graph, records) -> None:
    """Feed (kind, payload) records in journal order, nested reads ahead of the event
    or ops record whose application made them."""
    pending = None
    for kind, payload in records:
        if kind == "op" and payload.get("nested"):
            graph.stash(payload)
            continue
        if pending is not None:
            graph.replay_input(*pending)
            pending = None
        if kind in ("event", "ops"):
            pending = (kind, payload)
        else:
            graph.replay_input(kind, payload)
    if pending is not None:
        graph.replay_input(*pending)
    graph.flush_stash()


def _running(pid: int) -> bool:
    """pid exists now and has not exited (zombies have: their exit event came and went)."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read(512)
    except OSError:
        return False
    rpar = data.rfind(b")")
    return rpar > 0 and data[rpar + 2:rpar + 3] not in (b"Z", b"X")


def _exited(p) -> bool:
    """A zombie or a process in do_exit: the model dropped it at its exit event."""
    return getattr(p, "state", "") in ("Z", "X") or "mnt" not in p.ns


def _same_ns(proc, sp) -> bool:
    if len(proc.ns) != len(sp.ns):
        return False
    for slot, (dev, inode) in sp.ns.items():
        ns = proc.ns.get(slot)
        if ns is None or ns.inode != inode:
            return False
    return True


def _container_json(container) -> Optional[dict]:
    if container is None:
        return None
    if isinstance(container, dict):
        return container
    return container.to_json()


def ns_op(info, ts, repair=False) -> dict:
    return {"op": "ns", "type": info.type, "inode": info.inode, "ns_id": info.ns_id,
            "owner_inode": info.owner_inode, "parent_inode": info.parent_inode,
            "owner_uid": info.owner_uid, "uid_map": info.uid_map, "gid_map": info.gid_map,
            "pinned": list(info.pinned), "holders": list(info.holders), "repair": repair, "ts": ts}


def proc_op(p, container_of=None, repair=False, ts=None) -> dict:
    op = {"op": "proc", "ts": ts, "pid": p.pid, "ppid": p.ppid, "uid": p.uid, "comm": p.comm,
          "cmdline": list(p.cmdline), "cgroup": p.cgroup, "start_ticks": p.start_ticks,
          "ns": {slot: inode for slot, (dev, inode) in p.ns.items()}, "repair": repair}
    if container_of is not None:
        op["container"] = _container_json(container_of(p.pid, p.cgroup))
    return op


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
           "filename": p.filename, "repaired": p.repaired,
           "ns": {slot: ns.id for slot, ns in p.ns.items()}}
    if p.threads:
        out["threads"] = {str(t): {s: n.id for s, n in m.items()} for t, m in p.threads.items()}
    return out


def _dot_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')
