"""The agent's bounded buffers between the graph and NATS, and the drop policy.

  graph --journal--> JournalTap (records, under the graph lock) --Batcher--> Outbox (encoded
  messages, bounded by bytes) --> the publisher thread, which removes a message once
  JetStream has acknowledged it.

While NATS is unreachable the outbox fills.  When a new events message would pass the
byte limit, the outbox starts *dropping*: that message and every later record are
counted and discarded (the oldest data, already queued, is kept and still sent), until
the queue drains below the low-water mark; then the Batcher takes a *repair*
checkpoint of the graph under its lock, which covers everything dropped, and normal
batching resumes after it.  Readers see a hole in the sequence numbers followed by a
checkpoint: exactly what they need to repair.  Memory stays within the limit plus one
checkpoint.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Callable, List, Optional

from .wire import OutMessage, encode_checkpoint, encode_events

HOLD_QUEUED = 2         # unacknowledged messages (one in flight, one waiting) that make the batcher coalesce


class JournalTap:
    """The graph journal callback: records in order, bounded by count.

    Called under the graph lock by whoever changes the graph, so it only appends.
    `take()` must be called under the graph lock too (Batcher does), so that an
    event and the /proc reads its application made are always taken together.
    """

    def __init__(self, max_records: int = 500_000):
        self.max_records = max_records
        self._items: list = []
        self.dropped = 0
        self.overflowed = False

    def __call__(self, kind, payload, seq) -> None:
        if len(self._items) >= self.max_records:
            self.dropped += 1
            self.overflowed = True
            return
        self._items.append((seq, time.time(), kind, payload))

    def take(self) -> list:
        items, self._items = self._items, []
        return items

    def __len__(self) -> int:
        return len(self._items)


class Outbox:
    def __init__(self, limit_bytes: int = 64 << 20, low_water: float = 0.5,
                 on_put: Optional[Callable[[], None]] = None):
        self.limit = int(limit_bytes)
        self.low_water = int(limit_bytes * low_water)
        self._lock = threading.Lock()
        self._queue: collections.deque = collections.deque()
        self.bytes = 0
        self.dropping = False
        self.on_put = on_put
        self.counters = {"dropped_records": 0, "dropped_messages": 0, "overflows": 0,
                         "queued_messages": 0, "sent_messages": 0, "sent_records": 0, "sent_bytes": 0}

    def put(self, msg: OutMessage) -> bool:
        """Queue an events message; False (and counted) when it had to be dropped."""
        with self._lock:
            if not self.dropping and self.bytes + msg.size > self.limit:
                self.dropping = True
                self.counters["overflows"] += 1
            if self.dropping:
                self.counters["dropped_records"] += msg.records
                self.counters["dropped_messages"] += 1
                return False
            self._append(msg)
        self._notify()
        return True

    def put_checkpoint(self, msg: OutMessage) -> None:
        """A checkpoint is always queued: it is what repairs any drop before it."""
        with self._lock:
            self._append(msg)
            self.dropping = False
        self._notify()

    def drop(self, records: int) -> None:
        """Records discarded before encoding (dropping, or a journal overflow)."""
        if records:
            with self._lock:
                self.counters["dropped_records"] += records

    def _append(self, msg) -> None:
        self._queue.append((msg, time.monotonic()))
        self.bytes += msg.size
        self.counters["queued_messages"] += 1

    def _notify(self) -> None:
        if self.on_put is not None:
            self.on_put()

    def can_repair(self) -> bool:
        """Dropping, and drained enough to take the repair checkpoint."""
        with self._lock:
            return self.dropping and self.bytes <= self.low_water

    def start_dropping(self) -> None:
        with self._lock:
            if not self.dropping:
                self.dropping = True
                self.counters["overflows"] += 1

    def peek(self) -> Optional[OutMessage]:
        with self._lock:
            return self._queue[0][0] if self._queue else None

    def pop(self, msg: OutMessage) -> None:
        """Remove msg (the head) after JetStream acknowledged it."""
        with self._lock:
            if self._queue and self._queue[0][0] is msg:
                self._queue.popleft()
                self.bytes -= msg.size
                self.counters["sent_messages"] += 1
                self.counters["sent_records"] += msg.records
                self.counters["sent_bytes"] += len(msg.body)

    def stats(self) -> dict:
        with self._lock:
            out = dict(self.counters)
            out.update({"buffered_messages": len(self._queue), "buffered_bytes": self.bytes,
                        "limit_bytes": self.limit, "dropping": self.dropping,
                        "oldest_age_s": round(time.monotonic() - self._queue[0][1], 3) if self._queue else 0.0})
        return out

    def __len__(self) -> int:
        with self._lock:
            return len(self._queue)


class Batcher:
    """Turns the journal into messages: every `batch_s`, and a checkpoint when due.

    flush() is called from one thread (the agent's batching thread).  Records are
    taken and a checkpoint's state exported under the graph lock in one go, so a
    checkpoint at sequence S always follows every record up to S in the outbox.
    """

    def __init__(self, graph, tap: JournalTap, outbox: Outbox, node: str, run: str, *,
                 checkpoint_every_s: float = 60.0, checkpoint_every_records: int = 200_000,
                 max_records_per_message: int = 2000, max_message_bytes: int = 512 << 10):
        self.graph = graph
        self.tap = tap
        self.outbox = outbox
        self.node = node
        self.run = run
        self.checkpoint_every_s = checkpoint_every_s
        self.checkpoint_every_records = checkpoint_every_records
        self.max_records = max_records_per_message
        self.max_bytes = max_message_bytes
        self.max_reads = 2000               # /proc reads of new processes per flush, at most
        self._last_checkpoint = 0.0
        self._records_since_checkpoint = 0
        self._want_checkpoint: Optional[str] = "start"    # unless the caller queued one (mark_checkpointed)
        self.counters = {"checkpoints": 0, "checkpoint_bytes": 0, "checkpoint_ms": 0.0, "batches": 0}
        self.last_seq = 0                   # the newest journal record taken (heartbeats carry it)

    def request_checkpoint(self, reason: str = "requested") -> None:
        self._want_checkpoint = reason

    def mark_checkpointed(self) -> None:
        """A checkpoint was queued by the caller (the agent's start checkpoint)."""
        self._want_checkpoint = None
        self._last_checkpoint = time.monotonic()
        self._records_since_checkpoint = 0
        self.counters["checkpoints"] += 1

    def flush(self, coalesce: bool = False) -> None:
        """Journal records -> messages (and the checkpoint when due).

        coalesce (the agent's batching loop): while the publisher is behind (HOLD_QUEUED
        messages not yet acknowledged), less than a message's worth of records stays in
        the tap, so that the next message carries them all.  Messages then grow instead
        of queueing up, and the publisher's round trips (one message in flight) no longer
        bound the rate of records; a publisher that keeps up sees no change."""
        state = reason = None
        with self.graph.lock:
            if coalesce and self._publisher_behind():
                return
            records = self.tap.take()
            if records:
                self.last_seq = records[-1][0]
            if self.tap.overflowed:
                self.tap.overflowed = False
                self.outbox.start_dropping()
            if self.outbox.dropping:
                if self.outbox.can_repair():
                    reason = "repair"
                else:
                    self.outbox.drop(len(records))
                    return
            elif self._want_checkpoint is not None:
                reason = self._want_checkpoint
            elif self._checkpoint_due(len(records)):
                reason = "periodic"
            if reason is not None:
                t0 = time.perf_counter()
                state = self.graph.export_state()
                self.counters["checkpoint_ms"] = round((time.perf_counter() - t0) * 1000, 2)
        if reason == "repair":
            self.outbox.drop(len(records))      # the repair checkpoint supersedes them
            records = []
        self._read_new_processes(records)
        for chunk in self._chunks(records):
            for msg in self._encode(chunk):
                self.outbox.put(msg)
                self.counters["batches"] += 1
        self._records_since_checkpoint += len(records)
        if state is not None:
            msg = encode_checkpoint(self.node, self.run, state, reason, self.checkpoint_every_s)
            self.outbox.put_checkpoint(msg)
            self._want_checkpoint = None
            self._last_checkpoint = time.monotonic()
            self._records_since_checkpoint = 0
            self.counters["checkpoints"] += 1
            self.counters["checkpoint_bytes"] = len(msg.body)

    def _publisher_behind(self) -> bool:
        pending = len(self.tap)
        return (len(self.outbox) >= HOLD_QUEUED and pending < self.max_records and not self.tap.overflowed
                and not self.outbox.dropping and self._want_checkpoint is None
                and not self._checkpoint_due(pending))

    def _read_new_processes(self, records: list) -> None:
        """Ask the graph about processes that were just created or exec'd.

        The graph reads a process's command line and cgroup (hence its container) from
        /proc lazily, when someone looks at it; on `serve` the page does.  Nobody looks
        at an agent's graph, so the agent does, right after the event: the read is
        journaled like any other and reaches the dashboard with the next batch.
        """
        pids = []
        for _, _, kind, payload in records:
            if kind != "event":
                continue
            if payload.kind == "exec":
                pids.append(payload.pid)
            elif payload.kind == "clone" and payload.child_pid and payload.ret >= 0:
                pids.append(payload.child_pid)
        for pid in dict.fromkeys(pids[:self.max_reads]):
            self.graph.process(pid)

    def _checkpoint_due(self, incoming: int) -> bool:
        return (time.monotonic() - self._last_checkpoint >= self.checkpoint_every_s
                or self._records_since_checkpoint + incoming >= self.checkpoint_every_records)

    def _chunks(self, records: list) -> List[list]:
        """Runs of at most max_records, never cut between an input and the /proc reads its
        application made (journaled right after it, marked "nested"): a replay needs them together."""
        chunks, start, n = [], 0, len(records)
        while start < n:
            end = min(start + self.max_records, n)
            while end < n and _nested(records[end]):
                end += 1
            chunks.append(records[start:end])
            start = end
        return chunks

    def _encode(self, chunk: list) -> List[OutMessage]:
        """One message, or halves of it while it is over max_message_bytes."""
        msg = encode_events(self.node, self.run, chunk)
        if len(msg.body) <= self.max_bytes or len(chunk) == 1:
            return [msg]
        half = len(chunk) // 2
        while half < len(chunk) and _nested(chunk[half]):
            half += 1
        if half >= len(chunk):
            return [msg]
        return self._encode(chunk[:half]) + self._encode(chunk[half:])


def _nested(record) -> bool:
    _, _, kind, payload = record
    return kind == "op" and isinstance(payload, dict) and bool(payload.get("nested"))
