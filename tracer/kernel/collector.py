"""The poll loop: probes -> decoder -> subscribers, in one background thread.

Subscribers are called in the collector thread, in the order the kernel put the
events in the ring buffer, and must be quick (hand work off if it is slow).  A
subscriber that raises is counted and reported once; it does not stop the loop.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
import time
import traceback
from typing import Callable, List, Optional

from ..events.decode import Decoder
from ..events.event import Event
from ..events.kinds import EventKind
from .probes import POLL_MS, ProbeOptions, Probes

log = logging.getLogger(__name__)

LOST_CHECK_S = 0.25
# The poll loop's wait once the ring has been empty for a while (Probes.poll's idle_ms): the
# probes wake it with their next record, so this bounds only how late stop() and the loss
# counters (a loss makes no record) are seen on an idle machine.
IDLE_POLL_MS = 1000
# Batch subscribers get a poll's events in pieces of about this many.  A poll drains the
# whole ring (8 MiB: ~80 000 events after the machine did not schedule us for a while);
# decoding it all before the graph sees any of it held every one of those Events at
# once, a peak Python's allocator keeps for good (its arenas are freed only when empty).
DELIVER_EVENTS = 4096


class Collector:
    def __init__(self, options: Optional[ProbeOptions] = None, node: Optional[str] = None,
                 on_progress: Optional[Callable[[str], None]] = None):
        self.options = options or ProbeOptions()
        self.decoder = Decoder(node=node)
        self._on_progress = on_progress or (lambda message: None)
        self._subscribers: List[Callable[[Event], None]] = []
        self._lost_subscribers: List[Callable[[int], None]] = []
        self._batch_subscribers: List[Callable[[list], None]] = []
        self._batch: list = []
        self._probes: Optional[Probes] = None
        self._thread: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self._lost_seen = 0
        self.events = 0
        self.subscriber_errors = 0
        self.started_at: Optional[float] = None
        self.error: Optional[BaseException] = None
        self._sync_cond = threading.Condition()
        self._sync_tids: set = set()
        self._markers = 0           # sync markers delivered (with everything before them)
        self._markers_read = 0      # read in the current poll, not delivered yet
        self._next_lost_check = 0.0

    # -- wiring ------------------------------------------------------------

    def subscribe(self, callback: Callable[[Event], None]) -> None:
        self._subscribers.append(callback)

    def subscribe_batch(self, callback: Callable[[list], None]) -> None:
        """callback(events) with everything a poll read, in order: once per poll, or in
        pieces of about DELIVER_EVENTS when the poll drains a backlog.

        For consumers whose per-call cost (a lock, a notification) dominates at
        high event rates; the list is empty-free and must not be kept.
        """
        self._batch_subscribers.append(callback)

    def subscribe_lost(self, callback: Callable[[int], None]) -> None:
        """callback(n) when the kernel side reports n more events it could not deliver."""
        self._lost_subscribers.append(callback)

    # -- life cycle --------------------------------------------------------

    def load(self) -> None:
        """Compile and attach the probes (about a second; raises ProbeError)."""
        self._on_progress("resolving kernel struct offsets from BTF")
        from .layout import resolve_layout
        layout = resolve_layout()
        self._on_progress("compiling and attaching eBPF probes")
        self._probes = Probes(on_records=self._on_records, options=self.options, layout=layout)
        self._probes.load()
        self.started_at = time.time()
        self._on_progress("probes attached")

    def start(self) -> None:
        """load() if needed, then poll in a daemon thread."""
        if self._probes is None:
            self.load()
        self._thread = threading.Thread(target=self._run, name="nsgraph-collector", daemon=True)
        self._thread.start()

    def run_forever(self, should_stop: Callable[[], bool] = lambda: False) -> None:
        """Poll in the calling thread until stop() or should_stop()."""
        if self._probes is None:
            self.load()
        while not self._stop.is_set() and not should_stop():
            self.poll_once()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.poll_once(idle_ms=IDLE_POLL_MS)
        except BaseException as exc:  # surfaced through .error and stats()
            if self._stop.is_set():
                return      # stop() closed the buffer under a poll that outlived its join timeout
            self.error = exc
            log.exception("collector thread died")

    def poll_once(self, timeout_ms: int = POLL_MS, idle_ms: int = 0) -> None:
        assert self._probes is not None
        self._probes.poll(timeout_ms, idle_ms)
        if self._batch:
            self._deliver_batch()
        # The loss counters are a map read per CPU (system calls through BCC): at most
        # every LOST_CHECK_S, and before a sync() returns, not on each of ~50 polls a second.
        now = time.monotonic()
        if self._markers_read or now >= self._next_lost_check:
            self._next_lost_check = now + LOST_CHECK_S
            self._check_lost()
        if self._markers_read:
            self._markers_delivered()

    def _deliver_batch(self) -> None:
        batch, self._batch = self._batch, []
        for callback in self._batch_subscribers:
            try:
                callback(batch)
            except Exception:
                self._subscriber_failed()

    def drain(self, quiet_ms: int = 100, limit_s: float = 5.0) -> None:
        """Poll until the buffer has been empty for quiet_ms (tests, shutdown)."""
        deadline = time.monotonic() + limit_s
        last = -1
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            self.poll_once(10)
            if self.events != last:
                last = self.events
                quiet_since = time.monotonic()
            elif (time.monotonic() - quiet_since) * 1000 >= quiet_ms:
                return

    def sync(self, timeout: float = 30.0) -> bool:
        """Return once every event the kernel recorded before this call has been delivered
        to every subscriber, batch subscribers (the graph) included (True), or False after
        `timeout` seconds.  Call it from another thread than the
        poll loop's (start() runs the loop in its own).

        The ring buffer is one queue in reservation order, so when a marker recorded
        now comes out, everything recorded before it has come out too.  The marker is
        unshare(0) by the calling thread: traced like any unshare, changing nothing,
        and not delivered to subscribers.  A marker lost in a full buffer is made again.
        """
        unshare = _libc().unshare
        with self._sync_cond:
            self._sync_tids.add(threading.get_native_id())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._sync_cond:
                before = self._markers
            if unshare(0) != 0:
                return False
            with self._sync_cond:
                if self._sync_cond.wait_for(lambda: self._markers > before,
                                            timeout=max(0.0, min(2.0, deadline - time.monotonic()))):
                    return True
        return False

    def _is_marker(self, event: Event) -> bool:
        if event.kind != EventKind.UNSHARE or event.raw_flags != 0 or event.tid not in self._sync_tids \
                or event.pid != os.getpid():
            return False
        # Counted once the events read before it have reached the batch subscribers too
        # (poll_once delivers the batch after the whole poll): see _markers_delivered.
        self._markers_read += 1
        return True

    def _markers_delivered(self) -> None:
        with self._sync_cond:
            self._markers += self._markers_read
            self._markers_read = 0
            self._sync_cond.notify_all()

    def _check_lost(self) -> None:
        lost = self._probes.lost() if self._probes else 0
        if lost > self._lost_seen:
            delta = lost - self._lost_seen
            self._lost_seen = lost
            for callback in self._lost_subscribers:
                try:
                    callback(delta)
                except Exception:
                    self._subscriber_failed()

    def _on_records(self, records: list) -> None:
        events = self.decoder.decode_many(records)
        if not events:
            return
        if self._sync_tids:     # a sync() is waiting: its marker events are not traced events
            events = [event for event in events if not self._is_marker(event)]
            if not events:
                return
        self.events += len(events)
        if self._batch_subscribers:
            self._batch.extend(events)
        for callback in self._subscribers:
            for event in events:
                try:
                    callback(event)
                except Exception:
                    self._subscriber_failed()
        # Per-event subscribers first, as at the end of a poll (the container tagger sets
        # fields the graph reads).  A sync() marker read here is counted only after the
        # poll (poll_once), when everything before it has been delivered.
        if len(self._batch) >= DELIVER_EVENTS:
            self._deliver_batch()

    def _subscriber_failed(self) -> None:
        self.subscriber_errors += 1
        if self.subscriber_errors == 1:
            traceback.print_exc()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)
        if self._probes is not None:
            self._probes.close()

    # -- numbers -----------------------------------------------------------

    def stats(self) -> dict:
        counters = self._probes.counters() if self._probes else {}
        lost = (counters.get("ringbuf_full", 0) + counters.get("pending_full", 0)
                + counters.get("perf_lost", 0))
        return {
            "events": self.events,
            "lost": lost,
            "lost_detail": counters,
            "rejected": self.decoder.rejected,
            "rejected_detail": dict(self.decoder.errors),
            "subscriber_errors": self.subscriber_errors,
            "buffer": "ringbuf" if (self._probes and self._probes.use_ringbuf) else "perf",
            "running": self.running,
            "error": str(self.error) if self.error else None,
        }

    @property
    def probes(self) -> Optional[Probes]:
        return self._probes

    @property
    def running(self) -> bool:
        """The poll loop runs in its own thread (start())."""
        return self._thread is not None and self._thread.is_alive()


_LIBC = None


def _libc():
    global _LIBC
    if _LIBC is None:
        _LIBC = ctypes.CDLL(None, use_errno=True)
    return _LIBC
