"""Server-Sent Events: one publisher, many browser tabs, bounded memory.

ONE shared ring of encoded SSE messages; each client holds a cursor into it, and
clients at the same cursor share one chunk of bytes.  Publishing is O(1) whatever
the number of clients; memory is bounded by the ring: a client that fell off it (a
stalled tab) gets `event: resync` and jumps to the head, never a private queue.

Messages:
  event: diff     id: <graph version>   data: graph.diff_since(previous)
  event: resync   data: {"version": V, "reason": ...}  -> GET /api/graph again (also the baseline)
  event: event    data: Event.to_json()  (every trace event while a tab is connected, in kernel order)
  event: status   data: /api/status
  event: demo     data: a demo run (GET /api/demos/runs/<id>)
  : heartbeat     every ~15 s, so a closed tab is noticed at the next write

Diffs are coalesced (one per `sse_min_interval_s` at most): 10 000 events/s cost
tens of diffs per second.  A change carries the entity's full current state, so an
overlapping diff is harmless; a client skips diffs not above its own version.
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
from typing import Callable, Optional

from flask import Blueprint, Response, current_app, request

from tracer.events.encode import EventEncoder

from .auth import error
from .contract import GraphReader, Service
from .ssewire import sse_message

log = logging.getLogger(__name__)

bp = Blueprint("stream", __name__)

STATUS_EVERY_S = 2.0
CHUNKS_KEPT = 16              # shared stream chunks (StreamHub._take): at most 16 x sse_chunk_bytes


class StreamHub:
    def __init__(self, service: Optional[Service], config, status_fn: Callable[[], dict]):
        self.service = service
        self.config = config
        self._status_fn = status_fn
        self._cond = threading.Condition()
        self._ring = collections.deque()       # (n, text)
        self._ring_bytes = 0                    # characters held in the ring
        self._next = 0                          # number of the next message
        self._ring_size = max(16, int(config.sse_ring_size))
        self._ring_max_bytes = max(1 << 16, int(config.sse_ring_bytes))
        self._chunk_bytes = max(4096, int(config.sse_chunk_bytes))
        # Clients that keep up wake together at one cursor: they share one encoded chunk.
        self._chunks = {}                       # first message -> (next cursor, bytes)
        self.max_streams = max(1, int(config.sse_max_streams))
        self.events = collections.deque(maxlen=max(1, int(config.events_ring_size)))  # Event objects
        self._encoder = EventEncoder()
        # Events the publisher has not encoded yet.  Bounded: when the tracer outruns the
        # publisher (a storm on a busy machine), the oldest are dropped and counted
        # (events_dropped) instead of growing without limit; graph diffs are unaffected.
        self._pending_limit = max(1000, int(config.sse_pending_events))
        self._pending_events = collections.deque()
        self.events_dropped = 0
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
        self.streams_refused = 0
        self.resyncs_sent = 0
        self.published = 0
        self.max_lag = 0                         # messages, worst seen since start
        self.events_unencodable = 0
        self.events_skipped = 0                  # a storm's oldest, beyond one ring (never sent)

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
                self._ring_bytes += len(text)
                self._next += 1
            # Bounded by count and by size (one diff of a big change can be megabytes).
            while len(self._ring) > self._ring_size or (self._ring_bytes > self._ring_max_bytes
                                                         and len(self._ring) > 1):
                self._ring_bytes -= len(self._ring.popleft()[1])
            self.published += len(texts)
            self._cond.notify_all()

    def on_event(self, event) -> None:
        """Collector callback: runs in the collector thread, so only queue."""
        pending = self._pending_events
        pending.append(event)
        if len(pending) > self._pending_limit:
            try:
                pending.popleft()
                self.events_dropped += 1
            except IndexError:
                pass
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
                # Until the graph is seen, look often: pages that connected while the tracer
                # started wait for the "graph is ready" resync (no change notification comes).
                self._wake.wait(timeout=1.0 if self.graph_version is not None else 0.1)
            first = False
            self._wake.clear()
            try:
                self.pump()
            except Exception:
                log.exception("SSE publisher step failed; continuing")
            # Coalescing: whatever arrives during this pause goes out in one diff.
            self._stop.wait(self.publish_interval())

    def publish_interval(self) -> float:
        """sse_min_interval_s, longer in proportion beyond sse_streams_at_min_interval streams (at most
        sse_max_interval_s): each step wakes every tab's thread (200 tabs x 30/s = 6 000 wake-ups/s)."""
        config = self.config
        base, calm = config.sse_min_interval_s, max(1, config.sse_streams_at_min_interval)
        if self.open_streams <= calm:
            return base
        return min(max(base, config.sse_max_interval_s), base * self.open_streams / calm)

    def pump(self) -> None:
        """One publishing step (the thread's body; tests and benches call it directly)."""
        self._attach()
        # No tab: a new stream gets its own status and catch-up (client_stream), so no JSON for the
        # ring, only the baseline moves.  Version read BEFORE open_streams: a diff may overlap, never gap.
        graph = self._graph()
        version = graph.version if graph is not None else None
        if not self.open_streams and version is not None and self.graph_version is not None:
            self.graph_version = version
            self._publish_events()
            return
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
        # JSON only for connected tabs (a stream starts at the head) and, for /api/events,
        # on request.  At most what is pending now (draining "until empty" never returned
        # under a storm); beyond one ring the oldest are skipped and counted, not encoded.
        texts = []
        pending = self._pending_events
        encode = self._encoder.encode if self.open_streams else None
        count = len(pending)
        skip = max(0, count - self._ring_size)
        for _ in range(skip):
            pending.popleft()
        self.events_skipped += skip
        for _ in range(count - skip):
            try:
                event = pending.popleft()
            except IndexError:
                break
            self.events.append(event)
            if encode is not None:
                try:
                    texts.append("event: event\ndata: %s\n\n" % encode(event))   # sse_message (JSON: no newline)
                except Exception:   # a bug in an Event: say so, and keep streaming the others
                    self._unencodable(event)
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
        return len(self._ring)          # len() of a deque is atomic: no lock needed

    def recent_events(self, since_seq: int = 0, limit: int = 500) -> list:
        out = [e for e in list(self.events) if e.seq > since_seq] if limit else []
        objects = []
        for event in out[-limit:]:
            try:
                objects.append(event.to_json())
            except Exception:
                self._unencodable(event)
        return objects

    def _unencodable(self, event) -> None:
        self.events_unencodable += 1
        log.exception("trace event %r could not be encoded for the stream", event)

    def try_open(self) -> bool:
        """Take a stream slot (False at the cap: the caller answers 503); release() frees it."""
        with self._cond:
            if self.open_streams >= self.max_streams:
                self.streams_refused += 1
                return False
            self.open_streams += 1
            self.streams_total += 1
            return True

    def release(self) -> None:
        with self._cond:
            self.open_streams -= 1

    def _take(self, cursor: int):
        """(lagged, chunk bytes, new cursor): at most sse_chunk_bytes of messages after `cursor`,
        lock held.  The cap keeps what one client holds small: a client far behind gets its
        backlog in pieces (or a resync), never one huge string.  The ring is walked from the
        nearer end (skipping from the oldest of 50 000 was a tenth of serve's time under abuse)."""
        head = self._next
        oldest = self._ring[0][0] if self._ring else head
        if cursor < oldest:
            return True, b"", head
        cached = self._chunks.get(cursor)
        if cached is not None:
            return False, cached[1], cached[0]
        start = cursor
        chunk, size = [], 0
        skip, count = cursor - oldest, head - cursor
        for n, text in (reversed(list(itertools.islice(reversed(self._ring), count))) if count <= skip
                        else itertools.islice(self._ring, skip, None)):
            chunk.append(text)
            size += len(text)
            cursor = n + 1
            if size >= self._chunk_bytes:
                break
        if not chunk:
            return False, b"", cursor
        data = "".join(chunk).encode("utf-8")
        if len(self._chunks) >= CHUNKS_KEPT:
            del self._chunks[next(iter(self._chunks))]       # the oldest made
        self._chunks[start] = (cursor, data)
        return False, data, cursor

    def client_stream(self, since_version: Optional[int]):
        """A generator of SSE text for one client (the caller holds a slot: try_open)."""
        with self._cond:
            cursor = self._next
        yield "retry: 2000\n\n"
        yield sse_message("status", self._status_fn())
        yield self._initial(since_version)
        heartbeat = self.config.sse_heartbeat_s
        while not self._stop.is_set():
            with self._cond:
                if cursor >= self._next:
                    self._cond.wait(timeout=heartbeat)
                lag = self._next - cursor
                if lag > self.max_lag:
                    self.max_lag = lag
                lagged, chunk, cursor = self._take(cursor)
            if lagged:
                self.resyncs_sent += 1
                yield sse_message("resync", {"version": self._version(),
                                             "reason": "this client fell behind the stream"})
            elif chunk:
                yield chunk
            else:
                yield ": heartbeat %d\n\n" % int(time.time())

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
    if not hub.try_open():
        response = error(503, "too many open event streams (%d, the --max-streams cap); close other "
                         "dashboard tabs or retry later" % hub.max_streams)
        response.headers["Retry-After"] = "10"
        return response
    since = _since_version()
    body = hub.client_stream(None if since is None else since)
    # No stream_with_context: a request context held for the life of a tab pins memory.
    response = Response(body, mimetype="text/event-stream")
    # The slot is freed when the server closes the response, even one never iterated.
    response.call_on_close(hub.release)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"
    return response
