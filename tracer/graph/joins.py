"""Join sessions: a burst of setns calls, the processes it forks, and the command it runs.

`docker exec myapp ps aux` looks like this in the kernel (runc 1.1): runc's
`runc:[1:CHILD]` calls setns five times (ipc, uts, net, pid, mnt), then
unshare(0); it clones `runc:[2:INIT]`, which execs `ps`.  nsenter does the same
with or without a fork.  A session opens at the first setns of a process that is
in no open session, collects the setns calls of its processes and their clones,
and closes at the first exec in it (the command) or after a quiet gap.

JoinTracker runs under the graph lock (NamespaceGraph.apply calls feed) and
sees the model only through a JoinPort (joinport.py): which live namespace has
this inode, which container owns that namespace, what is this container called,
what command and container does this pid have; plus the change log for its own
records.  Time comes from events or from journaled ops only, so a replay closes
the same sessions at the same moments.

The command is the exec event's argv, captured in the kernel at the exec (a
/proc read afterwards may already name a later program: `sh -c '...; exec sleep
25'`).  The kernel keeps the first abi.ARGS_LEN bytes: a cut argv is completed
from /proc only while /proc still shows that same command, else Docker's
`exec_start: <cmd>` event (containers.exec_hints) completes it afterwards, as it
does for recordings without argv (the exec'd file name stands in meanwhile).

The container engines' own switches (dockerd entering a new container's net
namespace, ...) are sessions too, marked `housekeeping` (housekeeping.py): kept,
but left out of to_json() unless asked for.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import List, Optional, Protocol, Tuple

from ..containers import housekeeping
from ..events.kinds import EventKind
from ..nstypes import CHILDREN_SLOT, RUNC_JOIN_ORDER, SLOT_TYPE
from .changelog import ChangeLog

log = logging.getLogger(__name__)

HINT_MAX_AGE = 30.0
CUT = "..."         # the decoder ends a cut argv with it
DEFAULT_JOIN_RETENTION = 500


class JoinPort(Protocol):
    """What join sessions need to know of the model (NamespaceGraph implements it)."""

    def live_namespace_id(self, ns_type: str, inode: int) -> Optional[str]:
        """The id of the live namespace of that type and inode, or None."""

    def namespace_containers(self, ns_id: str) -> Tuple[Optional[str], List[str]]:
        """(owner, sharers): the id of the container that owns the namespace (None for
        the host's) and the ids of the other containers that are members of it."""

    def container_name(self, container_id: Optional[str]) -> Optional[str]: ...

    def command_of(self, pid: int) -> Optional[str]:
        """pid's command line, read now if the model has not yet."""

    def process_container(self, pid: int) -> Optional[str]:
        """The id of the container pid runs in (its cgroup), read now if needed."""


def _tool(comm: str) -> str:
    if comm.startswith("runc"):
        return "runc"
    if comm.startswith("crun"):
        return "crun"
    return comm


class JoinSession:
    __slots__ = ("id", "pid", "tid", "comm", "tool", "types", "target", "start", "end", "last",
                 "procs", "exec_pid", "command", "command_source", "container", "closed", "reason", "changed",
                 "housekeeping", "exec_container")

    def __init__(self, ident, ev):
        self.id = ident
        self.pid = ev.pid
        self.tid = ev.tid
        self.comm = ev.comm
        self.tool = _tool(ev.comm)
        self.types = []
        self.changed = []        # the types whose namespace the calls actually changed
        self.target = {}
        self.start = ev.ts
        self.end = None
        self.last = ev.ts
        self.procs = {ev.pid}
        self.exec_pid = None
        self.command = None
        self.command_source = None
        self.container = None
        self.closed = False
        self.reason = None
        self.housekeeping = housekeeping.of_session_start(ev.comm)   # a reason, or None
        self.exec_container = None   # the container id the exec event was tagged with


class JoinTracker:
    def __init__(self, port: JoinPort, changes: ChangeLog, gap: float = 1.0,
                 retention: int = DEFAULT_JOIN_RETENTION):
        self.port = port
        self.changes = changes
        self.gap = gap
        self.retention = retention
        self.sessions = {}          # id -> JoinSession (open and retained closed)
        self.active = False         # a session is open (read for every event: a plain attribute)
        self._open = {}             # id -> JoinSession
        self._closed = deque()
        self._next = 1
        # EventKind -> what it means for the sessions: one entry per kind.
        self._handlers = {EventKind.SETNS: self._on_setns, EventKind.CLONE: self._on_clone,
                          EventKind.UNSHARE: self._on_unshare, EventKind.EXEC: self._on_exec}

    # -- events (under the graph lock) ----------------------------------------

    def feed(self, ev) -> None:
        if self._open:
            self.flush(ev.ts)
        handler = self._handlers.get(ev.kind)
        if handler is not None:
            handler(ev)

    def _on_setns(self, ev) -> None:
        if ev.ret < 0:
            return
        session = self._session_of(ev.pid)
        if session is None:
            session = JoinSession(self._next, ev)
            self._next += 1
            self._open[session.id] = session
            self.active = True
            self.sessions[session.id] = session
            self.changes.record("add", "join", session.id)
        self._add_setns(session, ev)
        session.last = ev.ts

    def _on_clone(self, ev) -> None:
        session = self._session_of(ev.pid)
        if session is not None and ev.child_pid:
            session.procs.add(ev.child_pid)
            session.last = ev.ts
            self._note_creation(session, ev)

    def _on_unshare(self, ev) -> None:
        session = self._session_of(ev.pid)
        if session is not None:
            session.last = ev.ts
            self._note_creation(session, ev)

    def _note_creation(self, session, ev) -> None:
        """A runtime that makes namespaces in a session is starting a container."""
        if session.housekeeping is None:
            session.housekeeping = housekeeping.makes_namespaces(session.tool, ev)
            if session.housekeeping is not None:
                self.changes.record("update", "join", session.id)

    def _on_exec(self, ev) -> None:
        session = self._session_of(ev.pid)
        if session is not None:
            session.exec_pid = ev.pid
            session.exec_container = ev.container_id
            session.command, session.command_source = self._command(ev)
            self._close(session, ev.ts, "exec")

    def _command(self, ev) -> Tuple[str, str]:
        """(command, source) of an exec: its argv as the kernel captured it ("argv"); a
        cut argv completed by /proc while /proc still shows it ("proc"); without argv
        (older recordings) /proc, else the exec'd file ("exec")."""
        if ev.args:
            command = " ".join(ev.args)
            if not command.endswith(CUT):
                return command, "argv"
            full = self.port.command_of(ev.pid)
            if full and full.startswith(command[:-len(CUT)]):
                return full, "proc"
            return command, "argv"
        full = self.port.command_of(ev.pid)
        return (full, "proc") if full else (ev.filename or ev.comm, "exec")

    def _session_of(self, pid):
        for session in self._open.values():
            if pid in session.procs:
                return session
        return None

    def _add_setns(self, session, ev) -> None:
        types = []
        for t in ev.flag_ns_types():
            types.append(t)
        for slot in ev.changed_types():
            t = SLOT_TYPE[slot]
            if t not in types:
                types.append(t)
            if t not in session.changed:
                session.changed.append(t)
        for t in types:
            if t not in session.types:
                session.types.append(t)
            if t in session.target:
                continue
            inode = ev.ns.get(CHILDREN_SLOT.get(t, t)) or ev.ns.get(t)
            ident = self.port.live_namespace_id(t, inode) if inode is not None else None
            if ident is not None:
                session.target[t] = ident

    def flush_due(self, now: float) -> bool:
        """A session has been quiet for longer than the gap (the timer should flush)."""
        return any(now - s.last > self.gap for s in self._open.values())

    def flush(self, now: float) -> None:
        """Close sessions quiet for longer than the gap."""
        for session in list(self._open.values()):
            if now - session.last > self.gap:
                self._close(session, session.last, "quiet")

    def _close(self, session, ts, reason) -> None:
        session.closed = True
        session.end = ts
        session.reason = reason
        self._open.pop(session.id, None)
        self.active = bool(self._open)
        session.container = self._container_of(session)
        self.changes.record("update", "join", session.id)
        self._closed.append(session)
        while len(self._closed) > self.retention:
            old = self._closed.popleft()
            if self.sessions.pop(old.id, None) is not None:
                self.changes.record("remove", "join", old.id)

    def _container_of(self, session):
        """The container whose namespaces the session joined: the one that owns or shares
        every joined namespace that belongs to a container (`docker exec B` where B shares
        A's net is B's; `nsenter -n` into that net is A's, its owner), else the first owner.
        When several do (B's own uts/mnt not yet credited to B), the container the
        session's own process runs in breaks the tie (the exec event's, tagged from the
        kernel's cgroup id; else a journaled /proc read); else the first owner, else the
        lowest id: never set order."""
        common, first_owner = None, None
        for t in RUNC_JOIN_ORDER:
            ident = session.target.get(t)
            owner, sharers = self.port.namespace_containers(ident) if ident else (None, [])
            if owner is None:
                continue
            if first_owner is None:
                first_owner = owner
            present = {owner, *sharers}
            common = present if common is None else common & present
        if common and len(common) > 1:
            own = session.exec_container or self.port.process_container(session.exec_pid or session.pid)
            if own in common:
                return own
        if common and first_owner not in common:
            return min(common)
        return first_owner

    def set_command(self, ident, command, source) -> None:
        session = self.sessions.get(int(ident))
        if session is not None and session.command != command:
            session.command, session.command_source = command, source
            self.changes.record("update", "join", session.id)

    def pending_hints(self, now: float) -> list:
        """Closed recent sessions whose command is only the exec'd file name, or a cut argv."""
        return [s for s in self._closed
                if s.container and now - (s.end or now) < HINT_MAX_AGE and (
                    s.command_source == "exec" or (s.command_source == "argv" and s.command.endswith(CUT)))]

    # -- output -----------------------------------------------------------------

    def _json(self, s) -> dict:
        name = self.port.container_name(s.container) if s.container else None
        types = list(s.types)
        return {"id": s.id, "pid": s.pid, "tid": s.tid, "comm": s.comm, "tool": s.tool,
                "container": name, "container_id": s.container, "types": types,
                "changed": [t for t in types if t in s.changed],
                "target": dict(s.target), "command": s.command, "command_source": s.command_source,
                "exec_pid": s.exec_pid, "start": s.start, "end": s.end, "open": not s.closed,
                "housekeeping": s.housekeeping,
                "summary": summary(name, types, s.command, s.target, s.changed, s.housekeeping)}

    def to_json(self, include_housekeeping: bool = False) -> list:
        """The sessions; the engines' own switches only with include_housekeeping."""
        return [self._json(s) for s in self.sessions.values() if include_housekeeping or not s.housekeeping]

    def housekeeping_count(self) -> int:
        return sum(1 for s in self.sessions.values() if s.housekeeping)

    def get_json(self, ident, include_housekeeping: bool = True) -> Optional[dict]:
        s = self.sessions.get(ident)
        if s is None or (s.housekeeping and not include_housekeeping):
            return None
        return self._json(s)

    def export_state(self) -> dict:
        return {"next": self._next, "sessions": [
            {a: (sorted(getattr(s, a)) if a == "procs" else getattr(s, a)) for a in JoinSession.__slots__}
            for s in self.sessions.values()]}

    def load_state(self, state: dict) -> None:
        self._next = state.get("next", 1)
        for d in state.get("sessions", []):
            s = JoinSession.__new__(JoinSession)
            for a in JoinSession.__slots__:
                setattr(s, a, d.get(a))
            s.procs = set(s.procs or ())
            s.types = list(s.types or [])
            s.changed = list(s.types if s.changed is None else s.changed)   # older states: all
            s.target = dict(s.target or {})
            self.sessions[s.id] = s
            (self._closed.append(s) if s.closed else self._open.__setitem__(s.id, s))
        self.active = bool(self._open)


def summary(container: Optional[str], types: list, command: Optional[str], target: dict,
            changed: Optional[list] = None, housekeeping: Optional[str] = None) -> str:
    """One line for a join session.  `changed`: the types whose namespace actually
    changed; when some joined types did not (`nsenter -a` joins every type), it says
    which did.  `housekeeping`: the reason it is an engine's own switch."""
    if housekeeping:
        return "housekeeping (%s): %s" % (housekeeping, summary(container, types, command, target, changed))
    listed = ", ".join(types) if types else "no"
    noun = "namespace" if len(types) == 1 else "namespaces"
    if container:
        text = "joined container %s's %s %s" % (container, listed, noun)
    else:
        where = ", ".join(target[t] for t in types if t in target)
        text = "joined %s %s%s" % (listed, noun, (" (%s)" % where) if where else "")
    if changed is not None and len(changed) < len(types):
        moved = [t for t in types if t in changed]
        text += " (changed: %s)" % (", ".join(moved) if moved else "none")
    if command:
        text += " and ran `%s`" % command
    return text
