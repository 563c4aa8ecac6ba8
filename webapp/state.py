"""WebState: what the blueprints share (config, the service, the SSE hub, the demo launcher).

The service is reached only through webapp.contract.Service; it may still be
starting (its graph is None until the first snapshot is loaded), or be None
when the app was made without one (the dashboard then answers "starting").
"""

from __future__ import annotations

import collections
import threading
from typing import Optional

from .config import WebConfig
from .contract import GraphReader, Service
from .demos import DemoManager
from .stream import StreamHub

STARTING = {"state": "starting", "progress": "the tracer has not started yet", "error": None,
            "warnings": [], "version": None, "counters": {}}


class WebState:
    def __init__(self, config: WebConfig, service: Optional[Service],
                 demos: Optional[DemoManager] = None):
        self.config = config
        self.service = service
        self.counters = collections.Counter()      # refused requests, by reason (auth.py)
        self._lock = threading.Lock()
        self._graph_cache = (None, None)           # (version, Graph JSON)
        self.hub = StreamHub(service, config, self.status)
        self.demos = demos or DemoManager(config)
        self.demos.set_graph_source(self.graph_json)
        self.demos.add_listener(lambda run: self.hub.publish("demo", run))

    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counters[key] += n

    def start(self) -> None:
        self.hub.start()

    def stop(self) -> None:
        self.hub.stop()
        self.demos.stop()

    def graph(self) -> Optional[GraphReader]:
        return self.service.graph if self.service is not None else None

    def graph_json(self) -> Optional[dict]:
        """graph.to_json(), computed once per graph version (the page, exports and demos share it)."""
        graph = self.graph()
        if graph is None:
            return None
        cached_version, cached = self._graph_cache
        if cached is not None and cached_version == graph.version:
            return cached
        data = graph.to_json()
        self._graph_cache = (data["version"], data)
        return data

    def status(self) -> dict:
        """/api/status: the service's state and the graph's counters, plus the web layer's own."""
        service = self.service
        if service is None:
            out = dict(STARTING)
        else:
            status = service.status
            graph = service.graph
            out = {"state": status.state, "progress": status.progress,
                   "error": str(status.error) if status.error else None,
                   "warnings": list(status.warnings),
                   "version": graph.version if graph is not None else None,
                   "counters": dict(graph.counters_snapshot()) if graph is not None else {}}
        out["counters"] = dict(out["counters"], demos_running=self.demos.stats()["running"],
                               sse_clients=self.hub.open_streams)
        out["read_only"] = self.config.read_only
        return out
