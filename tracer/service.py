"""NsgraphService: what `nsgraph serve` runs.  Wires snapshot -> graph, containers,
history store, collector, and the maintenance timer (repairs, reconciles, joins).

Nothing starts at import or construction; start() does the work (a few
seconds: the probes compile) and reports progress, so the web layer can answer
with "starting" meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional

from .events.kinds import EventKind
from .graph.model import NamespaceGraph
from .graph.nstable import DEFAULT_ENDED_RETENTION
from .graph.procreader import LiveProcReader
from .health import Health

log = logging.getLogger(__name__)

ZOMBIE_CHECKS = 64          # exited pids read per maintenance tick (4 a second) for zombies
JOIN_EXEC_WINDOW = 10.0     # a setns caller's (or its child's) exec this soon is tagged with its container


@dataclass
class ServiceConfig:
    db: Optional[str] = None            # history database; None: the default path; "" or "none": no history
    retention_s: Optional[float] = 7 * 86400        # history older than this is deleted
    history_max_bytes: Optional[int] = 400 * 1024 * 1024   # ... and beyond this size, oldest first
    reconcile_s: float = 30.0           # full /proc reconcile, counted in counters["reconciles"]
    settle_s: float = 1.0               # confirm ended namespaces at most this often (adapts to snapshot cost)
    ended_retention: int = DEFAULT_ENDED_RETENTION
    docker: bool = True                 # names/images/labels and exec commands from the Docker engine
    probe_options: object = None        # tracer.kernel.probes.ProbeOptions
    node: Optional[str] = None
    join_gap: float = 1.0


@dataclass
class ServiceStatus:
    state: str = "starting"             # starting | running | error | stopped
    progress: str = "not started"
    error: Optional[str] = None
    warnings: List[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"state": self.state, "progress": self.progress, "error": self.error,
                "warnings": list(self.warnings)}


class NsgraphService:
    def __init__(self, config=None):
        if isinstance(config, dict):
            config = ServiceConfig(**{k: v for k, v in config.items() if k in ServiceConfig.__dataclass_fields__})
        self.config = config or ServiceConfig()
        self.status = ServiceStatus()
        self.graph: Optional[NamespaceGraph] = None
        self.store = None
        self.collector = None
        self.catalog = None
        self.hints = None
        self._listeners = []
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = None
        self._progress_cb = None
        self._resolve = None
        self._last_reconcile = self._last_settle = time.monotonic()
        self._exits_seen = 0        # graph version up to which exits were checked for zombies
        self._exits_pending = []    # exits of the last tick: checked at the next (parents reap at once)
        self._joining = {}          # pid -> ts: setns callers and their children, until they exec
        self.timings = {}
        self._health = Health(self)

    def health(self) -> List[dict]:
        """What is degraded now, each with a message a person can act on (tracer/health.py)."""
        return self._health.check()

    # -- wiring for the web layer ------------------------------------------------

    def subscribe(self, callback: Callable[[int], None]) -> None:
        """callback(version) after every graph change (any thread; keep it quick)."""
        self._listeners.append(callback)

    def use_graph(self, graph: NamespaceGraph, store=None) -> "NsgraphService":
        """Serve a graph built elsewhere instead of tracing: a replayed recording, tests,
        benchmarks.  No probes and no /proc maintenance; `store` is a HistoryStore the
        caller has attached to the graph, if any.  The state is "running" and version
        callbacks work as after start()."""
        self.graph = graph
        self.store = store
        graph.subscribe(self._on_version)
        self.status.state = "running"
        self.status.progress = "serving a graph built without the tracer"
        return self

    def _on_version(self, version) -> None:
        for cb in list(self._listeners):
            try:
                cb(version)
            except Exception:
                log.exception("service listener failed")

    def _progress(self, text: str) -> None:
        self.status.progress = text
        log.info("%s", text)
        if self._progress_cb is not None:
            try:
                self._progress_cb(text)
            except Exception:
                pass

    # -- life cycle ------------------------------------------------------------------

    def start(self, progress_cb: Optional[Callable[[str], None]] = None,
              on_graph: Optional[Callable[[NamespaceGraph], None]] = None) -> bool:
        """Bring everything up; False (and status "error" with a fix) when the tracer cannot run.

        progress_cb(text) hears every step (status.progress holds the last one).
        on_graph(graph) is called once the graph holds the first snapshot and before
        the probes start: attach a journal there (a recorder) to miss no input."""
        self._progress_cb = progress_cb
        self.status.state = "starting"
        try:
            self._start(on_graph)
        except Exception as exc:
            self.status.state = "error"
            self.status.error = _explain(exc)
            self._progress("failed: %s" % self.status.error)
            return False
        self.status.state = "running"
        self._progress("running")
        return True

    def _start(self, on_graph) -> None:
        from .containers.catalog import ContainerCatalog
        from .containers.cgroups import parse_cgroup
        from .containers.records import container_from_ref
        from .host.snapshot import take_snapshot
        cfg = self.config
        t0 = time.perf_counter()
        if cfg.docker:
            self._progress("connecting to the Docker engine (optional)")
            # Not connected: /api/status says so while it lasts (tracer/health.py), not forever.
            self.catalog = ContainerCatalog().start(wait=2.0)
            from .containers.exec_hints import DockerExecHints
            self.hints = DockerExecHints().start()
            resolve = self.catalog.resolve
        else:
            def resolve(pid, cgroup):
                ref = parse_cgroup(cgroup) if cgroup else None
                return container_from_ref(ref) if ref else None
        self._resolve = resolve

        self._progress("reading every process's namespaces from /proc")
        graph = NamespaceGraph(node=cfg.node or _hostname(), ended_retention=cfg.ended_retention,
                               reader=LiveProcReader(resolve), join_gap=cfg.join_gap)
        snap = take_snapshot()
        graph.load_snapshot(snap, resolve)
        self.graph = graph
        self.timings["snapshot"] = time.perf_counter() - t0
        if on_graph is not None:
            on_graph(graph)
        graph.subscribe(self._on_version)
        if self.catalog is not None:
            self.catalog.subscribe(self._on_container)

        if cfg.db not in ("", "none"):
            from .history.store import HistoryStore, StoreError
            self._progress("opening the history database")
            try:
                self.store = HistoryStore(cfg.db, retention_s=cfg.retention_s,
                                          max_bytes=cfg.history_max_bytes).open()
                if self.store.notice:
                    self.status.warnings.append(self.store.notice)
                self.store.attach(graph)
                self.store.start()
            except StoreError as exc:
                self.store = None
                self.status.warnings.append(str(exc))

        from .kernel.collector import Collector
        from .kernel.probes import ProbeOptions
        self.collector = Collector(options=cfg.probe_options or ProbeOptions(proc_events=True),
                                   node=graph.node, on_progress=self._progress)
        from .containers.attribution import CgroupIds, EventContainers
        cgroup_ids = CgroupIds()
        self._tagger = EventContainers(self.catalog, cgroup_ids=cgroup_ids)
        # Per event, before the batch reaches the graph: the container of each task
        # that makes namespaces, so that a container gone at once keeps them.
        self.collector.subscribe(self._tag_creator)
        # One lock and one change notification per poll, not per event.
        self.collector.subscribe_batch(graph.apply_batch)
        self.collector.subscribe_lost(self._on_lost)
        self.collector.load()
        cgroup_ids.kernel_lookup = self.collector.probes.cgroup_path
        self.collector.start()
        # The probes attach one at a time, so a process can fork after the fork probe
        # attached and exit before the exit probe did: its fork event, buffered meanwhile,
        # has no exit event to follow.  Apply everything buffered, then reconcile with a
        # /proc snapshot taken after it; that also adds processes born between the first
        # snapshot and the attachment.
        self._progress("reconciling with /proc after attaching the probes")
        if not self.collector.sync():
            log.warning("the collector did not catch up within 30 s; reconciling anyway")
        self.reconcile()          # it syncs again after its snapshot
        self.timings["start"] = time.perf_counter() - t0
        self._last_reconcile = time.monotonic()
        self._last_settle = time.monotonic()
        self._thread = threading.Thread(target=self._maintain, name="nsgraph-maintenance", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)
        if self.collector is not None:
            self.collector.stop()
        if self.store is not None:
            self.store.close()
        if self.hints is not None:
            self.hints.close()
        if self.catalog is not None:
            self.catalog.close()
        if self.status.state != "error":
            self.status.state = "stopped"

    # -- inputs besides events -------------------------------------------------------------

    def _on_lost(self, n: int) -> None:
        self.graph.on_lost(n)
        self._wake.set()                # repair now, not at the next tick

    def _tag_creator(self, event) -> None:
        kind = event.kind
        if kind == EventKind.UNSHARE or (kind == EventKind.CLONE and event.is_namespace_event):
            self._tagger.tag(event)
        elif kind == EventKind.SETNS:
            self._joining[event.pid] = event.ts
        elif self._joining:
            # The command a join session runs (an exec by a setns caller or its child):
            # the container it runs in (the kernel's cgroup at the exec) names the
            # session's container when several could.  Only those execs are looked up.
            joining = self._joining
            if kind == EventKind.CLONE and event.pid in joining and event.child_pid:
                joining[event.child_pid] = event.ts
            elif kind == EventKind.EXEC and joining.pop(event.pid, None) is not None:
                self._tagger.tag(event)
            if len(joining) > 256:
                for pid in [p for p, ts in joining.items() if event.ts - ts > JOIN_EXEC_WINDOW]:
                    del joining[pid]

    def _on_container(self, action, container) -> None:
        if action == "destroy":
            self.graph.apply_ops([{"op": "container_gone", "id": container.id}])
        else:
            self.graph.apply_ops([{"op": "container", "data": container.to_json()}])

    # -- maintenance -------------------------------------------------------------------------

    def reconcile(self, since_version: Optional[int] = None, full: bool = True) -> int:
        """Compare with a fresh /proc snapshot and fix the model; returns items repaired."""
        from .host.snapshot import take_snapshot
        graph = self.graph
        v0 = graph.version if since_version is None else since_version
        t, cpu = time.perf_counter(), _cpu_seconds()
        # Settling confirms the end of namespaces nothing in the model holds: threads
        # (most of a snapshot's cost on a host with busy daemons) cannot hold those
        # unless events were missed, and that makes a full repair anyway.
        snap = take_snapshot(scan_threads=full)
        self.timings["last_snapshot" if full else "last_settle"] = time.perf_counter() - t
        self.timings["last_snapshot_cpu" if full else "last_settle_cpu"] = _cpu_seconds() - cpu
        if full and self.collector is not None and self.collector.running:
            # Settle, then compare: events the kernel recorded before or during the
            # snapshot but not yet applied would otherwise look like things the events
            # missed (a process gone from /proc whose exit is still in the buffer).
            self.collector.sync(timeout=5.0)
        return graph.reconcile(snap, since_version=v0, container_of=self._resolve, full=full)

    def settle(self) -> None:
        """Confirm which orphaned namespaces ended (pins are invisible to the tracer)."""
        self.reconcile(full=False)

    def _maintain(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.25)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.tick()
            except Exception as exc:
                if self._health.reconcile_error is None:
                    log.exception("maintenance failed")      # once per outage, not every 0.25 s
                self._health.maintenance_failed(exc)
                self._stop.wait(1.0)
            else:
                self._health.maintenance_ok()

    def tick(self) -> None:
        """One round of maintenance (the timer thread runs it about 4 times a second):
        a reconcile when the graph needs repair or the interval passed, else settling
        orphans; closing quiet join sessions; docker exec commands for sessions."""
        cfg = self.config
        graph = self.graph
        now = time.monotonic()
        if graph.needs_repair or now - self._last_reconcile >= cfg.reconcile_s:
            self.reconcile()
            self._last_reconcile = self._last_settle = time.monotonic()
        else:
            # Never spend more than 10 % of a CPU on settling: paced by the CPU its snapshot
            # took (on a loaded host the wall time is mostly waiting for a CPU).
            timings = self.timings
            interval = max(cfg.settle_s, 10 * timings.get("last_settle_cpu", timings.get("last_snapshot_cpu", 0.0)))
            if (graph.orphans or graph.pinned_only()) and now - self._last_settle >= interval:
                self.settle()
                self._last_settle = time.monotonic()
        wall = time.time()
        self.watch_zombies(wall)
        with graph.lock:
            due = graph.joins.flush_due(wall)
            pending = [(s.id, s.container, s.start, s.end) for s in graph.joins.pending_hints(wall)] \
                if self.hints is not None else []
        ops = []
        if due:
            ops.append({"op": "joins_flush", "now": wall})
        for ident, container, start, end in pending:
            command = self.hints.lookup(container, start, end)
            if command:
                ops.append({"op": "join_command", "id": ident, "command": command, "source": "docker"})
        if ops:
            graph.apply_ops(ops)

    def watch_zombies(self, wall: float) -> None:
        """Zombies: no event says that an exited process stays unreaped, nor when it is
        reaped.  Each tick reads /proc/PID/stat of the processes that exited during the
        tick before (at most ZOMBIE_CHECKS, the newest; a storm's others wait for the
        next full reconcile; a tick's delay lets parents that reap at once do so) and
        adds those still zombies (their pid and user links only); and drops the model's
        zombies /proc no longer shows.  Small reads per pid, off the event path."""
        from .graph.reconcile import proc_op
        from .host.procfs import is_zombie, read_process
        graph = self.graph
        with graph.lock:
            exited = graph.processes.recent_exits(self._exits_seen, ZOMBIE_CHECKS)
            self._exits_seen = graph.version
        exited, self._exits_pending = self._exits_pending, exited
        ops = []
        for pid in exited:
            if is_zombie(pid, None):
                info = read_process(pid, slots=("pid", "user"))
                if info is not None and info.state == "Z" and info.ns:
                    ops.append(proc_op(info, self._resolve, False, wall))
        ops += [{"op": "proc_gone", "pid": pid, "zombie": True, "ts": wall}
                for pid, start in graph.zombies() if not is_zombie(pid, start)]
        if ops:
            graph.apply_ops(ops)

    # -- numbers ------------------------------------------------------------------------------

    def stats(self) -> dict:
        out = {"status": self.status.to_json(), "timings": dict(self.timings)}
        if self.graph is not None:
            out["graph"] = self.graph.counters_snapshot()
        if self.collector is not None:
            out["collector"] = self.collector.stats()
        if self.store is not None:
            out["store"] = self.store.stats()
        return out


def _cpu_seconds() -> float:
    """CPU time of this thread and of reaped children (the snapshot's forked readers)."""
    import resource
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.thread_time() + children.ru_utime + children.ru_stime


def _hostname() -> str:
    import socket
    return socket.gethostname()


def _explain(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    from .kernel.probes import PrivilegeError, ProbeError
    if isinstance(exc, PrivilegeError):
        return text + " (nsgraph serve needs root to load the eBPF probes)"
    if isinstance(exc, ProbeError):
        return text
    return "%s: %s. Run `nsgraph doctor` to check this machine." % (type(exc).__name__, text)
