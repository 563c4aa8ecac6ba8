"""NsgraphService: what `nsgraph serve` runs.  Wires snapshot -> graph, containers,
history store, collector, and the maintenance timer (repairs, reconciles, joins).

Nothing starts at import or construction; start() does the work (a few
seconds: the probes compile) and reports progress, so the web layer can answer
with "starting" meanwhile.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional

from .event_tags import EventTagging
from .graph.model import NamespaceGraph
from .graph.nstable import DEFAULT_ENDED_RETENTION
from .graph.procreader import LiveProcReader
from .health import Health
from .maintenance import Maintenance

log = logging.getLogger(__name__)

APPLY_SLICE = 512       # events applied under one hold of the graph lock (_apply_events)


@dataclass
class ServiceConfig:
    db: Optional[str] = None            # history database; None: the default path; "" or "none": no history
    retention_s: Optional[float] = 7 * 86400        # history older than this is deleted
    history_max_bytes: Optional[int] = 400 * 1024 * 1024   # ... and beyond this size, oldest first
    reconcile_s: float = 30.0           # full /proc reconcile, counted in counters["reconciles"]
    settle_s: float = 1.0               # confirm ended namespaces at most this often (adapts to snapshot cost)
    ended_retention: int = DEFAULT_ENDED_RETENTION
    docker: bool = True                 # names/images/labels from Docker (and podman), exec commands from Docker
    probe_options: object = None        # tracer.kernel.probes.ProbeOptions
    node: Optional[str] = None
    join_gap: float = 1.0
    refresh: bool = True                # pins and new user namespaces re-read within a tick (host/nsrefresh.py)


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
        self.refresh = None
        self._listeners = []
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = None
        self._refresh_thread = None
        self._progress_cb = None
        self._resolve = None
        self.timings = {}
        self._health = Health(self)
        self._maintenance = Maintenance(self, self._stop, self._wake, self._health)

    @property
    def maintenance(self) -> Maintenance:
        """The maintenance loop (its `ticks` say how often it woke; tests watch it)."""
        return self._maintenance

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

    def _apply_events(self, events: list) -> None:
        """A poll's events into the graph, APPLY_SLICE at a time: a poll that drains a backlog
        (tens of thousands of events after the machine did not schedule us for a while) would
        otherwise hold the graph lock for seconds, and /api/status, the stream's diffs and
        /api/graph wait for that lock.  Between slices the collector lets a waiting reader in."""
        apply_batch = self.graph.apply_batch
        if len(events) <= APPLY_SLICE:
            apply_batch(events)
            return
        for start in range(0, len(events), APPLY_SLICE):
            apply_batch(events[start:start + APPLY_SLICE])
            time.sleep(0)       # drops the GIL: a thread woken by the lock's release can take it

    def _on_version(self, version) -> None:
        if not self._wake.is_set():     # the maintenance thread sleeps until something changes
            self._wake.set()
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
        from .containers.cgroups import parse_cgroup
        from .containers.engines import open_catalogs
        from .containers.records import container_from_ref
        from .host.snapshot import take_snapshot
        cfg = self.config
        t0 = time.perf_counter()
        if cfg.docker:
            self._progress("connecting to the Docker engine (optional)")
            # Not connected: /api/status says so while it lasts (tracer/health.py), not forever.
            self.catalog = open_catalogs().start(wait=2.0)
            from .containers.exec_hints import DockerExecHints
            self.hints = DockerExecHints().start()
            resolve = self.catalog.resolve
        else:
            def resolve(pid, cgroup):
                ref = parse_cgroup(cgroup) if cgroup else None
                return container_from_ref(ref) if ref else None
        self._resolve = resolve

        self._progress("reading every process's namespaces from /proc")
        graph = NamespaceGraph(node=cfg.node or socket.gethostname(), ended_retention=cfg.ended_retention,
                               reader=LiveProcReader(resolve), join_gap=cfg.join_gap)
        if cfg.refresh:
            from .host.nsrefresh import MountTableWatch, TargetedRefresh
            # Watching from before the snapshot: a pin made in between is not missed.
            self.refresh = TargetedRefresh(lambda ns_type, inode: graph.live_namespace_id(ns_type, inode)
                                           is not None, watch=MountTableWatch())
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
        self.collector.subscribe(EventTagging(self._tagger, lambda: self.refresh))
        # One lock and one change notification per slice of a poll, not per event.
        self.collector.subscribe_batch(self._apply_events)
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
        self._maintenance.started()
        self._thread = threading.Thread(target=self._maintenance.run, name="nsgraph-maintenance", daemon=True)
        self._thread.start()
        if self.refresh is not None:
            # Its own thread: a full reconcile (seconds on a busy host) must not hold it up.
            self._refresh_thread = threading.Thread(target=self._refresh_loop, name="nsgraph-refresh", daemon=True)
            self._refresh_thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._refresh_thread is not None:
            self._refresh_thread.join(5)
        if self.collector is not None:
            self.collector.stop()
        if self.store is not None:
            self.store.close()
        if self.hints is not None:
            self.hints.close()
        if self.catalog is not None:
            self.catalog.close()
        if self.refresh is not None:
            self.refresh.close()
        if self.status.state != "error":
            self.status.state = "stopped"

    # -- inputs besides events -------------------------------------------------------------

    def _on_lost(self, n: int) -> None:
        self.graph.on_lost(n)
        self._wake.set()                # repair now, not at the next tick

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

    def _refresh_loop(self) -> None:
        """Targeted refreshes (host/nsrefresh.py), a round every min_interval at most."""
        failed, interval = False, self.refresh.min_interval
        while not self._stop.wait(interval):
            refresh = self.refresh
            if refresh is None:         # switched off (bench/bench_refresh.py)
                continue
            try:
                ops = refresh.ops()
                if ops:
                    self.graph.apply_ops(ops)
                failed = False
            except Exception:
                if not failed:
                    log.exception("targeted refresh failed")      # once per outage
                failed = True

    def tick(self) -> None:
        """One round of maintenance (the maintenance thread runs it: tracer/maintenance.py)."""
        self._maintenance.tick()

    def watch_zombies(self, wall: float) -> None:
        """Zombies as members: see zombie_watch.py (called by tick())."""
        self._maintenance.zombies.check(self.graph, self._resolve, wall)

    # -- numbers ------------------------------------------------------------------------------

    def stats(self) -> dict:
        out = {"status": self.status.to_json(), "timings": dict(self.timings)}
        if self.graph is not None:
            out["graph"] = self.graph.counters_snapshot()
        if self.collector is not None:
            out["collector"] = self.collector.stats()
        if self.store is not None:
            out["store"] = self.store.stats()
        if self.refresh is not None:
            out["refresh"] = self.refresh.stats()
        return out


def _cpu_seconds() -> float:
    """CPU time of this thread and of reaped children (the snapshot's forked readers)."""
    import resource
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.thread_time() + children.ru_utime + children.ru_stime


def _explain(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    from .kernel.probes import PrivilegeError, ProbeError
    if isinstance(exc, PrivilegeError):
        return text + " (nsgraph serve needs root to load the eBPF probes)"
    if isinstance(exc, ProbeError):
        return text
    return "%s: %s. Run `nsgraph doctor` to check this machine." % (type(exc).__name__, text)
