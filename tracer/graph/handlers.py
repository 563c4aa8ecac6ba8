"""What each kind of tracer event does to the model: the EventKind -> handler table.

`EventHandlers.table()` maps every EventKind the model understands to one
handler (Tetragon style).  model.NamespaceGraph.apply looks the kind up; an
unknown kind is a BadEvent.  A handler validates its event *before* it changes
anything (entities.check_maps, BadEvent), so a rejected event leaves no trace.

Adding an event kind to the model: write its handler here and add one entry to
`table()` (this file only).  Two questions to answer for it: does it report a
syscall's result, so that a failed call is only counted (then it belongs in
SYSCALL_KINDS below)?  Should join sessions see it (then joins.JoinTracker.feed
needs an entry in its own table)?  A compact fork record, for example, never
fails (no SYSCALL_KINDS entry) but must reach the join sessions as a clone does
(the child of a process in a session joins it).

The hot path (a plain fork, an exec, an exit: nearly every event) is tuned:
decoded events share one read-only map per distinct namespace set, so an
identity compare with the process's `sig` (the map its slots were last set
from) usually proves nothing changed, and the change log is appended inline.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional

from ..events.flags import CLONE_PARENT, CLONE_THREAD, CSIGNAL
from ..events.kinds import NAMESPACE_KINDS, EventKind
from ..nstypes import NS_FLAGS_MASK, SLOT_TYPE
from .entities import MEMBER_SLOTS, BadEvent, Process, check_maps
from .processes import Creation, Processes

# Kinds that report a syscall's result: one that failed (ret < 0) changed nothing.
SYSCALL_KINDS = NAMESPACE_KINDS

Handler = Callable[[object], None]


class EventHandlers:
    def __init__(self, processes: Processes):
        self.processes = processes
        self.procs = processes.procs
        self.changes = processes.changes
        self.counters = processes.counters

    def table(self) -> Dict[str, Handler]:
        """EventKind -> handler(event): one entry per kind."""
        return {
            EventKind.CLONE: self.on_clone,
            EventKind.UNSHARE: self.on_move,
            EventKind.SETNS: self.on_move,
            EventKind.EXEC: self.on_exec,
            EventKind.EXIT: self.on_exit,
        }

    # -- the handlers ---------------------------------------------------------------

    def on_clone(self, ev) -> None:
        flags = ev.raw_flags
        child_pid = ev.child_pid
        if flags & CLONE_THREAD or child_pid is None:
            return
        if type(child_pid) is not int:
            raise BadEvent("child_pid %r" % (child_pid,))
        procs = self.procs
        ev_ns = ev.ns
        ev_before = ev.ns_before
        parent = procs.get(ev.pid)
        sig0 = parent.sig if parent is not None else None
        # Decoded events share their namespace maps, so identity usually settles it.
        same = sig0 is not None and (ev_ns is sig0 or ev_ns == sig0)
        if not same:
            check_maps(ev_ns, ev_before)
        elif ev_before is not None and ev_before is not ev_ns:
            check_maps(ev_before)
        if parent is None:
            parent = self.processes.discover(ev.pid, ev.ppid, ev.uid, ev.comm, ev_before or ev_ns,
                                    ev.ns_id_before or ev.ns_id, ev.ts)
        old = procs.get(child_pid)
        if old is not None:
            # The pid came back without an exit we saw: the old process is gone.
            self.processes.remove(old, ev.ts)
            self.counters["repaired"] += 1
        child = Process(child_pid, parent.ppid if flags & CLONE_PARENT else ev.pid, ev.uid, ev.comm)
        child.cmdline = parent.cmdline
        child.cgroup = parent.cgroup
        child.container = parent.container
        child.fresh = parent.fresh
        before = ev_before if ev_before else {s: n.inode for s, n in parent.ns.items()}
        after = ev_ns if ev_ns else before
        if ev.syscall != "clone3":
            flags &= ~CSIGNAL
        creation = creation_of(ev, before, after) if flags & NS_FLAGS_MASK else None
        psig = parent.sig
        if creation is None and psig is not None and (
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
            self.processes.set_ns(child, after, ev.ns_id, ev.ts, creation)
        procs[child_pid] = child
        # changes.record("add", "process", pid), inline: this runs for every fork.
        changes = self.changes
        if not changes.bumped:
            changes.version += 1
            changes.bumped = True
        child.version = changes.version
        changes.records.append((changes.version, "add", "process", child_pid))

    def on_move(self, ev) -> None:
        """unshare and setns: the calling task (a process, or one of its threads) moves."""
        check_maps(ev.ns, ev.ns_before)
        proc = self.procs.get(ev.pid)
        if proc is None:
            proc = self.processes.discover(ev.pid, ev.ppid, ev.uid, ev.comm, ev.ns_before or ev.ns,
                                  ev.ns_id_before or ev.ns_id, ev.ts)
        if not ev.ns:
            return
        before = ev.ns_before or {}
        creation = creation_of(ev, before, ev.ns) if ev.kind == EventKind.UNSHARE else None
        if ev.tid != ev.pid and ev.tid:
            processes = self.processes
            tmap = processes.thread_map(proc, ev.tid)
            self.processes.set_ns(proc, ev.ns, ev.ns_id, ev.ts, creation, thread=tmap)
            if all(proc.ns.get(s) is n for s, n in tmap.items()) and len(tmap) == len(proc.ns):
                # Back where its process is: no longer a thread of interest.
                processes.drop_thread(proc, ev.tid, ev.ts)
        else:
            self.processes.set_ns(proc, ev.ns, ev.ns_id, ev.ts, creation)
        proc.version = self.changes.next_version
        self.changes.record("update", "process", proc.pid)

    def on_exec(self, ev) -> None:
        ev_ns = ev.ns
        proc = self.procs.get(ev.pid)
        sig = proc.sig if proc is not None else None
        same = sig is not None and (ev_ns is sig or ev_ns == sig)
        if not same:
            check_maps(ev_ns)
        if proc is None:
            proc = self.processes.discover(ev.pid, ev.ppid, ev.uid, ev.comm, ev_ns, ev.ns_id, ev.ts)
        proc.comm = ev.comm
        proc.filename = ev.filename
        proc.fresh = False
        proc.cmdline = None
        if proc.threads:
            # exec ends every other thread.
            for tid in list(proc.threads):
                self.processes.drop_thread(proc, tid, ev.ts)
        # set_ns returns at once when the map is the process's sig: skip the call then.
        if ev_ns and not (same and proc.sig is sig):
            self.processes.set_ns(proc, ev_ns, ev.ns_id, ev.ts)
        # changes.record("update", "process", pid), inline: this runs for every exec.
        changes = self.changes
        if not changes.bumped:
            changes.version += 1
            changes.bumped = True
        proc.version = changes.version
        changes.records.append((changes.version, "update", "process", proc.pid))

    def on_exit(self, ev) -> None:
        proc = self.procs.get(ev.pid)
        if proc is None:
            self.processes.note_unknown_exit(ev.pid)
        else:
            self.processes.remove(proc, ev.ts)


def creation_of(ev, before, after) -> Optional[Creation]:
    """What a clone or unshare created: the new namespaces by inode, the creator, or None."""
    flags = ev.raw_flags
    if ev.kind == EventKind.CLONE and ev.syscall != "clone3":
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
    if created is None:
        return None
    creator = {"pid": ev.pid, "tid": ev.tid, "comm": ev.comm, "syscall": str(ev.syscall or ev.kind),
               "flags": ev.flags, "ts": ev.ts}
    if ev.kind == EventKind.CLONE:
        creator["child_pid"] = ev.child_pid
    if ev.container_id:
        # From the cgroup the kernel saw (the service tags namespace-making events):
        # the container whose runtime made these namespaces owns them, for good.
        creator["container"] = ev.container
        creator["container_id"] = ev.container_id
    return Creation(created, creator, before)
