"""The model's side of joins.JoinPort: what join sessions may ask of the graph.

JoinTracker runs under the graph lock (NamespaceGraph.apply feeds it); these
answers read the namespace and process tables, and a process's command line or
container through the graph's lazy, journaled /proc read (so a replay asks the
recording and gets the same answer).
"""

from __future__ import annotations

from typing import List, Optional, Tuple

from . import views


class ModelJoinPort:
    def __init__(self, graph):
        self.graph = graph

    def live_namespace_id(self, ns_type: str, inode: int) -> Optional[str]:
        ns = self.graph.namespaces.live(ns_type, inode)
        return ns.id if ns is not None else None

    def namespace_containers(self, ns_id: str) -> Tuple[Optional[str], List[str]]:
        g = self.graph
        ns = g.namespaces.by_id.get(ns_id)
        return views.namespace_owner(g, ns, views.host_ids(g)) if ns is not None else (None, [])

    def container_name(self, container_id: Optional[str]) -> Optional[str]:
        return views.container_name(self.graph, container_id)

    def command_of(self, pid: int) -> Optional[str]:
        """pid's command line from /proc, read now if the model has not since its exec."""
        proc = self._read(pid)
        return " ".join(proc.cmdline) if proc is not None and proc.cmdline else None

    def process_container(self, pid: int) -> Optional[str]:
        """The id of the container pid runs in (its cgroup), read now if needed."""
        proc = self._read(pid)
        return proc.container if proc is not None else None

    def _read(self, pid: int):
        g = self.graph
        with g.lock:
            proc = g.processes.get(pid)
            if proc is not None:
                g.ensure_read(proc)
            return proc
