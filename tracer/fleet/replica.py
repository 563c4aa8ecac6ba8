"""One node's graph on the dashboard, rebuilt from the node's stream.

A node's stream (its events and checkpoints, in publish order) is applied here:

  checkpoint (run R, seq S)   -> the graph becomes NamespaceGraph.from_state(state), at S
                                 (skipped when the replica is already exactly there)
  events (run R, a..b)        -> records after the replica's position are replayed
                                 (tracer.history.replay.replay_records: the same replay
                                 as recordings and the SQLite history)

A batch that starts past position+1 is a hole: the replica stops applying (its graph
would be wrong) and says so (`synced` False, `missed` counted) until the next
checkpoint of the run repairs it.  Events of a run whose checkpoint it has not seen
(an agent restart whose first checkpoint fell out of retention) wait the same way.
Duplicates (records at or before the position) are skipped and counted.

Versions: every reset makes a new graph whose versions restart where the checkpoint
was.  `current()` gives readers (graph, offset, base) so that the versions they see
only ever grow, and a diff from before the reset is refused (the web layer resyncs).
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Callable, List, Optional

from ..graph.model import NamespaceGraph
from ..history.replay import replay_input
from .wire import Checkpoint, EventsBatch

LATENCY_SAMPLES = 4096


class NodeReplica:
    def __init__(self, node: str):
        self.node = node
        self.graph: Optional[NamespaceGraph] = None
        self.run: Optional[str] = None
        self.seq = 0                        # the last journal record applied
        self.synced = False
        self.gap_since: Optional[float] = None
        self.checkpoint_ts: Optional[float] = None
        self.checkpoint_interval: Optional[float] = None
        self.last_applied_at: Optional[float] = None
        self.last_record_ts: Optional[float] = None
        self.stream_seq = 0                 # the stream position of the last message applied
        self._offset = 0
        self._base = 0
        self._lock = threading.Lock()
        self._listeners: List[Callable[[int], None]] = []
        self._event_listeners: List[Callable[[object], None]] = []
        self.latencies = collections.deque(maxlen=LATENCY_SAMPLES)   # record journaled -> applied, s
        self.counters = {"records": 0, "events": 0, "batches": 0, "checkpoints": 0, "resets": 0,
                         "checkpoints_matched": 0, "missed": 0, "skipped": 0, "duplicates": 0,
                         "unknown_run": 0, "bad_messages": 0, "skipped_ahead": 0}

    # -- readers -------------------------------------------------------------------------

    def current(self):
        """(graph, version offset, base version) as one consistent triple."""
        with self._lock:
            return self.graph, self._offset, self._base

    def subscribe(self, callback: Callable[[int], None]) -> None:
        """callback(view version) after every applied batch or reset (consumer thread)."""
        self._listeners.append(callback)

    def subscribe_events(self, callback: Callable[[object], None]) -> None:
        """callback(Event) for every tracer event replayed (consumer thread; keep it quick)."""
        self._event_listeners.append(callback)

    # -- the stream ------------------------------------------------------------------------

    def on_checkpoint(self, cp: Checkpoint, stream_seq: int = 0, skip: bool = False) -> bool:
        """Apply a checkpoint; True when it replaced the graph.  skip: the reader jumped to it
        on purpose, over records that are in the stream (counted as skipped, not missed)."""
        self.counters["checkpoints"] += 1
        self.checkpoint_ts = cp.ts
        self.checkpoint_interval = cp.interval
        if self.graph is not None and self.synced and cp.run == self.run and self.seq >= cp.seq:
            if self.seq == cp.seq:
                self.counters["checkpoints_matched"] += 1
            self.stream_seq = max(self.stream_seq, stream_seq)
            return False
        if self.graph is not None and self.synced and cp.run == self.run:
            # Records it never saw: dropped by the agent, or passed over to catch up.
            self.counters["skipped_ahead" if skip else "missed"] += cp.seq - self.seq
        graph = NamespaceGraph.from_state(cp.state)
        with self._lock:
            old = self.graph
            if old is not None:
                self.counters["resets"] += 1
                view = old.version + self._offset
                self._offset = max(0, view + 1 - graph.version)
            self._base = graph.version + self._offset
            self.graph = graph
            self.run = cp.run
            self.seq = cp.seq
            self.synced = True
            self.gap_since = None
            self.stream_seq = stream_seq
        self.last_applied_at = time.time()
        self._notify()
        return True

    def check(self, batch: EventsBatch) -> str:
        """What on_events would do: "apply", "duplicate", "gap" or "wait" (no usable checkpoint)."""
        if self.graph is None or batch.run != self.run or not self.synced:
            return "wait"
        if batch.last <= self.seq:
            return "duplicate"
        if batch.first > self.seq + 1:
            return "gap"
        return "apply"

    def on_events(self, batch: EventsBatch, stream_seq: int = 0, until: Optional[float] = None) -> int:
        """Replay a batch; the number of records applied.  `until` (history) stops at a time."""
        verdict = self.check(batch)
        n = len(batch.records)
        if verdict == "wait":
            self.counters["unknown_run" if self.graph is None or batch.run != self.run else "skipped"] += n
            return 0
        if verdict == "duplicate":
            self.counters["duplicates"] += 1
            return 0
        if verdict == "gap":
            self.counters["missed"] += batch.first - self.seq - 1
            self.counters["skipped"] += n
            self.synced = False
            self.gap_since = time.time()
            self._notify()
            return 0
        start = max(0, self.seq + 1 - batch.first)      # records at or before the position: applied
        end = len(batch.ts)
        if until is not None:                            # history: the graph at a time
            end = start
            while end < len(batch.ts) and batch.ts[end] <= until:
                end += 1
        if end <= start:
            return 0
        kinds = batch.kinds[start:end] if batch.inputs else None
        payloads = batch.payloads[start:end] if (start or end < len(batch.ts)) else batch.payloads
        _replay(self.graph, kinds, payloads)
        now = time.time()
        count = end - start
        self.seq = batch.first + end - 1
        self.stream_seq = max(self.stream_seq, stream_seq)
        self.last_record_ts = batch.ts[end - 1]
        self.last_applied_at = now
        self.latencies.append(now - self.last_record_ts)
        events = payloads if kinds is None else [p for k, p in zip(kinds, payloads) if k == "event"]
        self.counters["records"] += count
        self.counters["events"] += len(events)
        self.counters["batches"] += 1
        for callback in list(self._event_listeners):
            for event in events:
                callback(event)
        self._notify()
        return count

    def bad_message(self) -> None:
        """An undecodable message on this node's subjects: counted; the replica waits for a checkpoint."""
        self.counters["bad_messages"] += 1
        if self.synced:
            self.synced = False
            self.gap_since = time.time()

    def _notify(self) -> None:
        graph, offset, _ = self.current()
        version = (graph.version + offset) if graph is not None else 0
        for callback in list(self._listeners):
            try:
                callback(version)
            except Exception:
                pass

    # -- numbers -------------------------------------------------------------------------------

    def stats(self) -> dict:
        out = dict(self.counters)
        lat = sorted(self.latencies)
        out.update({"run": self.run, "seq": self.seq, "synced": self.synced, "gap_since": self.gap_since,
                    "checkpoint_ts": self.checkpoint_ts, "last_applied_at": self.last_applied_at,
                    "last_record_ts": self.last_record_ts, "stream_seq": self.stream_seq,
                    "latency_p50_s": _pct(lat, 0.50), "latency_p99_s": _pct(lat, 0.99)})
        return out


def _replay(graph, kinds, payloads) -> None:
    """Journal records into the replica's graph, as tracer.history.replay.replay_records
    would, but runs of tracer events go in through one apply_batch (one lock hold, one
    listener call) instead of one apply each.  kinds None: every record is an event.

    An event followed by nested /proc reads (made while the node applied it) goes alone,
    after them: the reads are stashed first, so that the graph finds them when it asks."""
    if kinds is None:
        graph.apply_batch(payloads)
        return
    n = len(kinds)
    i = 0
    while i < n:
        j = i
        while j < n and kinds[j] == "event" and not (j + 1 < n and _nested(kinds[j + 1], payloads[j + 1])):
            j += 1
        if j > i:
            graph.apply_batch(payloads[i:j])
            i = j
            continue
        if _nested(kinds[i], payloads[i]):         # a read whose input an earlier message held
            graph.reader.stash(payloads[i])
            i += 1
            continue
        k = i + 1
        while k < n and _nested(kinds[k], payloads[k]):
            graph.reader.stash(payloads[k])
            k += 1
        replay_input(graph, kinds[i], payloads[i])
        i = k
    leftover = graph.reader.drain()                 # reads no replayed input asked for
    if leftover:
        graph.apply_ops(leftover)


def _nested(kind: str, payload) -> bool:
    return kind == "op" and bool(payload.get("nested"))


def _pct(sorted_values: list, q: float) -> Optional[float]:
    if not sorted_values:
        return None
    return round(sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))], 4)
