"""Collector.sync(): settle, then compare - on the real kernel, with a consumer that lags."""

from __future__ import annotations

import os
import threading
import time

from tests.kernel.test_ringbuf import unshare_children


def test_sync_returns_after_everything_before_it_reached_a_slow_graph(root):
    from tracer.kernel.collector import Collector
    from tracer.kernel.probes import ProbeOptions

    applied = set()
    lock = threading.Lock()

    def slow_graph(batch):
        time.sleep(0.3)                 # a busy graph: the backlog grows while it works
        with lock:
            applied.update(e.pid for e in batch)

    collector = Collector(options=ProbeOptions(proc_events=False))
    collector.subscribe_batch(slow_graph)
    collector.start()
    try:
        for _ in range(3):
            pids = unshare_children(150)
            assert collector.sync(timeout=60)
            with lock:
                missing = set(pids) - applied
            assert not missing, "sync returned before %d of 150 events reached the graph" % len(missing)
        # the markers themselves are nsgraph's own business: no subscriber sees them
        with lock:
            assert os.getpid() not in applied
    finally:
        collector.stop()
