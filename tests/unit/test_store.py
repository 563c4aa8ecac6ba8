"""HistoryStore: inputs and checkpoints in SQLite rebuild the graph at any time T."""

from __future__ import annotations

import collections
import json
import sqlite3
import time
import zlib

from tracer import nstypes
from tracer.graph.model import NamespaceGraph
from tracer.history.diff import diff_graphs
from tracer.history import blocks, retention
from tracer.history.store import HistoryStore

from test_graph import DEV, HOST, ev, host_snapshot, with_


def _strip(data):
    data = dict(data)
    data.pop("time")
    return data


def _live_graph(tmp_path, **store_kw):
    g = NamespaceGraph(dev=DEV)
    g.load_snapshot(host_snapshot(pids=(1, 50)))
    store = HistoryStore(str(tmp_path / "h.db"), **store_kw).open()
    store.attach(g)
    store.start()
    return g, store


def test_graph_at_rebuilds_each_moment_and_diff(tmp_path):
    g, store = _live_graph(tmp_path)
    try:
        before = _strip(g.to_json())
        time.sleep(0.02)
        t0 = time.time()
        time.sleep(0.02)
        cur = dict(HOST)
        for i in range(5):
            new = with_(cur, uts=300)
            g.apply(ev("unshare", 50, ns=new, before=cur, raw_flags=nstypes.CLONE_NEWUTS, comm="unshare"))
            cur = new
        g.apply(ev("clone", 50, ns=cur, before=cur, child_pid=51, raw_flags=17))
        middle = _strip(g.to_json())
        time.sleep(0.02)
        t1 = time.time()
        store.checkpoint()            # a checkpoint in the middle must not change the answers
        time.sleep(0.02)
        g.apply(ev("exit", 51))
        g.apply(ev("exit", 50))
        g.end_orphans()
        end = _strip(g.to_json())
        store.flush()
        t2 = time.time()
        assert _strip(store.graph_at(t0).to_json()) == before
        assert _strip(store.graph_at(t1).to_json()) == middle
        assert _strip(store.graph_at(t2).to_json()) == end
        assert store.graph_at(t0 - 3600) is None
        d = store.diff(t1, t2)
        ops = {(c["op"], c["entity"], c["id"]) for c in d["changes"]}
        assert ("remove", "process", 50) in ops and ("remove", "process", 51) in ops
        assert any(op == "update" and ident.startswith("uts:4:300:") for op, _, ident in ops)
        assert d == diff_graphs(middle, end, t1, t2) | {"from": t1, "to": t2}
    finally:
        store.close()
    db = sqlite3.connect(str(tmp_path / "h.db"))
    kinds = collections.Counter(
        json.loads(line)[2] for (data,) in db.execute("SELECT data FROM input_blocks")
        for line in zlib.decompress(data).split(b"\n"))
    assert kinds["e"] == 8            # events as compact rows (tracer/history/blocks.py)
    # Every change the graph logged while the store was attached, in order, one block per batch.
    stored = [(v, op, entity, ident) for v, _ts, op, entity, ident in blocks.change_records(db)]
    assert stored and stored == list(g.changes.since(stored[0][0] - 1))
    assert ("remove", "process", 51) in {r[1:] for r in stored}
    assert db.execute("SELECT count(*) FROM changes").fetchone()[0] == 0
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_full_queue_drops_and_counts_without_blocking(tmp_path):
    g = NamespaceGraph(dev=DEV)
    g.load_snapshot(host_snapshot(pids=(1, 50)))
    store = HistoryStore(str(tmp_path / "h.db"), queue_size=10).open()
    store.attach(g)                     # not started: nothing drains the queue
    t = time.perf_counter()
    for i in range(100):
        g.apply(ev("clone", 50, ns=HOST, before=HOST, child_pid=1000 + i, raw_flags=17))
    assert time.perf_counter() - t < 5
    assert store.counters["dropped"] == 90
    store.start()
    store.flush()
    # the forced checkpoint makes the present exact again
    assert _strip(store.graph_at(time.time()).to_json())["processes"] == _strip(g.to_json())["processes"]
    store.close()


def test_retention_by_size_keeps_a_checkpoint_to_replay_from(tmp_path):
    g, store = _live_graph(tmp_path, max_bytes=64 * 1024, checkpoint_every_inputs=40, batch=20)
    try:
        for i in range(3000):
            g.apply(ev("clone", 50, ns=HOST, before=HOST, child_pid=2000 + i, raw_flags=17,
                       comm="w%d" % i))
            g.apply(ev("exit", 2000 + i))
            if i % 100 == 0:
                store.flush()
        store.flush()
        store.checkpoint()
        g.apply(ev("exit", 50))
        store.flush()
        db = sqlite3.connect(store.path)
        first = db.execute("SELECT min(first_seq) FROM input_blocks").fetchone()[0]
        assert first > 1000, "old input blocks were not pruned"
        assert store.counters["pruned"] > 0 and store.counters["pruned_bytes"] > 0
        assert retention.used_bytes(db) <= 64 * 1024 * 2
        assert _strip(store.graph_at(time.time()).to_json()) == _strip(g.to_json())
    finally:
        store.close()


def test_unwritable_path_gives_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    import pytest
    from tracer.history.store import StoreError
    with pytest.raises(StoreError) as info:
        HistoryStore(str(blocker / "sub" / "h.db")).open()
    assert "--db" in str(info.value)


def test_graph_at_is_exact_between_close_checkpoints_that_fall_inside_blocks(tmp_path):
    # Checkpoints every 25 inputs, blocks of 7: the checkpoint's block holds inputs from before
    # it, which the rebuild must skip (it reads their sequence numbers without decoding them).
    g, store = _live_graph(tmp_path, checkpoint_every_inputs=25, batch=7, flush_s=0.01)
    try:
        moments = []
        for i in range(60):
            g.apply(ev("clone", 50, ns=HOST, before=HOST, child_pid=1000 + i, raw_flags=17))
            if i % 3:
                g.apply(ev("exit", 1000 + i - 1))
            if i % 6 == 0:
                time.sleep(0.003)
                moments.append((time.time(), _strip(g.to_json())))
                time.sleep(0.003)
            if i % 20 == 0:
                store.flush(timeout=5)
        store.flush()
        assert store.stats()["checkpoints"] >= 4
        for at, expected in moments:
            assert _strip(store.graph_at(at).to_json()) == expected
    finally:
        store.close()


def test_checkpoints_are_exactly_n_inputs_apart_however_fast_the_graph_runs_ahead(tmp_path):
    # The graph is fed far faster than the writer stores (it waits for nothing): checkpoints
    # taken by the writer came thousands of inputs apart.  The journal takes them at the mark.
    g, store = _live_graph(tmp_path, checkpoint_every_inputs=25, batch=7, flush_s=0.01)
    try:
        for i in range(150):
            g.apply(ev("clone", 50, ns=HOST, before=HOST, child_pid=2000 + i, raw_flags=17))
            g.apply(ev("exit", 2000 + i))
            if i % 40 == 39:
                store.flush(timeout=5)     # let the writer catch up (four captures wait at most)
        end = _strip(g.to_json())
        store.flush()
        with sqlite3.connect(str(tmp_path / "h.db")) as db:
            seqs = [r[0] for r in db.execute("SELECT seq FROM checkpoints ORDER BY seq")]
        assert len(seqs) >= 10 and all(b - a == 25 for a, b in zip(seqs, seqs[1:]))
        assert _strip(store.graph_at(time.time()).to_json()) == end
    finally:
        store.close()


def test_a_stalled_writer_keeps_the_first_and_the_newest_capture(tmp_path):
    g = NamespaceGraph(dev=DEV)
    g.load_snapshot(host_snapshot(pids=(1, 50)))
    store = HistoryStore(str(tmp_path / "h.db"), checkpoint_every_inputs=25, batch=7, flush_s=0.01).open()
    store.attach(g)
    try:
        moments = []
        for i in range(150):                # the writer has not started: everything waits
            g.apply(ev("clone", 50, ns=HOST, before=HOST, child_pid=3000 + i, raw_flags=17))
            g.apply(ev("exit", 3000 + i))
            if i % 30 == 0:
                time.sleep(0.003)
                moments.append((time.time(), _strip(g.to_json())))
                time.sleep(0.003)
        store.start()
        store.flush()
        with sqlite3.connect(str(tmp_path / "h.db")) as db:
            seqs = [r[0] for r in db.execute("SELECT seq FROM checkpoints ORDER BY seq")]
        assert seqs == [0, 25, 50, 75, 275]
        for at, expected in moments:
            assert _strip(store.graph_at(at).to_json()) == expected
    finally:
        store.close()
