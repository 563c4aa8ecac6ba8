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


# -- expanding change-only events (ABI 4) ------------------------------------------
# The probes send only the namespace slots an event changed (nothing at all for a
# plain fork): the rest is what the model already holds for the task.  These turn
# an event into the full before/after maps the handlers work on.  Events that carry
# full sets (recordings made before ABI 4) expand to themselves.

def _inherit(base: dict) -> dict:
    """What a child gets from a task holding `base` without CLONE_NEW* flags: the same
    namespaces, except that its pid and time namespaces are the *_for_children ones."""
    child = dict(base)
    for member, for_children in (("pid", "pid_for_children"), ("time", "time_for_children")):
        if for_children in base:
            child[member] = base[for_children]
    return child


def _values(namespaces: dict):
    """(slot -> inode, slot -> ns_id) of slot -> Namespace."""
    return ({slot: ns.inode for slot, ns in namespaces.items()},
            {slot: ns.ns_id for slot, ns in namespaces.items() if ns.ns_id is not None})


def _overlay(inodes: dict, ids: dict, changed, changed_ids) -> None:
    """Put an event's changed slots over the model's (an id it does not name is unknown)."""
    if changed:
        inodes.update(changed)
        for slot in changed:
            ids.pop(slot, None)
    if changed_ids:
        ids.update(changed_ids)


def expand(base: dict, ev, inherit: bool = False):
    """(before, after, id_before, id_after) around event ev for a task whose model
    namespaces are `base` (slot -> Namespace); with inherit, `after` is its child's."""
    before, id_before = _values(base)
    after, id_after = _values(_inherit(base)) if inherit else (dict(before), dict(id_before))
    _overlay(before, id_before, ev.ns_before, ev.ns_id_before)
    _overlay(after, id_after, ev.ns, ev.ns_id)
    return before, after, id_before, id_after


def _task_base(proc, tid) -> dict:
    """The model's namespaces of thread tid of proc: its own, if it has some, else its process's."""
    if proc.threads and tid != proc.pid:
        own = proc.threads.get(tid)
        if own is not None:
            return own
    return proc.ns


def _plain(base: dict) -> bool:
    """A child of this task gets exactly its namespaces (pid and time equal their *_for_children)."""
    return (base.get("pid_for_children", base.get("pid")) is base.get("pid")
            and base.get("time_for_children", base.get("time")) is base.get("time"))


class EventHandlers:
    def __init__(self, processes: Processes, want_repair: Callable[[], None]):
        self.processes = processes
        # Events name only what changed, so a process the model never saw gets its
        # namespaces from /proc at the next repair: the handlers ask for one.
        self.want_repair = want_repair
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
        if ev.ns or ev.ns_before:       # brief forks carry neither: nothing to check
            check_maps(ev.ns, ev.ns_before)     # before anything changes (a rejected event leaves no trace)
        parent = procs.get(ev.pid)
        if parent is None:
            parent = self.processes.discover(ev.pid, ev.ppid, ev.uid, ev.comm, ev.ns_before,
                                             ev.ns_id_before, ev.ts)
            self.want_repair()
        old = procs.get(child_pid)
        if old is not None:
            # The pid came back: the old process is gone (a zombie was reaped; else we
            # missed its exit).
            self.processes.remove(old, ev.ts)
            if not old.zombie:
                self.counters["repaired"] += 1
        child = Process(child_pid, parent.ppid if flags & CLONE_PARENT else ev.pid,
                        parent.uid if ev.uid is None else ev.uid, ev.comm)
        child.cmdline = parent.cmdline
        child.cgroup = parent.cgroup
        child.container = parent.container
        child.fresh = parent.fresh
        if ev.syscall != "clone3":
            flags &= ~CSIGNAL
        base = _task_base(parent, ev.tid)
        if not ev.ns and not flags & NS_FLAGS_MASK and base is parent.ns and _plain(base):
            # A plain fork (the common case, sent as a brief record): the child
            # shares every namespace of its parent.
            child.ns = pns = dict(parent.ns)
            for slot, ns in pns.items():
                if slot in MEMBER_SLOTS:
                    ns.members.add(child_pid)
                else:
                    ns.refs += 1
            child.sig = parent.sig
        else:
            before, after, _id_before, id_after = expand(base, ev, inherit=True)
            creation = creation_of(ev, before, after) if flags & NS_FLAGS_MASK else None
            self.processes.set_ns(child, after, id_after, ev.ts, creation)
        if not parent.ns:
            self.want_repair()      # a parent the model never saw: read both from /proc
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
            proc = self.processes.discover(ev.pid, ev.ppid, ev.uid, ev.comm, ev.ns_before,
                                           ev.ns_id_before, ev.ts)
            self.want_repair()
        if not ev.ns:
            return
        base = _task_base(proc, ev.tid)
        if ev.kind == EventKind.UNSHARE:
            before, after, _id_before, id_after = expand(base, ev)
            creation = creation_of(ev, before, after)
        else:
            # A setns creates nothing, so the event's own slots are all set_ns needs: the
            # full after map (the model's slots with these over them) would only add slots
            # set_ns skips one by one.  An event with a full set (an old recording) works too.
            after, id_after = ev.ns, ev.ns_id
            creation = None
        if ev.tid != ev.pid and ev.tid:
            processes = self.processes
            tmap = processes.thread_map(proc, ev.tid)
            processes.set_ns(proc, after, id_after, ev.ts, creation, thread=tmap)
            if all(proc.ns.get(s) is n for s, n in tmap.items()) and len(tmap) == len(proc.ns):
                # Back where its process is: no longer a thread of interest.
                processes.drop_thread(proc, ev.tid, ev.ts)
        else:
            self.processes.set_ns(proc, after, id_after, ev.ts, creation)
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
            self.want_repair()
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
        elif not proc.zombie:       # a zombie is past its exit: /proc showed it before the event came
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
    if ev.container:
        # From the cgroup the kernel saw (the service tags namespace-making events): the
        # container whose runtime made these namespaces owns them, for good.
        creator["container"] = ev.container
        if ev.container_id:
            creator["container_id"] = ev.container_id
    return Creation(created, creator, before)
