"""tracer/malloc.py's garbage-collection policy for serve: full collections only when asked."""

from __future__ import annotations

import gc

from tracer import malloc


def _churn(rounds=30, size=20_000):
    """What serve's rings do: objects live long enough to reach the oldest generation, then go."""
    for _ in range(rounds):
        held = []
        for _ in range(size):
            node = []
            node.append(node)              # a cycle: only the collector frees it
            held.append(node)
        for _ in range(3 * size):          # young collections promote `held`
            [].append(0)
        del held


def test_full_collections_wait_for_collect_fully_while_young_ones_still_run():
    saved = gc.get_threshold()
    try:
        full = gc.get_stats()[2]["collections"]
        _churn()
        assert gc.get_stats()[2]["collections"] > full      # the default: full collections by themselves
        malloc.tune_gc()
        young, full = gc.get_stats()[0]["collections"], gc.get_stats()[2]["collections"]
        _churn()
        assert gc.get_stats()[0]["collections"] > young and gc.get_stats()[2]["collections"] == full
        assert malloc.collect_fully() >= 20_000              # the promoted cycles, freed on request
        assert gc.get_stats()[2]["collections"] == full + 1
    finally:
        gc.set_threshold(*saved)


def test_tracemalloc_snapshots_on_sigusr2_only_when_asked(tmp_path):
    import subprocess
    import sys
    import tracemalloc
    import os
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    prefix = str(tmp_path / "snap")
    code = ("import os, signal, sys; from tracer import malloc; on = malloc.trace_from_env(); "
            "held = [bytes(1000) for _ in range(2000)]; os.kill(os.getpid(), signal.SIGUSR2); "
            "sys.exit(0 if on else 3)")
    subprocess.run([sys.executable, "-c", code], check=True, env={"NSGRAPH_TRACEMALLOC": prefix,
                   "PYTHONPATH": repo}, timeout=60)
    snapshot = tracemalloc.Snapshot.load(prefix + ".0")
    assert sum(stat.size for stat in snapshot.statistics("filename")) >= 2000 * 1000
    # without the variable: nothing traced, and SIGUSR2 keeps its default meaning (not installed)
    result = subprocess.run([sys.executable, "-c", "from tracer import malloc; "
                             "import sys; sys.exit(3 if malloc.trace_from_env() else 0)"],
                            env={"PYTHONPATH": repo}, timeout=60)
    assert result.returncode == 0
