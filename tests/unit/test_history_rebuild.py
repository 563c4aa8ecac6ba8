"""Rebuilding the graph at T (tracer/history/rebuild.py): what it costs, and that it goes back."""

from __future__ import annotations

import gc
import time

from tracer.graph.model import NamespaceGraph
from tracer.history.store import HistoryStore

from test_graph import DEV, HOST, ev, host_snapshot


def _store_with_history(tmp_path, inputs=60):
    g = NamespaceGraph(dev=DEV)
    g.load_snapshot(host_snapshot(pids=(1, 50)))
    store = HistoryStore(str(tmp_path / "h.db"), checkpoint_every_inputs=40, batch=9, flush_s=0.01).open()
    store.attach(g)
    store.start()
    time.sleep(0.01)
    for i in range(inputs):
        g.apply(ev("clone", 50, ns=HOST, before=HOST, child_pid=1000 + i, raw_flags=17))
    store.flush()
    return g, store


def _graphs_tracked() -> int:
    return sum(1 for o in gc.get_objects() if type(o) is NamespaceGraph)


def test_rebuilt_graphs_go_back_without_a_full_collection(tmp_path):
    g, store = _store_with_history(tmp_path)
    enabled = gc.isenabled()
    try:
        gc.collect()
        gc.disable()        # serve's policy goes further: no full collection for a minute
        before = _graphs_tracked()
        at = time.time()
        for _ in range(3):
            assert store.graph_json_at(at)["processes"]
        assert store.diff(store.time_range()[0], at) is not None
        # A rebuilt graph holds reference cycles: without the young collection at the end of
        # graph_json_at and diff, each one would wait as garbage for the next full collection.
        assert _graphs_tracked() == before
        assert not gc.isenabled()       # the caller's setting is kept
    finally:
        if enabled:
            gc.enable()
        store.close()


def test_the_cost_of_the_last_rebuild_is_kept(tmp_path):
    g, store = _store_with_history(tmp_path, inputs=60)
    try:
        graph = store.graph_at(time.time())
        cost = store.last_rebuild
        assert sorted(graph.process_ns()) == sorted(g.process_ns())
        # 60 clones, a checkpoint every 40 inputs: the last at input 40, then 20 replayed
        assert cost.replayed == 20 and cost.blocks >= 1 and cost.checkpoint_bytes > 0
        assert cost.total_ms == cost.read_ms + cost.load_ms + cost.replay_ms > 0
    finally:
        store.close()
