"""What `nsgraph serve --fleet` runs instead of the tracer: the fleet consumer and model.

Composition root of the central side: Fleet (per-node replicas, health, overview,
search) fed by FleetConsumer (NATS thread); node_service(NAME) gives the web layer a
single-host-shaped service for one node (nodeview.NodeService).  Nothing here needs
root: the dashboard host traces nothing itself (run an agent there too, to include it).
"""

from __future__ import annotations

import time
from typing import Callable, Dict, Optional

from .consumer import FleetConsumer
from .fleet import Fleet
from .history import NodeHistory
from .natsconn import Credentials
from .nodeview import NodeService, ServiceState


class FleetService:
    def __init__(self, creds: Credentials, servers: list, *, dashboard: str = "dashboard",
                 offline_after: Optional[float] = None, monitor_creds: Optional[Credentials] = None):
        self.creds = creds
        self.servers = servers
        self.fleet = Fleet(offline_after=offline_after)
        self.consumer = FleetConsumer(creds, servers, self.fleet, dashboard=dashboard, monitor_creds=monitor_creds)
        self._status = ServiceState(progress="not started")
        self._nodes: Dict[str, NodeService] = {}
        self.started_at: Optional[float] = None

    # The Service protocol, for the parts of the web layer that look at it.
    graph = None
    store = None
    collector = None

    @property
    def status(self) -> ServiceState:
        conn = self.fleet.connection
        st = self._status
        if st.state == "running":
            st.error = None if conn.get("connected") else conn.get("error")
            st.progress = ("reading %d nodes from %s" % (len(self.fleet.names()), conn.get("server"))
                           if conn.get("connected") else "connecting to NATS (%s)" % ",".join(self.servers))
            st.warnings = [conn["error"]] if conn.get("connected") and conn.get("error") else []
        return st

    def subscribe(self, callback: Callable[[int], None]) -> None:
        pass    # the fleet page polls; each node's own page subscribes to its NodeService

    def start(self, progress: Optional[Callable[[str], None]] = None) -> bool:
        self.started_at = time.time()
        if progress:
            progress("fleet mode: consuming nsgraph.*.events/checkpoints/status from %s" % ",".join(self.servers))
        self.consumer.start()
        self._status.state = "running"
        return True

    def stop(self) -> None:
        self.consumer.stop()
        self._status.state = "stopped"

    def node_service(self, node: str) -> NodeService:
        service = self._nodes.get(node)
        if service is None:
            service = self._nodes[node] = NodeService(self.fleet, node, NodeHistory(self.consumer, node))
        return service

    def stats(self) -> dict:
        return {"status": self.status.__dict__, "consumer": self.consumer.stats(),
                "nodes": {n: self.fleet.node(n).replica.stats() for n in self.fleet.names()},
                "rebuilt_at": dict(self.consumer.rebuilt_at), "started_at": self.started_at}
