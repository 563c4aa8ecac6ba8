"""bench/estimate.py's arithmetic: the overhead of a storm from the kernel's counters
(the measuring itself runs in bench/bench_probe_cost.py, as root, by hand)."""

from __future__ import annotations

import pytest

from bench import estimate


class _Floor:
    def __init__(self, log):
        self.log = log

    def stop(self):
        self.log.append("stop")


def test_slow_path_alternates_off_and_floor_and_takes_the_median_difference():
    log = []
    times = iter([100.0, 130.0, 102.0, 120.0, 98.0, 150.0])     # off, floor, off, floor, ...

    def time_storm(name):
        log.append(name)
        return next(times)

    def start_floor():
        log.append("start")
        return _Floor(log)

    slow = estimate.slow_path(time_storm, start_floor, rounds=3)
    assert log == ["getppid", "start", "getppid", "stop"] * 3
    assert slow["off_ns"] == 100.0 and slow["floor_ns"] == 130.0
    assert slow["slow_ns"] == 30.0 and (slow["min_ns"], slow["max_ns"]) == (18.0, 52.0)


def test_a_floor_faster_than_nothing_is_no_negative_slow_path():
    times = iter([100.0, 95.0])
    slow = estimate.slow_path(lambda _name: next(times), lambda: _Floor([]), rounds=1)
    assert slow["slow_ns"] == 0.0 and slow["min_ns"] == -5.0


def test_estimate_splits_floor_and_own_in_percent_of_the_operation():
    # 1 000 operations: nsgraph's programs 600 ns an operation, the floor's 100 ns.
    mine = {"ops": 1000, "programs": [("sched_process_fork", 1000, 400_000), ("sched_process_exit", 1000, 200_000)]}
    floor = {"ops": 1000, "programs": [("sched_process_fork", 1000, 60_000), ("sched_process_exit", 1000, 40_000)]}
    e = estimate.estimate(mine, floor, calls_per_op=4, slow_ns=25.0, op_ns=100_000.0)
    assert e["floor_ns"] == pytest.approx(4 * 25 + 100)
    assert e["own_ns"] == pytest.approx(500)
    assert e["floor_pct"] == pytest.approx(0.2) and e["own_pct"] == pytest.approx(0.5)
    assert e["vs_off_pct"] == pytest.approx(0.7)


def test_own_cost_is_never_below_zero():
    cheap = {"ops": 10, "programs": [("p", 10, 500)]}
    dear = {"ops": 10, "programs": [("p", 10, 900)]}
    e = estimate.estimate(cheap, dear, calls_per_op=1, slow_ns=0.0, op_ns=1000.0)
    assert e["own_ns"] == 0.0 and e["vs_off_pct"] == pytest.approx(9.0)
