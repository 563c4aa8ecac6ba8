"""History: every graph input and change in SQLite, and the graph as it was at time T.

The graph journals its inputs (NamespaceGraph.add_journal); those, plus checkpoints
of the whole model (export_state), rebuild the graph at any time T: the newest
checkpoint at or before T, then the inputs after it (replay_records).  The change
log (version, op, entity, id) is stored too, for audits and `diff`.

Writes never block the collector: the journal callback puts the record on a bounded
queue; one writer thread serialises and inserts in batches (WAL mode).  A full queue
drops the record and counts it; the next checkpoint (forced) makes history exact again.

The layout (schema 2: runs, checkpoints, input blocks, keyed by run) and the
one-process lock are in schema.py; retention by age and size in retention.py.
Checkpoints come every `checkpoint_every_inputs` graph inputs, exactly: the journal
callback exports the graph's state as it crosses the mark (before that input applies)
and the writer stores it, so a writer that lags under load does not stretch the gap;
and every `checkpoint_every_s`.  A rebuild loads one checkpoint and replays at most that
many inputs, decoding only those (bench/bench_history.py).  One rebuild runs at a time
(each builds a whole graph: concurrent ones would only share the CPU and add memory).
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
import uuid
import zlib
from typing import Optional

from ..events.encode import EventEncoder
from ..graph.model import NamespaceGraph
from ..graph.schema import GraphJSON
from . import blocks, rebuild, retention, schema
from .diff import diff_graphs

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 400 * 1024 * 1024     # with the WAL, a busy host stays under ~500 MB
DEFAULT_MAX_AGE_S = 7 * 86400
# The writer's queue, in inputs.  Steady traffic keeps it short (the writer takes a batch every
# flush_s: ~1 000 inputs at 5 000 events/s); it fills only in a storm, and whatever it held at
# its fullest stays as serve's footprint (the freed inputs' memory is reused by later objects
# scattered over it, not given back): ~600 bytes an input, so 50 000 left serve ~30 MB bigger
# after the first storm a host's other work made.  Past it inputs are dropped and counted, and
# the forced checkpoint makes the history exact again.
QUEUE_INPUTS = 10_000
CAPTURED_MAX = 4            # checkpoints exported but not stored yet (each is a whole graph)


def default_path() -> str:
    if os.geteuid() == 0:
        return "/var/lib/nsgraph/history.db"
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return os.path.join(base, "nsgraph", "history.db")


class StoreError(Exception):
    """The history database cannot be used; the message says how to fix it."""


class HistoryStore:
    def __init__(self, path: Optional[str] = None, *, retention_s: Optional[float] = DEFAULT_MAX_AGE_S,
                 max_bytes: Optional[int] = DEFAULT_MAX_BYTES, checkpoint_every_s: float = 300.0,
                 checkpoint_every_inputs: int = 2_500, queue_size: int = QUEUE_INPUTS,
                 batch: int = 2000, flush_s: float = 0.2):
        self.path = path or default_path()
        self._encoder = EventEncoder()      # used by the writer thread only
        self.retention_s = retention_s
        self.max_bytes = max_bytes
        self.run_id = uuid.uuid4().hex
        self.notice = None              # one line when an old database was moved aside
        self._lock_fd = None
        self.checkpoint_every_s = checkpoint_every_s
        self.checkpoint_every_inputs = checkpoint_every_inputs
        self.batch = batch
        self.flush_s = flush_s
        # Not a queue.Queue (a lock and a notify per input): append is atomic, and the writer
        # is woken only when it sleeps idle.
        self._inputs, self._queue_size, self._input_ready = collections.deque(), queue_size, threading.Event()
        self._queued = self._handled = 0    # inputs queued, and taken by the writer (flush())
        self._graph = None
        self._thread = None
        self._stop = threading.Event()
        self._writer_lock = threading.RLock()     # the writer's connection
        # The readers' own connection and lock: in WAL mode they need not wait for the writer's
        # batches, checkpoints or pruning (an in-memory database has one connection: one lock).
        self._reader_lock = self._writer_lock if self.path == ":memory:" else threading.Lock()
        self._db = None
        self._reader = None
        self._last_change_version = 0
        self._last_checkpoint = 0.0
        self._inputs_since_checkpoint = 0
        self._checkpoint_seq = 0            # the graph's input_seq at the last checkpoint
        self._captured = collections.deque()  # (ts, state) exported by the journal, to store
        self._force_checkpoint = False
        self._rebuild_lock = threading.Lock()
        self.last_rebuild: Optional[rebuild.Rebuild] = None     # the cost of the last graph_at
        self.counters = {"written": 0, "dropped": 0, "checkpoints": 0, "changes": 0, "pruned": 0,
                         "pruned_bytes": 0, "write_errors": 0}
        self.error = None
        self.error_at = None            # time.time() of the last failed write

    # -- life cycle ---------------------------------------------------------------

    def open(self) -> "HistoryStore":
        if self.path == ":memory:":
            self._db = schema.connect(self.path)
            self._db.executescript(schema.DDL)
            return self
        directory = os.path.dirname(os.path.abspath(self.path))
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            self._lock_fd = schema.lock(self.path)
            self._db, self.notice = schema.open_database(self.path)
        except schema.SchemaError as exc:
            raise StoreError(str(exc)) from exc
        except (OSError, sqlite3.Error) as exc:
            self._release_lock()
            raise StoreError("cannot open the history database %s (%s). Choose another path with --db, "
                             "or make %s writable." % (self.path, exc, directory)) from exc
        if self.notice:
            log.warning("%s", self.notice)
        return self

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def attach(self, graph: NamespaceGraph) -> None:
        """Record graph's inputs from now on; writes a first checkpoint."""
        self._graph = graph
        self._last_change_version = graph.version
        with self._writer_lock:
            self._db.execute("INSERT INTO runs VALUES (?, ?, NULL, ?, ?)",
                             (self.run_id, time.time(), graph.node, os.getpid()))
            self._db.commit()
        graph.add_journal(self._on_input)
        self._write_checkpoint()

    def start(self) -> "HistoryStore":
        if self._db is None:
            self.open()
        self._thread = threading.Thread(target=self._run, name="nsgraph-store", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._input_ready.set()                 # the writer may sleep in its idle wait
        if self._thread is not None:
            self._thread.join(timeout)
        if self._graph is not None:
            self._graph.remove_journal(self._on_input)
        with self._writer_lock:              # the writer may still be in a batch if the join timed out
            if self._db is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("UPDATE runs SET ended = ? WHERE run_id = ?", (time.time(), self.run_id))
                    self._db.commit()
                with contextlib.suppress(sqlite3.Error):
                    self._db.close()
                self._db = None
            with self._reader_lock:
                if self._reader is not None:
                    self._reader.close()
                    self._reader = None
        self._release_lock()

    # -- writing -------------------------------------------------------------------

    def _on_input(self, kind, payload, seq) -> None:
        # Under the graph's lock, before input `seq` applies (ops and events only: a nested
        # read is journaled in the middle of another input).
        if seq - self._checkpoint_seq > self.checkpoint_every_inputs and kind != "op":
            self._capture(seq)
        inputs = self._inputs
        if len(inputs) >= self._queue_size:
            self.counters["dropped"] += 1
            self._force_checkpoint = True
            return
        inputs.append((seq, time.time(), kind, payload))
        self._queued += 1
        if not self._input_ready.is_set():      # set() takes a lock: only when the writer waits
            self._input_ready.set()

    def _capture(self, seq: int) -> None:
        """The graph as it is before input `seq`, for the writer to store as a checkpoint."""
        ts = time.time()            # before the input's own time (taken after this returns)
        state = self._graph.export_state()
        state["input_seq"] = seq - 1
        if len(self._captured) >= CAPTURED_MAX:   # the writer is behind: keep the first and the newest
            self._captured.pop()
        self._captured.append((ts, state))
        self._checkpoint_seq = seq - 1

    def _run(self) -> None:
        inputs, ready = self._inputs, self._input_ready
        while not self._stop.is_set() or inputs:
            ready.clear()               # before looking: an input appended after this sets it again
            if not inputs:
                ready.wait(timeout=5.0)                 # idle: an input or close() wakes it
            if 0 < len(inputs) < self.batch:            # one block and commit per flush_s, not per poll
                self._stop.wait(self.flush_s)
            rows = [inputs.popleft() for _ in range(min(len(inputs), self.batch))]
            try:
                with self._writer_lock:
                    if self._db is None:           # closed under us (shutdown)
                        return
                    if rows:
                        self._write(rows)
                    self._write_changes()
                    self._db.commit()               # the block and its changes: one transaction
                    stored = False
                    while self._captured:
                        self._store_checkpoint(*self._captured.popleft())
                        stored = True
                    if self._checkpoint_due():
                        self._write_checkpoint()
                        stored = True
                    if stored:
                        self._prune()
                if self.error is not None:
                    self._recovered()
            except (sqlite3.Error, OSError, ValueError) as exc:
                self._write_failed(exc, len(rows))
                self._stop.wait(1.0)
            self._handled += len(rows)

    def _write_failed(self, exc, lost: int) -> None:
        """A failed batch is lost (counted); the next checkpoint makes history exact again."""
        self.counters["write_errors"] += 1
        self.counters["dropped"] += lost
        self._force_checkpoint = True
        self.error_at = time.time()
        full = "full" in str(exc).lower() or getattr(exc, "errno", None) == 28
        self.error = ("writing history to %s failed: %s%s" % (
            self.path, exc, " (the disk is full: free space there, or lower the history size limit)"
            if full else " (check the file and its disk)"))
        if self.counters["write_errors"] == 1:
            log.error("%s", self.error)
        with contextlib.suppress(sqlite3.Error, AttributeError):
            self._db.rollback()

    def _recovered(self) -> None:
        log.warning("history writes work again after %d failure(s)", self.counters["write_errors"])
        self.error = None

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until everything queued so far is written (tests, shutdown)."""
        deadline, queued = time.monotonic() + timeout, self._queued
        while self._handled < queued and time.monotonic() < deadline:
            time.sleep(0.02)

    def _write(self, rows) -> None:
        """One input block per writer batch: zlib'd JSON lines (blocks.py)."""
        line = blocks.line
        encoder = self._encoder
        data = zlib.compress("\n".join([line(seq, ts, kind, payload, encoder)
                                        for seq, ts, kind, payload in rows]).encode("utf-8"), 1)
        self._db.execute("INSERT OR IGNORE INTO input_blocks VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (self.run_id, rows[0][0], rows[-1][0], rows[0][1], rows[-1][1], len(rows),
                          len(data), data))
        self.counters["written"] += len(rows)
        self._inputs_since_checkpoint += len(rows)

    def _write_changes(self) -> None:
        g = self._graph
        if g is None:
            return
        records = g.changes_since(self._last_change_version)
        if not records:
            return
        self._last_change_version = records[-1][0]
        data = blocks.change_block(records)
        self._db.execute("INSERT OR IGNORE INTO change_blocks VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (self.run_id, records[0][0], records[-1][0], time.time(), len(records), len(data), data))
        self.counters["changes"] += len(records)

    def _checkpoint_due(self) -> bool:
        if self._force_checkpoint:
            return True
        # By count, the journal captures them (_capture); by time, here.
        return bool(self._inputs_since_checkpoint) and time.time() - self._last_checkpoint >= self.checkpoint_every_s

    def checkpoint(self) -> None:
        """A checkpoint now (the writer thread does this periodically)."""
        with self._writer_lock:
            self._write_checkpoint()

    def _write_checkpoint(self) -> None:
        g = self._graph
        if g is None:
            return
        self._force_checkpoint = False
        # The time BEFORE the export: later inputs have later times (retention, graph_at).
        self._store_checkpoint(time.time(), g.export_state())

    def _store_checkpoint(self, ts: float, state: dict) -> None:
        blob = zlib.compress(json.dumps(state, separators=(",", ":")).encode("utf-8"), 1)
        with self._writer_lock:
            self._db.execute("INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?, ?, ?, ?)",
                             (self.run_id, state["input_seq"], ts, state["version"], len(blob), blob))
            self._db.commit()
        self._last_checkpoint = time.time()
        self._inputs_since_checkpoint = 0
        self._checkpoint_seq = max(self._checkpoint_seq, state["input_seq"])
        self.counters["checkpoints"] += 1

    def _prune(self) -> None:
        """Drop history beyond the retention (age, size), keeping a checkpoint to replay from."""
        result = retention.prune(self._db, max_bytes=self.max_bytes, max_age_s=self.retention_s,
                                 keep_run=self.run_id)
        self.counters["pruned"] += result["blocks"] + result["checkpoints"]
        self.counters["pruned_bytes"] += result["bytes"]

    # -- reading -------------------------------------------------------------------

    def _read_db(self):
        if self._reader is None:
            self._reader = self._db if self.path == ":memory:" else schema.connect(self.path)
        return self._reader

    def graph_at(self, at: float) -> Optional[NamespaceGraph]:
        """The graph as it was at time `at` (seconds since the epoch), or None before the history.
        A time before a restart shows the old run's graph, a time after it the new run's
        (rebuild.py).  Its cost is in `last_rebuild`."""
        with self._rebuild_lock:
            cost = rebuild.Rebuild(at=at)
            t = time.thread_time()
            with self._reader_lock:
                found = rebuild.find(self._read_db(), at)
            cost.read_ms = (time.thread_time() - t) * 1000
            if found is None:
                return None
            graph = rebuild.rebuild(found, at, cost)
            self.last_rebuild = cost
            return graph

    def graph_json_at(self, at: float) -> Optional[GraphJSON]:
        """graph_at(at) as Graph JSON (webapp.contract.HistoryReader)."""
        with rebuild.young_graphs():    # the rebuilt graph goes back on leaving (dropped first)
            graph = self.graph_at(at)
            data = None
            if graph is not None:
                data = graph.to_json()
                rebuild.discard(graph)
            del graph
        return data

    def diff(self, t1: float, t2: float) -> Optional[dict]:
        """What changed between two times, in the diff format of graph.diff_since."""
        with rebuild.young_graphs():
            g1, g2 = self.graph_at(t1), self.graph_at(t2)
            data = diff_graphs(g1.to_json(), g2.to_json(), t1, t2) if g1 is not None and g2 is not None else None
            for graph in (g1, g2):
                if graph is not None:
                    rebuild.discard(graph)
            del g1, g2, graph
        return data

    def time_range(self):
        """(first, last): the times the history covers now (None, None when empty)."""
        with self._reader_lock:
            row = self._read_db().execute("SELECT min(ts) FROM checkpoints").fetchone()
        return (row[0], time.time()) if row and row[0] is not None else (None, None)

    def events(self, since: float = 0.0, limit: int = 1000) -> list:
        """Tracer events recorded at or after `since` (every run), oldest first."""
        with self._reader_lock:
            rows = self._read_db().execute(
                "SELECT data FROM input_blocks WHERE last_ts >= ? ORDER BY first_ts", (since,)).fetchall()
        out = []
        for seq, ts, kind, data in blocks.lines(rows):
            if kind == "event" and ts >= since:
                out.append(data)
                if len(out) >= limit:
                    break
        return out

    def stats(self) -> dict:
        out = dict(self.counters)
        out["queued"] = len(self._inputs)
        out["path"] = self.path
        out["run_id"] = self.run_id
        out["error"] = self.error
        out["error_at"] = self.error_at
        out["max_bytes"] = self.max_bytes
        try:
            out["bytes"] = sum(os.path.getsize(self.path + s) for s in ("", "-wal") if os.path.exists(self.path + s))
        except OSError:
            out["bytes"] = None
        return out

