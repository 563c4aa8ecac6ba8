"""`nsgraph agent`: the same tracer, snapshot and local graph as `serve`, published to NATS.

    NsgraphService (probes, snapshot, graph, repairs) --journal--> JournalTap
        --Batcher (every batch_s; checkpoints)--> Outbox --Publisher (NATS thread)--> JetStream

The service is exactly what `nsgraph serve` runs, minus the web layer and, by
default, the local SQLite history (the fleet's history is the stream).  The journal
is attached together with the start checkpoint, under the graph lock, so the stream
of a run is: checkpoint(S), records S+1, S+2, ... with periodic checkpoints between.
"""

from __future__ import annotations

import logging
import os
import platform
import resource
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, List, Optional

from .natsconn import Credentials
from .outbox import Batcher, JournalTap, Outbox
from .publisher import Publisher
from .wire import encode_checkpoint

log = logging.getLogger(__name__)


@dataclass
class AgentConfig:
    node: str
    servers: List[str]
    creds: Credentials
    batch_s: float = 0.05
    heartbeat_s: float = 2.0
    checkpoint_every_s: float = 60.0
    checkpoint_every_records: int = 200_000
    buffer_bytes: int = 64 << 20
    db: Optional[str] = "none"            # local SQLite history besides the stream: off by default
    docker: bool = True
    reconcile_s: float = 30.0
    probe_options: object = None
    extra: dict = field(default_factory=dict)


class FleetAgent:
    def __init__(self, config: AgentConfig, service_factory: Optional[Callable] = None):
        self.config = config
        self.run = uuid.uuid4().hex[:12]
        self.started = time.time()
        self.outbox = Outbox(config.buffer_bytes)
        self.tap = JournalTap()
        self.service = None
        self.batcher: Optional[Batcher] = None
        self._service_factory = service_factory
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.publisher = Publisher(config.creds, config.servers, config.node, self.run, self.outbox,
                                   self.status, heartbeat_s=config.heartbeat_s,
                                   on_drop=self._on_unpublishable)

    def _make_service(self):
        if self._service_factory is not None:
            return self._service_factory()
        from ..service import NsgraphService, ServiceConfig
        cfg = self.config
        return NsgraphService(ServiceConfig(db=cfg.db, docker=cfg.docker, node=cfg.node,
                                            reconcile_s=cfg.reconcile_s, probe_options=cfg.probe_options))

    def start(self, progress: Optional[Callable[[str], None]] = None) -> bool:
        """Connect (in the background), start tracing, attach; False when tracing cannot run."""
        self.publisher.start()          # heartbeats say "starting" while the probes compile
        self.service = self._make_service()
        if not self.service.start(progress):
            return False
        graph = self.service.graph
        self.batcher = Batcher(graph, self.tap, self.outbox, self.config.node, self.run,
                               checkpoint_every_s=self.config.checkpoint_every_s,
                               checkpoint_every_records=self.config.checkpoint_every_records)
        with graph.lock:                # the start checkpoint and the first journaled input meet exactly
            state = graph.export_state()
            graph.add_journal(self.tap)
        self.outbox.put_checkpoint(encode_checkpoint(self.config.node, self.run, state, "start",
                                                     self.config.checkpoint_every_s))
        self.batcher.mark_checkpointed()
        self._thread = threading.Thread(target=self._batch_loop, name="nsgraph-fleet-batcher", daemon=True)
        self._thread.start()
        return True

    def _batch_loop(self) -> None:
        while not self._stop.wait(self.config.batch_s):
            try:
                self.batcher.flush(coalesce=True)
            except Exception:
                log.exception("fleet batching failed")

    def _on_unpublishable(self, why: str) -> None:
        log.warning("fleet: dropped %s; a repair checkpoint follows", why)
        if self.batcher is not None:
            self.batcher.request_checkpoint("repair")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self.batcher is not None:
            try:
                self.batcher.flush()        # the last records
            except Exception:
                log.exception("fleet: last batch failed")
        self.publisher.stop()
        if self.service is not None:
            self.service.stop()

    # -- the heartbeat ---------------------------------------------------------------

    def status(self) -> dict:
        """The body of a status message (the publisher adds its own counters)."""
        service = self.service
        out = {"state": "starting", "interval": self.config.heartbeat_s,
               "agent": {"version": _version(), "pid": os.getpid(), "host": platform.node(),
                         "kernel": platform.release(), "started": self.started}}
        if service is not None:
            st = service.status
            out["state"] = st.state
            out["progress"] = st.progress
            out["error"] = st.error
            out["warnings"] = list(st.warnings)
            if service.graph is not None:
                counters = service.graph.counters_snapshot()
                out["graph"] = {k: counters.get(k) for k in ("events", "lost", "repaired", "rejected",
                                                            "processes", "namespaces_alive", "joins")}
            if service.collector is not None:
                stats = service.collector.stats()
                out["kernel"] = {"events": stats.get("events"), "lost": stats.get("lost"),
                                 "rejected": stats.get("rejected")}
        out["outbox"] = self.outbox.stats()
        out["journal_dropped"] = self.tap.dropped
        if self.batcher is not None:
            out["checkpoints"] = dict(self.batcher.counters)
            out["seq"] = self.batcher.last_seq
        usage = resource.getrusage(resource.RUSAGE_SELF)
        out["process"] = {"cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
                          "max_rss_bytes": usage.ru_maxrss * 1024, "rss_bytes": _rss()}
        return out


def _rss() -> Optional[int]:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("nsgraph")
    except Exception:
        return "unknown"
