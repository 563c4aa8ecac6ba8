"""The graph at time T from the history database: the newest checkpoint at or before T,
then the inputs after it up to T (HistoryStore.graph_at, graph_json_at, diff).

A rebuild makes ~100 000 objects, none of them garbage while it runs, so Python's
collector is paused meanwhile (its collections would only add latency; a full one walks
the whole process).  A rebuilt graph holds reference cycles (its parts point back at it),
so dropping it frees nothing until a full collection, which serve runs once a minute: a
dashboard scrubbing through history would pile up a whole graph per request until then.
`young_graphs()` keeps the collector paused while the caller uses the graphs and then
runs one collection of the youngest generation, where all of a rebuild's objects still
are: they go back at once, at the cost of walking only the objects made since the pause;
`discard()` first lets reference counting free the graph itself, so that walk is short.

Each rebuild's cost is kept in `Rebuild` (what bench/bench_history.py prints for the
slowest times T): the SQL reads, the checkpoint's decoding, the replay.
"""

from __future__ import annotations

import contextlib
import gc
import json
import threading
import time
import zlib
from dataclasses import dataclass
from typing import Optional

from ..graph.model import NamespaceGraph
from . import blocks
from .replay import replay_records

_pause_lock = threading.Lock()
_pauses = 0
_was_enabled = False


@dataclass
class Rebuild:
    """One rebuild's cost (milliseconds of this thread's CPU, and what it read)."""
    at: float = 0.0
    checkpoint_bytes: int = 0
    blocks: int = 0
    replayed: int = 0
    read_ms: float = 0.0
    load_ms: float = 0.0
    replay_ms: float = 0.0

    @property
    def total_ms(self) -> float:
        return self.read_ms + self.load_ms + self.replay_ms


@dataclass
class Found:
    run_id: str
    seq: int            # the checkpoint's input sequence number
    state: bytes        # the checkpoint (zlib'd JSON)
    block_data: list    # the input blocks after it, up to `at`, in sequence order


def find(db, at: float) -> Optional[Found]:
    """What rebuilding the graph at `at` reads, or None before the history.  The run live
    at `at` is the one with the newest checkpoint at or before it."""
    row = db.execute("SELECT run_id, seq, state FROM checkpoints WHERE ts <= ? ORDER BY ts DESC "
                     "LIMIT 1", (at,)).fetchone()
    if row is None:
        return None
    run_id, seq, state = row
    block_data = []
    # Blocks in sequence order, so times only grow: stop at the first one after `at`
    # instead of scanning the rest of the run.
    for first_ts, data in db.execute(
            "SELECT first_ts, data FROM input_blocks WHERE run_id = ? AND last_seq > ? "
            "ORDER BY last_seq", (run_id, seq)):
        if first_ts > at:
            break
        block_data.append(data)
    return Found(run_id, seq, state, block_data)


def rebuild(found: Found, at: float, cost: Rebuild) -> NamespaceGraph:
    """The graph at `at` from what find() read; fills in `cost`."""
    with young_graphs():
        t = time.thread_time()
        graph = NamespaceGraph.from_state(json.loads(zlib.decompress(found.state)))
        t1 = time.thread_time()
        counted = _Counted(blocks.inputs_between(found.block_data, found.seq, at))
        replay_records(graph, counted)
        t2 = time.thread_time()
    cost.checkpoint_bytes, cost.blocks, cost.replayed = len(found.state), len(found.block_data), counted.n
    cost.load_ms, cost.replay_ms = (t1 - t) * 1000, (t2 - t1) * 1000
    return graph


def discard(graph: NamespaceGraph) -> None:
    """Let go of a rebuilt graph that only the caller holds (graph_json_at, diff): its
    attributes dropped, its parts no longer point back at it and go by reference counting,
    without the young collection walking them (~33 ms on a 2 000-process graph, 5 after)."""
    vars(graph).clear()


@contextlib.contextmanager
def young_graphs():
    """Python's collector paused (nested and across threads: paused while any caller is in
    here); when the last one leaves, one young collection frees what they dropped."""
    global _pauses, _was_enabled
    with _pause_lock:
        if _pauses == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        with _pause_lock:
            _pauses -= 1
            last = _pauses == 0
            if last and _was_enabled:
                gc.enable()
        if last:
            gc.collect(0)


class _Counted:
    """An iterator that counts what it hands out."""

    def __init__(self, items):
        self._items = iter(items)
        self.n = 0

    def __iter__(self):
        return self

    def __next__(self):
        item = next(self._items)
        self.n += 1
        return item
