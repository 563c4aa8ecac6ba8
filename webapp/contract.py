"""What the web layer needs from the core: the whole interface, and nothing else.

The blueprints talk to the tracer service only through these Protocols, so a
reader of webapp/ sees exactly which parts of the core it depends on, and the
core can change behind them.  `tracer.service.NsgraphService` implements
`Service`, `tracer.graph.NamespaceGraph` implements `GraphReader`,
`tracer.history.store.HistoryStore` implements `HistoryReader`;
tests/unit/test_contract.py checks that they do (signatures included), and
the web tests run against those real classes, never a stand-in.

The shapes of the JSON they return are in tracer.graph.schema.
"""

from __future__ import annotations

from typing import Callable, List, Optional, Protocol, runtime_checkable

from tracer.graph.schema import (ContainerDetail, Counters, GraphDiff, GraphJSON, JoinJSON,
                                 NamespaceDetail, ProcessJSON)


@runtime_checkable
class GraphReader(Protocol):
    """The live model, read-only.  Every method takes the model's lock itself."""

    @property
    def version(self) -> int: ...

    def to_json(self, include_housekeeping: bool = False) -> GraphJSON:
        """The graph; its joins include the container engines' own namespace switches
        (JoinJSON.housekeeping) only when asked."""

    def diff_since(self, version: int) -> Optional[GraphDiff]:
        """Changes after `version`; None when the change log no longer reaches back (resync)."""

    def namespace(self, ident: str) -> Optional[NamespaceDetail]:
        """By id "type:dev:inode:gen", or "type:inode" for the live one."""

    def process(self, pid: int) -> Optional[ProcessJSON]: ...

    def container(self, name_or_id: str) -> Optional[ContainerDetail]: ...

    def join(self, ident: int) -> Optional[JoinJSON]: ...

    def to_dot(self) -> str: ...

    def counters_snapshot(self) -> Counters: ...


@runtime_checkable
class HistoryReader(Protocol):
    def graph_json_at(self, at: float) -> Optional[GraphJSON]:
        """The graph as it was at time `at` (None before the first record)."""

    def stats(self) -> dict: ...


@runtime_checkable
class EventSource(Protocol):
    def subscribe(self, callback: Callable[[object], None]) -> None:
        """callback(event) for every tracer event (collector thread; keep it quick)."""

    def stats(self) -> dict: ...


@runtime_checkable
class ServiceStatusView(Protocol):
    state: str                  # starting | running | error | stopped
    progress: str
    error: Optional[str]
    warnings: List[str]


@runtime_checkable
class Service(Protocol):
    @property
    def status(self) -> ServiceStatusView: ...

    @property
    def graph(self) -> Optional[GraphReader]: ...

    @property
    def store(self) -> Optional[HistoryReader]: ...

    @property
    def collector(self) -> Optional[EventSource]: ...

    def subscribe(self, callback: Callable[[int], None]) -> None:
        """callback(version) after every graph change (any thread; keep it quick)."""

    def health(self) -> List[dict]:
        """Degraded parts now: [{"check": name, "message": what to do}], empty when healthy."""
