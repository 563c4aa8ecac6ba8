"""History: every graph input and change in SQLite, and the graph as it was at time T.

The graph journals its inputs (events, ops, lazy /proc reads; see
NamespaceGraph.add_journal).  Those records, plus periodic checkpoints of the
whole model (NamespaceGraph.export_state), are enough to rebuild the graph at
any time T: load the newest checkpoint at or before T and replay the inputs
after it (replay_records).  The change log (version, op, entity, id) is stored
too, for audits and `diff`.

Writes never block the collector: the journal callback only puts the record on
a bounded queue; one writer thread serialises and inserts in batches (WAL
mode).  A full queue drops the record and counts it, and the next checkpoint
(forced after a drop) makes later history exact again.

Tables (schema version 1):
  inputs(seq, ts, kind, data)          journal records, data is JSON
  changes(version, ts, op, entity, ident)
  checkpoints(seq, ts, version, state) state is JSON (export_state)
  meta(key, value)
"""

from __future__ import annotations

import json
import logging
import os
import queue
import sqlite3
import threading
import time
from typing import Optional

from ..graph.model import NamespaceGraph, replay_records
from .diff import diff_graphs
from .recording import decode_input, encode_input

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS inputs (seq INTEGER PRIMARY KEY, ts REAL NOT NULL, kind TEXT NOT NULL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS inputs_ts ON inputs(ts);
CREATE TABLE IF NOT EXISTS changes (version INTEGER NOT NULL, ts REAL NOT NULL, op TEXT NOT NULL,
                                    entity TEXT NOT NULL, ident TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS changes_version ON changes(version);
CREATE TABLE IF NOT EXISTS checkpoints (seq INTEGER PRIMARY KEY, ts REAL NOT NULL, version INTEGER NOT NULL,
                                        state TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS checkpoints_ts ON checkpoints(ts);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""


def default_path() -> str:
    if os.geteuid() == 0:
        return "/var/lib/nsgraph/history.db"
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return os.path.join(base, "nsgraph", "history.db")


class StoreError(Exception):
    """The history database cannot be used; the message says how to fix it."""


class HistoryStore:
    def __init__(self, path: Optional[str] = None, *, retention_s: Optional[float] = 7 * 86400,
                 retention_rows: Optional[int] = 2_000_000, checkpoint_every_s: float = 300.0,
                 checkpoint_every_inputs: int = 50_000, queue_size: int = 200_000,
                 batch: int = 2000, flush_s: float = 0.2):
        self.path = path or default_path()
        self.retention_s = retention_s
        self.retention_rows = retention_rows
        self.checkpoint_every_s = checkpoint_every_s
        self.checkpoint_every_inputs = checkpoint_every_inputs
        self.batch = batch
        self.flush_s = flush_s
        self._queue = queue.Queue(maxsize=queue_size)
        self._graph = None
        self._thread = None
        self._stop = threading.Event()
        self._read_lock = threading.RLock()     # one connection per thread role; sqlite serialises anyway
        self._db = None
        self._reader = None
        self._last_change_version = 0
        self._last_checkpoint = 0.0
        self._inputs_since_checkpoint = 0
        self._force_checkpoint = False
        self.counters = {"written": 0, "dropped": 0, "checkpoints": 0, "changes": 0, "pruned": 0,
                         "write_errors": 0}
        self.error = None

    # -- life cycle ---------------------------------------------------------------

    def open(self) -> "HistoryStore":
        directory = os.path.dirname(os.path.abspath(self.path))
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            self._db = self._connect()
            self._db.executescript(SCHEMA)
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', '1')")
            self._db.commit()
        except (OSError, sqlite3.Error) as exc:
            raise StoreError("cannot open the history database %s (%s). Choose another path with --db, "
                             "or make %s writable." % (self.path, exc, directory)) from exc
        return self

    def _connect(self):
        db = sqlite3.connect(self.path, check_same_thread=False, timeout=10)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    def attach(self, graph: NamespaceGraph) -> None:
        """Record graph's inputs from now on; writes a first checkpoint."""
        self._graph = graph
        self._last_change_version = graph.version
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
        if self._thread is not None:
            self._thread.join(timeout)
        if self._db is not None:
            try:
                self._db.close()
            except sqlite3.Error:
                pass
            self._db = None
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    # -- writing -------------------------------------------------------------------

    def _on_input(self, kind, payload, seq) -> None:
        try:
            self._queue.put_nowait((seq, time.time(), kind, payload))
        except queue.Full:
            self.counters["dropped"] += 1
            self._force_checkpoint = True

    def _run(self) -> None:
        while not self._stop.is_set() or not self._queue.empty():
            rows = []
            try:
                rows.append(self._queue.get(timeout=self.flush_s))
                while len(rows) < self.batch:
                    rows.append(self._queue.get_nowait())
            except queue.Empty:
                pass
            try:
                with self._read_lock:
                    if rows:
                        self._write(rows)
                    self._write_changes()
                    if self._checkpoint_due():
                        self._write_checkpoint()
                        self._prune()
            except Exception as exc:
                self.counters["write_errors"] += 1
                self.error = "writing history to %s failed: %s (disk full? check free space)" % (self.path, exc)
                if self.counters["write_errors"] == 1:
                    log.exception("history write failed")
                self._stop.wait(1.0)

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until everything queued so far is written (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while not self._queue.empty() and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(self.flush_s + 0.05)

    def _write(self, rows) -> None:
        encoded = []
        for seq, ts, kind, payload in rows:
            encoded.append((seq, ts, kind, json.dumps(encode_input(kind, payload), separators=(",", ":"))))
        self._db.executemany("INSERT OR REPLACE INTO inputs VALUES (?, ?, ?, ?)", encoded)
        self._db.commit()
        self.counters["written"] += len(encoded)
        self._inputs_since_checkpoint += len(encoded)

    def _write_changes(self) -> None:
        g = self._graph
        if g is None:
            return
        with g.lock:
            if g.version == self._last_change_version:
                return
            rows = [(v, op, entity, str(ident)) for v, op, entity, ident in g._changes
                    if v > self._last_change_version]
            self._last_change_version = g.version
        now = time.time()
        self._db.executemany("INSERT INTO changes VALUES (?, ?, ?, ?, ?)",
                             [(v, now, op, entity, ident) for v, op, entity, ident in rows])
        self._db.commit()
        self.counters["changes"] += len(rows)

    def _checkpoint_due(self) -> bool:
        if self._force_checkpoint:
            return True
        if not self._inputs_since_checkpoint:
            return False
        return (self._inputs_since_checkpoint >= self.checkpoint_every_inputs
                or time.time() - self._last_checkpoint >= self.checkpoint_every_s)

    def checkpoint(self) -> None:
        """A checkpoint now (the writer thread does this periodically)."""
        with self._read_lock:
            self._write_checkpoint()

    def _write_checkpoint(self) -> None:
        g = self._graph
        if g is None:
            return
        self._force_checkpoint = False
        state = g.export_state()
        with self._read_lock:
            self._db.execute("INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?, ?)",
                             (state["input_seq"], time.time(), state["version"],
                              json.dumps(state, separators=(",", ":"))))
            self._db.commit()
        self._last_checkpoint = time.time()
        self._inputs_since_checkpoint = 0
        self.counters["checkpoints"] += 1

    def _prune(self) -> None:
        """Drop history beyond the retention, keeping a checkpoint to replay from."""
        cutoff_seq = None
        if self.retention_s:
            row = self._db.execute("SELECT max(seq) FROM checkpoints WHERE ts <= ?",
                                   (time.time() - self.retention_s,)).fetchone()
            cutoff_seq = row[0]
        if self.retention_rows:
            row = self._db.execute("SELECT max(seq) FROM inputs").fetchone()
            if row[0] is not None and row[0] > self.retention_rows:
                cp = self._db.execute("SELECT max(seq) FROM checkpoints WHERE seq <= ?",
                                      (row[0] - self.retention_rows,)).fetchone()[0]
                if cp is not None and (cutoff_seq is None or cp > cutoff_seq):
                    cutoff_seq = cp
        if cutoff_seq is None:
            return
        cur = self._db.execute("DELETE FROM inputs WHERE seq <= ?", (cutoff_seq,))
        self.counters["pruned"] += cur.rowcount
        self._db.execute("DELETE FROM checkpoints WHERE seq < ?", (cutoff_seq,))
        first_ts = self._db.execute("SELECT ts FROM checkpoints WHERE seq = ?", (cutoff_seq,)).fetchone()
        if first_ts:
            self._db.execute("DELETE FROM changes WHERE ts < ?", (first_ts[0],))
        self._db.commit()

    # -- reading -------------------------------------------------------------------

    def _read_db(self):
        if self._reader is None:
            self._reader = sqlite3.connect(self.path, check_same_thread=False, timeout=10)
        return self._reader

    def graph_at(self, at: float) -> Optional[NamespaceGraph]:
        """The graph as it was at time `at` (seconds since the epoch), or None before the history."""
        with self._read_lock:
            db = self._read_db()
            row = db.execute("SELECT seq, state FROM checkpoints WHERE ts <= ? ORDER BY seq DESC LIMIT 1",
                             (at,)).fetchone()
            if row is None:
                return None
            seq, state = row
            records = db.execute("SELECT kind, data FROM inputs WHERE seq > ? AND ts <= ? ORDER BY seq",
                                 (seq, at)).fetchall()
        graph = NamespaceGraph.from_state(json.loads(state))
        replay_records(graph, ((kind, decode_input(kind, json.loads(data))) for kind, data in records))
        return graph

    def graph_json_at(self, at: float) -> Optional[dict]:
        """graph_at(at) as Graph JSON (webapp.contract.HistoryReader)."""
        graph = self.graph_at(at)
        return graph.to_json() if graph is not None else None

    def diff(self, t1: float, t2: float) -> Optional[dict]:
        """What changed between two times, in the diff format of graph.diff_since."""
        g1, g2 = self.graph_at(t1), self.graph_at(t2)
        if g1 is None or g2 is None:
            return None
        return diff_graphs(g1.to_json(), g2.to_json(), t1, t2)

    def events(self, since: float = 0.0, limit: int = 1000) -> list:
        with self._read_lock:
            rows = self._read_db().execute(
                "SELECT data FROM inputs WHERE kind = 'event' AND ts >= ? ORDER BY seq LIMIT ?",
                (since, limit)).fetchall()
        return [json.loads(r[0]) for r in rows]

    def stats(self) -> dict:
        out = dict(self.counters)
        out["queued"] = self._queue.qsize()
        out["path"] = self.path
        out["error"] = self.error
        return out
