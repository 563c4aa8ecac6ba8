"""One node of the fleet, shaped like the single-host service, so the dashboard's existing
views (graph, matrix, timeline, details, history) serve it unchanged.

NodeService implements webapp/contract.py's Service: `graph` is a GraphReader over the
node's replica, `store` a HistoryReader over the stream, `collector` an EventSource of
the node's replayed events, `status` its health as a service state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, List, Optional


class ReplicaGraphView:
    """GraphReader over a NodeReplica whose graph is replaced at every reset.

    Versions seen through the view only grow (the replica offsets each new graph), and
    a diff from before the current graph is refused (None), which makes clients resync.
    """

    def __init__(self, replica):
        self.replica = replica

    def _current(self):
        graph, offset, base = self.replica.current()
        if graph is None:
            raise LookupError("node %s has no graph yet" % self.replica.node)
        return graph, offset, base

    @property
    def version(self) -> int:
        graph, offset, _ = self._current()
        return graph.version + offset

    def to_json(self, include_housekeeping: bool = False):
        graph, offset, _ = self._current()
        data = graph.to_json(include_housekeeping)
        data["version"] += offset
        return data

    def diff_since(self, version: int):
        graph, offset, base = self._current()
        if version < base:
            return None
        diff = graph.diff_since(version - offset)
        if diff is not None:
            diff["version"] += offset
            diff["since"] += offset
        return diff

    def namespace(self, ident: str):
        return self._current()[0].namespace(ident)

    def process(self, pid: int):
        return self._current()[0].process(pid)

    def container(self, name_or_id: str):
        return self._current()[0].container(name_or_id)

    def join(self, ident):
        return self._current()[0].join(ident)

    def to_dot(self) -> str:
        return self._current()[0].to_dot()

    def counters_snapshot(self):
        return self._current()[0].counters_snapshot()


class NodeEvents:
    """EventSource: the node's tracer events as the replica replays them."""

    def __init__(self, replica):
        self.replica = replica

    def subscribe(self, callback: Callable[[object], None]) -> None:
        self.replica.subscribe_events(callback)

    def stats(self) -> dict:
        stats = self.replica.stats()
        return {"events": stats["events"], "lost": stats["missed"], "rejected": stats["bad_messages"]}


@dataclass
class ServiceState:
    """webapp/contract.py's ServiceStatusView, for a node's replica and for the fleet."""
    state: str = "starting"
    progress: str = ""
    error: Optional[str] = None
    warnings: List[str] = field(default_factory=list)


class NodeService:
    def __init__(self, fleet, node: str, history=None):
        self.fleet = fleet
        self.node = node
        entry = fleet.node(node, create=True)
        self.replica = entry.replica
        self._view = ReplicaGraphView(self.replica)
        self.collector = NodeEvents(self.replica)
        self.store = history

    @property
    def graph(self) -> Optional[ReplicaGraphView]:
        return self._view if self.replica.graph is not None else None

    @property
    def status(self) -> ServiceState:
        health = self.fleet.health(self.node) or {}
        if self.replica.graph is None:
            return ServiceState("starting", "waiting for node %s's first checkpoint from the stream" % self.node)
        warnings = []
        if health.get("state") not in ("live", None):
            warnings.append("node %s is %s: %s" % (self.node, health.get("state"), health.get("reason")))
        return ServiceState("running", "replica of node %s" % self.node, None, warnings)

    def subscribe(self, callback: Callable[[int], None]) -> None:
        self.replica.subscribe(callback)

    def health(self) -> List[dict]:
        """The node's degraded state as /api/status lists it (the agent's own checks arrive
        in its heartbeats and show in the fleet's node list)."""
        health = self.fleet.health(self.node) or {}
        if health.get("state") in ("live", None):
            return []
        return [{"check": "node", "message": "node %s is %s: %s; check its agent (journalctl -u "
                 "nsgraph-agent) and the NATS server" % (self.node, health.get("state"),
                                                         health.get("reason"))}]

    def stats(self) -> dict:
        return {"node": self.node, "replica": self.replica.stats(), "health": self.fleet.health(self.node)}
