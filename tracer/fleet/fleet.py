"""The fleet as the dashboard knows it: every node's replica, last heartbeat and health,
and what is asked across nodes (the overview and search).

Keyed by node name; inside a node, namespaces keep the graph's own identity
(type, dev, inode, generation), so the fleet-wide key of a namespace is
(node, namespace id).  Written by the consumer thread, read by web threads.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Callable, Dict, List, Optional

from .health import assess
from .replica import NodeReplica

SEARCH_KINDS = ("join", "container", "process", "namespace")
MAX_RESULTS = 500


class NodeEntry:
    def __init__(self, name: str):
        self.name = name
        self.replica = NodeReplica(name)
        self.status: Optional[dict] = None
        self.received_at: Optional[float] = None     # server time of the last heartbeat
        self.heartbeats = 0
        self.bad_status = 0
        self._json_cache = (None, None, None)         # (graph, version, to_json())

    def graph_json(self) -> Optional[dict]:
        """The node graph's JSON, computed once per version."""
        graph, offset, _ = self.replica.current()
        if graph is None:
            return None
        version = graph.version
        cached_graph, cached_version, data = self._json_cache
        if cached_graph is graph and cached_version == version:
            return data
        data = graph.to_json()
        self._json_cache = (graph, version, data)
        return data


class Fleet:
    def __init__(self, offline_after: Optional[float] = None):
        self.offline_after = offline_after
        self._nodes: Dict[str, NodeEntry] = {}
        self._lock = threading.Lock()
        self._listeners: List[Callable[[str], None]] = []
        self.counters = {"bad_messages": 0, "status_messages": 0, "auth_errors": 0}
        self.connection = {"connected": False, "server": None, "error": None, "since": None}
        self.refused_clients = collections.deque(maxlen=50)    # monitor.AuthMonitor fills it

    # -- nodes ------------------------------------------------------------------------------

    def node(self, name: str, create: bool = False) -> Optional[NodeEntry]:
        with self._lock:
            entry = self._nodes.get(name)
            if entry is None and create:
                entry = self._nodes[name] = NodeEntry(name)
                created = True
            else:
                created = False
        if created:
            self._notify(name)
        return entry

    def names(self) -> List[str]:
        with self._lock:
            return sorted(self._nodes)

    def subscribe(self, callback: Callable[[str], None]) -> None:
        """callback(node name) when a node appears (consumer thread)."""
        self._listeners.append(callback)

    def _notify(self, name: str) -> None:
        for callback in list(self._listeners):
            try:
                callback(name)
            except Exception:
                pass

    def on_status(self, name: str, body: dict, received_at: float) -> None:
        entry = self.node(name, create=True)
        self.counters["status_messages"] += 1
        if entry.received_at is None or received_at >= entry.received_at:
            entry.status = body
            entry.received_at = received_at
        entry.heartbeats += 1

    # -- views ---------------------------------------------------------------------------------

    def health(self, name: str, now: Optional[float] = None) -> Optional[dict]:
        entry = self.node(name)
        if entry is None:
            return None
        return assess(now or time.time(), entry.status, entry.received_at, entry.replica.stats(),
                      self.offline_after)

    def node_summary(self, name: str, now: Optional[float] = None, recent_joins: int = 5) -> Optional[dict]:
        """One row of the node list / the overview."""
        entry = self.node(name)
        if entry is None:
            return None
        status = entry.status or {}
        out = {"node": name, "health": self.health(name, now), "heartbeat_at": entry.received_at,
               "agent": status.get("agent"), "replica": entry.replica.stats(),
               "namespaces_by_type": {}, "namespaces_alive": 0, "processes": 0, "containers": [],
               "recent_joins": [], "version": None}
        data = entry.graph_json()
        if data is not None:
            counters = data.get("counters") or {}
            out["namespaces_by_type"] = dict(counters.get("namespaces_by_type") or {})
            out["namespaces_alive"] = counters.get("namespaces_alive", 0)
            out["processes"] = counters.get("processes", 0)
            out["events"] = counters.get("events", 0)
            out["containers"] = sorted(c.get("name") or c.get("id", "")[:12] for c in data.get("containers", []))
            joins = sorted(data.get("joins", []), key=lambda j: j.get("start") or 0, reverse=True)
            out["recent_joins"] = [{"id": j["id"], "start": j.get("start"), "summary": j.get("summary"),
                                    "container": j.get("container")} for j in joins[:recent_joins]]
            out["version"] = data.get("version")
        return out

    def overview(self) -> dict:
        now = time.time()
        nodes = [self.node_summary(n, now) for n in self.names()]
        nodes = [n for n in nodes if n is not None]
        states = {}
        for n in nodes:
            states[n["health"]["state"]] = states.get(n["health"]["state"], 0) + 1
        return {"time": now, "nodes": nodes, "states": states, "connection": dict(self.connection),
                "counters": dict(self.counters), "refused_clients": list(self.refused_clients)}

    def search(self, text: str, since: Optional[float] = None, kinds=SEARCH_KINDS,
               nodes: Optional[List[str]] = None, limit: int = 100) -> dict:
        """Matches of `text` (case-insensitive substring) across every node's graph.

        join: container name or id, command, comm, tool, summary (started at or after `since`)
        container: name, id, image;  process: comm, cmdline, pid;  namespace: id, inode.
        """
        needle = (text or "").strip().lower()
        limit = max(1, min(int(limit), MAX_RESULTS))
        results: List[dict] = []
        truncated = False
        for name in (nodes or self.names()):
            entry = self.node(name)
            data = entry.graph_json() if entry is not None else None
            if data is None:
                continue
            for hit in _search_graph(name, data, needle, since, kinds):
                if len(results) >= limit:
                    truncated = True
                    break
                results.append(hit)
        results.sort(key=lambda h: h.get("time") or 0, reverse=True)
        return {"query": text, "since": since, "kinds": list(kinds), "results": results,
                "truncated": truncated}


def _match(needle: str, *values) -> bool:
    if not needle:
        return True
    return any(needle in str(v).lower() for v in values if v is not None)


def _search_graph(node: str, data: dict, needle: str, since: Optional[float], kinds) -> List[dict]:
    hits = []
    if "join" in kinds:
        for j in data.get("joins", []):
            if since is not None and (j.get("start") or 0) < since:
                continue
            if _match(needle, j.get("container"), j.get("container_id"), j.get("command"), j.get("comm"),
                      j.get("tool"), j.get("summary")):
                hits.append({"node": node, "kind": "join", "id": j["id"], "time": j.get("start"),
                             "summary": "%s (pid %s, %s)" % (j.get("summary"), j.get("pid"), j.get("tool")),
                             "container": j.get("container"), "command": j.get("command")})
    if "container" in kinds and needle:
        for c in data.get("containers", []):
            if _match(needle, c.get("name"), c.get("id"), c.get("image")):
                hits.append({"node": node, "kind": "container", "id": c.get("name") or c.get("id"),
                             "time": None, "summary": "container %s (%s, %s)"
                             % (c.get("name"), (c.get("id") or "")[:12], c.get("image"))})
    if "process" in kinds and needle:
        for p in data.get("processes", []):
            if _match(needle, p.get("comm"), p.get("cmdline"), p.get("pid")):
                hits.append({"node": node, "kind": "process", "id": p["pid"], "time": None,
                             "summary": "pid %s %s" % (p["pid"], p.get("cmdline") or p.get("comm"))})
    if "namespace" in kinds and needle:
        for ns in data.get("namespaces", []):
            if _match(needle, ns.get("id"), ns.get("inode")):
                hits.append({"node": node, "kind": "namespace", "id": ns["id"], "time": ns.get("created"),
                             "summary": "%s namespace %s%s" % (ns.get("type"), ns.get("inode"),
                                                               "" if ns.get("alive") else " (ended)")})
    return hits
