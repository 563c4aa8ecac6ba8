"""Health: what is degraded in a running service, each with a message a person can act on.

`/api/status` (warnings, health, degraded), `/metrics` (nsgraph_degraded{check=...})
and the page's banner all come from `Health.check()`.  A check reports only what is
wrong NOW (or in the last minute, for counters), so a recovered service is healthy
again without a restart:

  docker        the Docker engine is unreachable (names, images, demos unavailable)
  reconcile     the periodic /proc reconcile has failed and not succeeded since
  descriptors   more than 80 % of RLIMIT_NOFILE is in use (EMFILE is near)
  lost_events   the kernel dropped events in the last minute (ring buffer full)
  history       a history write failed in the last minute, or inputs were dropped
  collector     the collector thread stopped (no more events will arrive)
"""

from __future__ import annotations

import collections
import os
import resource
import threading
import time
from typing import List, Optional

WINDOW_S = 60.0
FD_PRESSURE = 0.8


def open_descriptors() -> Optional[int]:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return None


class Health:
    """Checks over a service's parts.  Every part may be None (not started, disabled)."""

    def __init__(self, service):
        self.service = service
        self._lock = threading.Lock()
        self._samples = collections.deque()      # (monotonic time, lost, history dropped)
        self.reconcile_error: Optional[str] = None   # set by the service's maintenance
        self.reconcile_failed_at: Optional[float] = None

    # -- what the service reports -----------------------------------------------------------

    def maintenance_failed(self, exc: BaseException) -> None:
        self.reconcile_error = "%s: %s" % (type(exc).__name__, exc)
        self.reconcile_failed_at = time.time()

    def maintenance_ok(self) -> None:
        self.reconcile_error = None

    # -- checks -----------------------------------------------------------------------------

    def check(self) -> List[dict]:
        """[{"check": name, "message": text}] for every degraded part, empty when healthy."""
        problems = []
        for name, probe in (("collector", self._collector), ("docker", self._docker),
                            ("reconcile", self._reconcile), ("descriptors", self._descriptors),
                            ("lost_events", self._lost), ("history", self._history)):
            try:
                message = probe()
            except Exception as exc:        # a check must never take the status page down
                message = "the %s check failed: %s" % (name, exc)
            if message:
                problems.append({"check": name, "message": message})
        return problems

    def _collector(self) -> Optional[str]:
        collector = self.service.collector
        if collector is None:
            return None
        error = collector.stats().get("error")
        if error:
            return ("the event collector stopped (%s): no new events reach the graph; restart nsgraph serve "
                    "and report this with its log" % error)
        return None

    def _docker(self) -> Optional[str]:
        catalog = self.service.catalog
        if catalog is None or catalog.connected:
            return None
        return ("Docker is unreachable (%s): container names, images and the demos are unavailable until it "
                "is back; nsgraph reconnects by itself (start it: systemctl start docker)" % catalog.status)

    def _reconcile(self) -> Optional[str]:
        if not self.reconcile_error:
            return None
        return ("the /proc reconcile has been failing since %s (%s): the graph may miss or keep processes; "
                "see the serve log" % (time.strftime("%H:%M:%S", time.localtime(self.reconcile_failed_at)),
                                       self.reconcile_error))

    def _descriptors(self) -> Optional[str]:
        used = open_descriptors()
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if used is None or soft == resource.RLIM_INFINITY or used < FD_PRESSURE * soft:
            return None
        return ("%d of %d file descriptors in use: new connections and /proc reads will fail soon; raise the "
                "limit (LimitNOFILE= in the systemd unit, ulimit -n) or lower --max-connections" % (used, soft))

    def _window(self):
        """(lost, history dropped) during the last WINDOW_S seconds."""
        graph, store = self.service.graph, self.service.store
        lost = int(graph.counters_snapshot().get("lost", 0)) if graph is not None else 0
        dropped = int(store.stats().get("dropped", 0)) if store is not None else 0
        now = time.monotonic()
        with self._lock:
            samples = self._samples
            if not samples or now - samples[-1][0] >= 1.0:
                samples.append((now, lost, dropped))
            while len(samples) > 1 and now - samples[1][0] >= WINDOW_S:
                samples.popleft()
            _, lost0, dropped0 = samples[0]
        return lost - lost0, dropped - dropped0

    def _lost(self) -> Optional[str]:
        lost, _ = self._window()
        if lost <= 0:
            return None
        return ("%d events lost in the last minute (the kernel's ring buffer was full): the graph is repaired "
                "from /proc, but short-lived processes may be missing; a quieter host or a bigger buffer "
                "helps" % lost)

    def _history(self) -> Optional[str]:
        store = self.service.store
        if store is None:
            return None
        stats = store.stats()
        if stats.get("error") and stats.get("error_at") and time.time() - stats["error_at"] < WINDOW_S:
            return stats["error"]
        _, dropped = self._window()
        if dropped > 0:
            return ("the history writer fell behind and dropped %d inputs in the last minute: the time scrubber "
                    "is inexact until the next checkpoint (a slow or busy disk)" % dropped)
        return None
