"""Server-Sent Events: one publisher, many browser tabs, bounded memory.

The hub keeps ONE shared ring of already-encoded SSE messages; each client only
holds a cursor into it.  Publishing is O(1) whatever the number of clients, a
message is JSON-encoded once, and memory is bounded by the ring size: a client
whose cursor fell off the ring (a slow or stalled tab) gets `event: resync` and
jumps to the head instead of growing a private queue.

Messages:
  event: diff     id: <graph version>   data: graph.diff_since(previous)
  event: resync   data: {"version": V, "reason": ...}  -> GET /api/graph again
                  (also once when the hub first sees the graph: its baseline)
  event: event    data: Event.to_json()  (every trace event, in kernel order)
  event: status   data: /api/status
  event: demo     data: a demo run (GET /api/demos/runs/<id>)
  : heartbeat     every ~15 s, so a closed tab is noticed at the next write

Diffs are coalesced (at most one per `sse_min_interval_s`) by the publisher
thread so that 10 000 events/s cost tens of diffs per second, not 10 000.  A
change carries the entity's full current state, so applying a diff that
overlaps what a client already has is harmless; a client skips diffs whose
version is not above its own.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
import itertools
from typing import Callable, Optional

from flask import Blueprint, Response, current_app, request

from .contract import GraphReader, Service

log = logging.getLogger(__name__)

bp = Blueprint("stream", __name__)

STATUS_EVERY_S = 2.0


def sse_message(kind: str, data, msg_id=None) -> str:
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"), default=str)
    out = []
    if msg_id is not None:
        out.append("id: %s\n" % msg_id)
    out.append("event: %s\n" % kind)
    # JSON never contains raw newlines, but a plain string might.
    for line in text.split("\n"):
        out.append("data: %s\n" % line)
    out.append("\n")
    return "".join(out)


class StreamHub:
    def __init__(self, service: Optional[Service], config, status_fn: Callable[[], dict]):
        self.service = service
        self.config = config
        self._status_fn = status_fn
        self._cond = threading.Condition()
        self._ring = collections.deque()       # (n, text)
        self._next = 0                          # number of the next message
        self._ring_size = max(16, int(config.sse_ring_size))
        self.events = collections.deque(maxlen=max(1, int(config.events_ring_size)))
        self._pending_events = collections.deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._collector_attached = None
        self._subscribed = False
        self.graph_version: Optional[int] = None
        self._last_status = None
        self._last_status_at = 0.0
        self.open_streams = 0
        self.streams_total = 0
        self.resyncs_sent = 0
        self.published = 0
        self.max_lag = 0                         # messages, worst seen since start
        self.events_unencodable = 0

    # -- publishing ----------------------------------------------------------

    def publish(self, kind: str, data, msg_id=None) -> None:
        text = sse_message(kind, data, msg_id)
        self._append([text])

    def _append(self, texts) -> None:
        if not texts:
            return
        with self._cond:
            for text in texts:
                self._ring.append((self._next, text))
                self._next += 1
            overflow = len(self._ring) - self._ring_size
            for _ in range(max(0, overflow)):
                self._ring.popleft()
            self.published += len(texts)
            self._cond.notify_all()

    def on_event(self, event) -> None:
        """Collector callback: runs in the collector thread, so only queue."""
        self._pending_events.append(event)
        if not self._wake.is_set():  # Event.set() takes a lock: not 10 000 times a second
            self._wake.set()

    def on_version(self, _version=None) -> None:
        """Service callback: the graph changed."""
        if not self._wake.is_set():
            self._wake.set()

    # -- publisher thread --------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="nsgraph-sse", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def _run(self) -> None:
        first = True
        while not self._stop.is_set():
            if not first:
                # Until the graph is seen, look often: pages that connected while the
                # tracer started wait for the "graph is ready" resync, and a quiet
                # machine sends no change notification to wake us sooner.
                self._wake.wait(timeout=1.0 if self.graph_version is not None else 0.1)
            first = False
            self._wake.clear()
            try:
                self.pump()
            except Exception:
                log.exception("SSE publisher step failed; continuing")
            # Coalescing: whatever arrives during this pause goes out in one diff.
            self._stop.wait(self.config.sse_min_interval_s)

    def pump(self) -> None:
        """One publishing step (the thread's body; tests and benches call it directly)."""
        self._attach()
        self._publish_status()
        self._publish_events()
        self._publish_diff()

    def _graph(self) -> Optional[GraphReader]:
        return self.service.graph if self.service is not None else None

    def _attach(self) -> None:
        service = self.service
        if service is None:
            return
        if not self._subscribed:
            service.subscribe(self.on_version)
            self._subscribed = True
        # The collector exists only once the service has started it.
        collector = service.collector
        if collector is not None and collector is not self._collector_attached:
            collector.subscribe(self.on_event)
            self._collector_attached = collector

    def _publish_status(self) -> None:
        # On every change of state, and every STATUS_EVERY_S for the counters.
        now = time.monotonic()
        status = self._status_fn()
        key = (status.get("state"), status.get("progress"), status.get("error"))
        if key != self._last_status or now - self._last_status_at >= STATUS_EVERY_S:
            self._last_status = key
            self._last_status_at = now
            self.publish("status", status)

    def _publish_events(self) -> None:
        texts = []
        pending = self._pending_events
        while pending:
            try:
                event = pending.popleft()
            except IndexError:
                break
            try:
                obj = event.to_json()
            except Exception:   # a bug in an Event: say so, and keep streaming the others
                self.events_unencodable += 1
                log.exception("trace event %r could not be encoded for the stream", event)
                continue
            self.events.append(obj)
            texts.append(sse_message("event", obj))
        self._append(texts)

    def _publish_diff(self) -> None:
        graph = self._graph()
        if graph is None:
            return
        version = graph.version
        if self.graph_version is None:
            # The first sight of the graph is the hub's baseline.  Changes made before it
            # (the tracer may apply thousands of events between readiness and this pump)
            # are in no diff: clients get them from GET /api/graph, as this resync asks.
            # Pages that loaded while the tracer was starting got 503 for /api/graph.
            self.graph_version = version
            self.publish("resync", {"version": version, "reason": "the graph is ready"})
            return
        if version == self.graph_version:
            return
        diff = graph.diff_since(self.graph_version)
        if diff is None:
            self.publish("resync", {"version": version, "reason": "graph history too short"})
            self.graph_version = version
            return
        # The page's counters ride along with the diff (a GraphDiff plus "counters").
        message = dict(diff, counters=graph.counters_snapshot())
        self.publish("diff", message, msg_id=diff["version"])
        self.graph_version = diff["version"]

    # -- clients -------------------------------------------------------------------

    @property
    def backlog(self) -> int:
        """Messages held in the shared ring (at most sse_ring_size, whatever the clients do)."""
        with self._cond:
            return len(self._ring)

    def recent_events(self, since_seq: int = 0, limit: int = 500) -> list:
        out = [e for e in list(self.events) if e.get("seq", 0) > since_seq]
        return out[-limit:] if limit else []

    def client_stream(self, since_version: Optional[int]):
        """A generator of SSE text for one client; its `finally` frees the slot."""
        with self._cond:
            self.open_streams += 1
            self.streams_total += 1
            cursor = self._next
        try:
            yield "retry: 2000\n\n"
            yield sse_message("status", self._status_fn())
            yield self._initial(since_version)
            heartbeat = self.config.sse_heartbeat_s
            while not self._stop.is_set():
                with self._cond:
                    if cursor >= self._next:
                        self._cond.wait(timeout=heartbeat)
                    head = self._next
                    oldest = self._ring[0][0] if self._ring else head
                    if cursor < oldest:
                        lagged = True
                        chunk = []
                    else:
                        lagged = False
                        skip = cursor - oldest
                        chunk = [t for n, t in itertools.islice(self._ring, skip, None)]
                    lag = head - cursor
                    if lag > self.max_lag:
                        self.max_lag = lag
                    cursor = head
                if lagged:
                    self.resyncs_sent += 1
                    yield sse_message("resync", {"version": self._version(),
                                                 "reason": "this client fell behind the stream"})
                elif chunk:
                    yield "".join(chunk)
                else:
                    yield ": heartbeat %d\n\n" % int(time.time())
        finally:
            with self._cond:
                self.open_streams -= 1

    def _version(self) -> Optional[int]:
        graph = self._graph()
        return graph.version if graph is not None else None

    def _initial(self, since_version: Optional[int]) -> str:
        graph = self._graph()
        if graph is None:
            return sse_message("resync", {"version": None, "reason": "graph not ready yet"})
        if since_version is None:
            # A new page fetches /api/graph itself after opening the stream.
            return ": connected at graph version %s\n\n" % graph.version
        version = graph.version
        if since_version < 0:
            self.resyncs_sent += 1
            return sse_message("resync", {"version": version, "reason": "unreadable Last-Event-ID"})
        if since_version == version:
            return ": up to date at version %d\n\n" % version
        diff = None
        if since_version < version:
            diff = graph.diff_since(since_version)
        if diff is None:
            self.resyncs_sent += 1
            return sse_message("resync", {"version": version, "reason": "version %d is too old" % since_version})
        return sse_message("diff", diff, msg_id=diff["version"])


def _since_version() -> Optional[int]:
    raw = request.headers.get("Last-Event-ID") or request.args.get("since")
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        return -1  # garbage: treat as "too old", which yields a resync
    return value if value >= 0 else -1


@bp.route("/stream")
def stream():
    hub: StreamHub = current_app.extensions["nsgraph"].hub
    since = _since_version()
    body = hub.client_stream(None if since is None else since)
    # No stream_with_context: the generator needs no request context, and holding
    # one for the life of a tab would pin it in memory.
    response = Response(body, mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"
    return response
