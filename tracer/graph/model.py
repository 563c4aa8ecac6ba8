"""NamespaceGraph: the live namespace graph, a snapshot kept current by tracer events.

One lock guards everything (the collector thread applies, web threads read); the parts,
one job each, are listed in tracer/graph/__init__.py.  Every input is journaled
(add_journal) before it is applied, so a journal replays to the very same graph offline.
Errors (docs/ARCHITECTURE.md, "Errors in the model"): a BadEvent is counted in
counters["rejected"] with nothing applied; any other exception is a bug: logged with its
traceback, counted in counters["internal_errors"], the graph marked for repair.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable, Iterable, List, Optional

from ..events.kinds import EventKind
from . import checkpoint, dot, invariants, views
from .changelog import DEFAULT_CHANGELOG, ChangeLog
from .entities import BadEvent
from .handlers import SYSCALL_KINDS, EventHandlers
from .joinport import ModelJoinPort
from .joins import DEFAULT_JOIN_RETENTION, JoinTracker
from .nstable import DEFAULT_ENDED_RETENTION, NamespaceTable
from .ops import apply_op
from .procreader import ProcReader, ReplayProcReader
from .processes import Processes
from .reconcile import TablesView, load_ops, reconcile_ops

log = logging.getLogger(__name__)

_SETNS = EventKind.SETNS


class NamespaceGraph:
    """The model.  `reader` supplies lazy /proc reads: procreader.LiveProcReader for a
    live graph; by default a ReplayProcReader, which never touches /proc (replays,
    benchmarks, tests)."""

    def __init__(self, *, dev: Optional[int] = None, node: str = "host",
                 reader: Optional[ProcReader] = None,
                 ended_retention: int = DEFAULT_ENDED_RETENTION,
                 changelog_size: int = DEFAULT_CHANGELOG,
                 join_gap: float = 1.0):
        self._lock = threading.RLock()
        self.reader = reader if reader is not None else ReplayProcReader()
        self.dev = self.reader.dev if dev is None else dev
        self.node = node
        self.counters = {"events": 0, "lost": 0, "repaired": 0, "rejected": 0, "internal_errors": 0,
                         "discovered": 0, "failed_calls": 0, "reconciles": 0, "settled": 0}
        self.changes = ChangeLog(changelog_size)
        self.namespaces = NamespaceTable(self.dev, self.changes, self.counters, ended_retention,
                                         on_stale=self._on_stale)
        self.processes = Processes(self.namespaces, self.changes, self.counters)
        self.containers = {}        # id -> container JSON
        self.host_ns = {}           # slot -> Namespace of pid 1
        self.joins = JoinTracker(ModelJoinPort(self), self.changes, gap=join_gap, retention=DEFAULT_JOIN_RETENTION)
        self.needs_repair = False      # reconcile with /proc soon (lost events, missed exits, a bug)
        self.damaged = False           # an internal error: recount before reconciling
        self.input_seq = 0
        self._handlers = EventHandlers(self.processes, lambda: setattr(self, "needs_repair", True)).table()
        self._journals = []
        self._listeners = []
        self._in_apply = False         # an input is being applied (this thread holds the lock)
        self._deferred = []            # ops that arrived while another input was applied

    # -- wiring --------------------------------------------------------------------------

    @property
    def lock(self):
        return self._lock

    @property
    def version(self) -> int:
        return self.changes.version

    def add_journal(self, callback: Callable[[str, object, int], None]) -> None:
        """callback(kind, payload, input_seq) for every input, under the graph lock:
        ("event", Event), ("ops", [op, ...]) for one apply_ops call, ("op", procread op)
        for a lazy /proc read (op["nested"] when made while an event was applied).
        Must be quick and must not call back in.  history/replay.py is the inverse."""
        self._journals.append(callback)

    def remove_journal(self, callback) -> None:
        with self._lock:
            if callback in self._journals:
                self._journals.remove(callback)

    def subscribe(self, callback: Callable[[int], None]) -> Callable[[], None]:
        """callback(version) after each change, outside the lock; returns an unsubscribe."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback) if callback in self._listeners else None

    def _notify(self, version) -> None:
        for cb in list(self._listeners):
            try:
                cb(version)
            except Exception:
                log.exception("graph listener failed")

    def _journal(self, kind, payload) -> None:
        self.input_seq += 1
        for journal in self._journals:
            journal(kind, payload, self.input_seq)

    # -- events ----------------------------------------------------------------------------

    def apply(self, event) -> None:
        """Apply one tracer Event (collector thread)."""
        with self._lock:
            changed = self._apply_one(event)
            version = self.changes.version
        if changed and self._listeners:
            self._notify(version)
        if self._deferred:
            self._apply_deferred()

    def apply_batch(self, events: Iterable) -> None:
        """Apply events in order under one lock: the same graph, versions and journal
        as apply() on each, but listeners hear once, with the last version."""
        changed = False
        with self._lock:
            one = self._apply_one
            for event in events:
                if one(event):
                    changed = True
            version = self.changes.version
        if changed and self._listeners:
            self._notify(version)
        if self._deferred:
            self._apply_deferred()

    def _apply_one(self, ev) -> bool:
        """One event under the lock; True when it changed the graph (a new version)."""
        changes = self.changes
        changes.bumped = False
        if self._journals:
            self._journal("event", ev)
        self._in_apply = True
        counters = self.counters
        counters["events"] += 1
        try:
            kind = ev.kind
            try:
                handler = self._handlers[kind]
            except (KeyError, TypeError):       # TypeError: an unhashable kind from a bad file
                raise BadEvent("unknown event kind %r" % (kind,)) from None
            if ev.ret < 0 and kind in SYSCALL_KINDS:
                counters["failed_calls"] += 1
            else:
                handler(ev)
                joins = self.joins
                if joins.active or kind == _SETNS:
                    joins.feed(ev)
        except BadEvent as exc:
            self._rejected("event", ev, exc)
        except Exception:
            self._internal_error("event", ev)
        self._in_apply = False
        changed = changes.bumped        # changes.finish(), inline: this runs for every event
        changes.bumped = False
        return changed

    def _rejected(self, what, item, exc) -> None:
        self.counters["rejected"] += 1
        if self.counters["rejected"] == 1:
            log.warning("%s rejected (%s): %r; later ones are only counted (counters.rejected)",
                        what, exc, item)

    def _internal_error(self, what, item) -> None:
        self.counters["internal_errors"] += 1
        self.needs_repair = self.damaged = True
        log.exception("internal error in the namespace model applying %s %r; "
                      "the graph will be repaired from /proc", what, item)

    # -- ops: every non-event input ------------------------------------------------------

    def apply_ops(self, ops: Iterable[dict]) -> None:
        """Apply ops (ops.py; journaled).  Called while this thread applies another input
        (a lazy read's container lookup), they wait and go in as an input of their own:
        the journal must hold inputs in the order they were applied."""
        ops = list(ops)
        with self._lock:
            if self._in_apply:
                self._deferred.extend(ops)
                return
            changed, version = self._apply_ops_locked(ops)
        self._after_ops(changed, version)

    def _apply_ops_locked(self, ops: list):
        changes = self.changes
        changes.bumped = False
        if self._journals:
            self._journal("ops", ops)
        self._in_apply = True
        for op in ops:
            self._apply_op(op)
        self._in_apply = False
        return changes.finish(), changes.version

    def _after_ops(self, changed: bool, version: int) -> None:
        if changed and self._listeners:
            self._notify(version)
        if self._deferred:
            self._apply_deferred()

    def _apply_deferred(self) -> None:
        with self._lock:
            ops, self._deferred = self._deferred, []
        if ops:
            self.apply_ops(ops)

    def _apply_op(self, op) -> None:
        try:
            apply_op(self, op)
        except BadEvent as exc:
            self._rejected("op", op, exc)
        except Exception:
            self._internal_error("op", op)

    def _on_stale(self, ns) -> None:
        if self.processes.drop_stale(ns):
            self.needs_repair = True

    def on_lost(self, n: int) -> None:
        """The tracer lost n events: count them; the service repairs from /proc."""
        self.apply_ops([{"op": "lost", "n": int(n)}])

    # -- snapshots: load, reconcile, settle ------------------------------------------------

    def load_snapshot(self, snap, container_of: Optional[Callable] = None) -> None:
        self.apply_ops(load_ops(snap, container_of))

    def view(self) -> TablesView:
        """A read-only view of the tables for reconcile.reconcile_ops (under the lock)."""
        return TablesView(self.processes, self.namespaces)

    def reconcile(self, snap, since_version: int, container_of: Optional[Callable] = None,
                  full: bool = True) -> int:
        """Make the model agree with snap (taken after since_version was current); see
        reconcile.py.  full=False only settles orphans and pins (routine, not counted
        as repairs).  Returns the repair count."""
        before = self.counters["repaired"]
        if full and self.damaged:
            self.apply_ops([{"op": "recount", "ts": snap.taken_at}])
        # Computed and applied under one hold of the lock: an event applied in between
        # (an exit, say) would be undone by ops computed before it.
        with self._lock:
            ops = reconcile_ops(snap, self.view(), since_version, full, container_of, self.reader.running)
            ops.append({"op": "counted", "name": "reconciles" if full else "settled"})
            changed, version = self._apply_ops_locked(ops)
            if full:
                self.needs_repair = False
            repaired = self.counters["repaired"] - before
        self._after_ops(changed, version)
        return repaired

    @property
    def orphans(self) -> int:
        with self._lock:
            return len(self.namespaces.orphans)

    def pinned_only(self) -> int:
        with self._lock:
            return self.namespaces.pinned_only()

    def zombies(self) -> list:
        """(pid, start_ticks) of the zombies the model holds: the service drops each once
        /proc no longer shows it (reaped), so they need no full snapshot."""
        with self._lock:
            procs = self.processes.procs
            return [(pid, procs[pid].start_ticks) for pid in sorted(self.processes.zombies)]

    def end_orphans(self) -> None:
        """Offline: accept every orphan as ended (no /proc to confirm with)."""
        while True:     # an ended namespace can orphan its owner or parent in turn
            with self._lock:
                ops = [{"op": "ns_gone", "type": ns.type, "inode": ns.inode, "ended": ns.orphaned_at}
                       for ns in list(self.namespaces.orphans.values())]
            if not ops:
                return
            self.apply_ops(ops)

    # -- lazy /proc reads --------------------------------------------------------

    def ensure_read(self, proc) -> None:
        """Read proc's command line and cgroup (and container) if it was created or exec'd
        since the last read: through the reader, journaled as a "procread" op."""
        if proc.fresh:
            return
        op = self.reader.read(proc.pid)
        if op is None:
            return
        if self._in_apply:
            op["nested"] = True
        if self._journals:
            self._journal("op", op)
        if self._in_apply:
            self._apply_op(op)
        else:
            # A read made for a reader (to_json, diff_since, lookups) is a change
            # of its own, at its own version: not folded into the last published one.
            self.changes.begin()
            self._apply_op(op)
            self.changes.finish()

    # -- reading (webapp/contract.py GraphReader; shapes in schema.py) ------------------------

    def to_json(self, include_housekeeping: bool = False, include_ended: bool = True,
                include_processes: bool = True) -> dict:
        """The Graph JSON; its joins leave out the container engines' own namespace
        switches (housekeeping.py) unless include_housekeeping."""
        with self._lock:
            return views.graph_json(self, include_ended, include_processes, include_housekeeping)

    def diff_since(self, version: int) -> Optional[dict]:
        """Changes after `version`, or None when the log no longer reaches back that far."""
        with self._lock:
            return views.diff_since(self, version)

    def changes_since(self, version: int) -> List[tuple]:
        """The change records (version, op, entity, ident) after `version` that the log
        still holds, oldest first (the history store's `changes` table)."""
        with self._lock:
            return self.changes.since(version)

    def namespace(self, ident: str) -> Optional[dict]:
        """By id "type:dev:inode:gen", or "type:inode" for the live one."""
        with self._lock:
            return views.namespace_detail(self, ident)

    def live_namespace_id(self, ns_type: str, inode: int) -> Optional[str]:
        """The id of the live namespace (type, inode), or None (host/nsrefresh.py asks)."""
        with self._lock:
            ns = self.namespaces.live(ns_type, inode)
            return ns.id if ns is not None else None

    def process(self, pid: int) -> Optional[dict]:
        with self._lock:
            proc = self.processes.get(pid)
            return views.proc_json(self, proc) if proc is not None else None

    def container(self, name_or_id: str) -> Optional[dict]:
        """By name, id, or id prefix (views.MIN_ID_PREFIX characters at least)."""
        with self._lock:
            return views.container_detail(self, name_or_id)

    def join(self, ident) -> Optional[dict]:
        with self._lock:
            return self.joins.get_json(int(ident)) if str(ident).isdigit() else None

    def history(self, ns_type: Optional[str] = None) -> list:
        """Every namespace the model knows, live and retained ended, as JSON."""
        with self._lock:
            return views.history(self, ns_type)

    def counters_snapshot(self) -> dict:
        with self._lock:
            return views.counters(self)

    def to_dot(self) -> str:
        with self._lock:
            return dot.to_dot(self)

    def alive_refs(self) -> dict:
        """(type, inode) -> sorted member pids of every live namespace (tests, checks)."""
        with self._lock:
            return {(ns.type, ns.inode): sorted(ns.members) for ns in self.namespaces.alive.values()}

    def process_ns(self) -> dict:
        """pid -> {slot: inode} (tests, checks)."""
        with self._lock:
            return {pid: {s: n.inode for s, n in p.ns.items()} for pid, p in self.processes.procs.items()}

    def check_invariants(self) -> list:
        """Broken invariants (empty when all hold): tests and the debug endpoint."""
        with self._lock:
            return invariants.check_invariants(self)

    # -- checkpoints (history/) ---------------------------------------------------------------

    def export_state(self) -> dict:
        """Everything needed to continue from here (checkpoints): JSON-safe."""
        with self._lock:
            return checkpoint.export_state(self)

    @classmethod
    def from_state(cls, state: dict, **kwargs) -> "NamespaceGraph":
        """An offline graph (unless kwargs give a reader) continuing from export_state output."""
        # A replay keeps as many ended namespaces as the run it continues did.
        kwargs.setdefault("ended_retention", state.get("ended_retention", DEFAULT_ENDED_RETENTION))
        g = cls(dev=state["dev"], node=state.get("node", "host"), **kwargs)
        checkpoint.load_state(g, state)
        return g
