#!/usr/bin/env python3
"""graph_at on a full history database: the time to rebuild the graph at random times T.

Fills a real SQLite file through the real HistoryStore (writer thread, blocks,
checkpoints, retention) with synthetic tracer events (fork, exec, exit, an unshare
now and then, on a graph with --procs long-lived processes) until it holds --mb MB,
then times graph_at(T) for --samples random T across the whole history.
Target: every T rebuilds in <= 200 ms (issue 11).  No root needed.

    .venv/bin/python bench/bench_history.py [--mb 400] [--samples 50] [--procs 2000]
    .venv/bin/python bench/bench_history.py --path DB --measure-only   (time a database filled before,
        e.g. by an older nsgraph: the read path alone; T spans its first checkpoint to its last input)
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tracer.exitcodes import EXIT_OK  # noqa: E402

from bench_web_stream import HOST, event_stream  # noqa: E402
from loadgen import percentile  # noqa: E402
from tracer.graph.model import NamespaceGraph  # noqa: E402
from tracer.history.rebuild import discard, young_graphs  # noqa: E402
from tracer.history.store import HistoryStore  # noqa: E402
from tracer import malloc  # noqa: E402


def build_graph(procs: int):
    import collections
    from tracer.host.snapshot import NsInfo, ProcInfo, Snapshot
    dev = 4
    namespaces = {}
    for slot, inode in HOST.items():
        t = slot.replace("_for_children", "")
        namespaces[(t, dev, inode)] = NsInfo(t, inode, dev, ns_id=inode, owner_inode=None if t == "user" else 105)
    # Far above the pids event_stream() reaches (it counts up from 1 000, one per fork), whose
    # exits would otherwise remove these long-lived processes within the first 300 000 events.
    pids = [1, 50] + list(range(3_000_000, 3_000_000 + procs))
    processes = {pid: ProcInfo(pid, 0 if pid == 1 else 1, 0, "init" if pid == 1 else "sh", ["sh", "-c", "x" * 40],
                               pid, "0::/", {s: (dev, i) for s, i in HOST.items()}) for pid in pids}
    g = NamespaceGraph(dev=dev)
    g.load_snapshot(Snapshot(time.time(), processes, namespaces, collections.Counter()))
    return g


def sample(store, lo, hi, samples):
    """(wall ms, CPU ms, costs) of graph_at at `samples` random times in [lo, hi].  CPU: this
    thread's (the store's writer may be pruning meanwhile; its time is not the rebuild's).
    Each graph goes back as the API's does (rebuild.discard, young_graphs): dropped graphs left
    for a full collection would add that collection to a later sample."""
    times, cpu, costs = [], [], []
    rng = random.Random(1)
    for _ in range(samples):
        at = rng.uniform(lo, hi)
        t, c = time.perf_counter(), time.thread_time()
        with young_graphs():
            graph = store.graph_at(at)
            assert graph is not None
            discard(graph)
            del graph
        # Including the collection that gives the graph back (the API pays it too).
        times.append((time.perf_counter() - t) * 1000)
        cpu.append((time.thread_time() - c) * 1000)
        costs.append(store.last_rebuild)
    return times, cpu, costs


def report(times, cpu, costs) -> None:
    print("graph_at over %d random T: wall p50 %.0f ms, p99 %.0f ms, max %.0f ms (target <= 200 ms); CPU time "
          "p50 %.0f ms, p99 %.0f ms, max %.0f ms (what it costs without other load); load %.1f (a shared machine)"
          % (len(times), percentile(times, 50), percentile(times, 99), max(times), percentile(cpu, 50),
             percentile(cpu, 99), max(cpu), os.getloadavg()[0]))
    print("slowest (CPU ms = SQL reads + checkpoint decode + replay + the rest (freeing the graph); "
          "checkpoint KB, blocks, inputs replayed):")
    for i in sorted(range(len(cpu)), key=cpu.__getitem__)[-3:]:
        c = costs[i]
        print("  %4.0f ms = %.0f + %.0f + %.0f + %.0f; %.0f KB, %d blocks, %d inputs (sample %d)" % (
            cpu[i], c.read_ms, c.load_ms, c.replay_ms, cpu[i] - c.total_ms, c.checkpoint_bytes / 1024, c.blocks,
            c.replayed, i))


def measure_only(args) -> int:
    import sqlite3
    with sqlite3.connect(args.path) as db:
        lo = db.execute("SELECT min(ts) FROM checkpoints").fetchone()[0]
        hi = db.execute("SELECT max(last_ts) FROM input_blocks").fetchone()[0]
        count = db.execute("SELECT count(*) FROM checkpoints").fetchone()[0]
    store = HistoryStore(args.path).open()
    try:
        times, cpu, costs = sample(store, lo, hi, args.samples)
    finally:
        store.close()
    print("database %s: %.0f MB, %d checkpoints, %.0f s of history" % (
        args.path, os.path.getsize(args.path) / 2**20, count, hi - lo))
    report(times, cpu, costs)
    return EXIT_OK


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=400.0)
    ap.add_argument("--samples", type=int, default=50)
    ap.add_argument("--procs", type=int, default=2000)
    ap.add_argument("--path", help="database file (default: a temporary one)")
    ap.add_argument("--measure-only", action="store_true", help="do not fill --path: time graph_at on it")
    args = ap.parse_args()
    malloc.tune_gc()        # serve's policy: no full collection by itself (it runs one a minute)
    if args.measure_only:
        if not args.path or not os.path.exists(args.path):
            ap.error("--measure-only needs --path of an existing history database")
        return measure_only(args)
    path = args.path or os.path.join(tempfile.mkdtemp(prefix="nsgbench-hist-"), "history.db")
    g = build_graph(args.procs)
    store = HistoryStore(path, max_bytes=int(args.mb * 2**20)).open()
    store.attach(g)
    store.start()
    gen = event_stream()
    t0 = time.monotonic()
    n = 0
    last_report = t0
    while True:
        for _ in range(2000):
            g.apply(next(gen))
        n += 2000
        while store.stats()["queued"] > 20_000:
            time.sleep(0.05)
        if time.monotonic() - last_report > 10:
            last_report = time.monotonic()
            st = store.stats()
            print("  %d inputs, %.0f MB, %d checkpoints, pruned %d" % (
                n, (st["bytes"] or 0) / 2**20, st["checkpoints"], st["pruned"]), flush=True)
            # Full: the size retention has started cutting.
            if st["pruned"] > 0 or (st["bytes"] or 0) >= args.mb * 2**20:
                break
    store.flush()
    lo, hi = store.time_range()
    times, cpu, costs = sample(store, lo, hi, args.samples)
    st = store.stats()
    store.close()
    print("database %.0f MB (limit %.0f), %d inputs written in %.0f s, %d checkpoints kept, graph of %d processes"
          % ((st["bytes"] or 0) / 2**20, args.mb, st["written"], time.monotonic() - t0, st["checkpoints"],
             args.procs))
    report(times, cpu, costs)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
