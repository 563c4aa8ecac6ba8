"""The overhead of the probes on a storm, from the kernel's own counters.

Wall-clock storms on a shared 2-core VM move by +-10 % between identical runs
(the host's other guests, not nsgraph), far more than the 1.5-3 % the targets
are about.  The parts of the overhead can each be measured precisely instead:

  floor       every system call of every task pays the syscall tracepoints' slow
              path while any of them is attached (none on the fentry path):
              measured on back-to-back getppid() under off and floor, times the
              system calls one operation makes (syscalls.py counts them); plus
              the empty programs' run time per operation (BPF statistics)
  nsgraph     its programs' run time per operation above the floor's (BPF statistics)
  operation   the storm's time per operation with nothing attached (median of runs)

What this leaves out: the kernel's dispatch to a program (the same for the floor
and nsgraph, so not in "own"), and effects on caches.  The wall-clock stage is
printed beside it, so a large gap between the two would show.
"""

from __future__ import annotations

import statistics

SLOW_PATH_STORM = "getppid"


def slow_path(time_storm, start_floor, rounds: int) -> dict:
    """ns per system call under off and under the floor, alternating; time_storm(name) ->
    ns per operation, start_floor() -> a started floor process (stop() ends it)."""
    off, floor = [], []
    for _ in range(rounds):
        off.append(time_storm(SLOW_PATH_STORM))
        process = start_floor()
        try:
            floor.append(time_storm(SLOW_PATH_STORM))
        finally:
            process.stop()
    extra = [f - o for f, o in zip(floor, off)]
    return {"off_ns": statistics.median(off), "floor_ns": statistics.median(floor),
            "slow_ns": max(0.0, statistics.median(extra)), "min_ns": min(extra), "max_ns": max(extra)}


def bpf_ns_per_op(cost: dict) -> float:
    """All programs' run time per operation, from one storm's program_costs() entry."""
    return sum(ns for _name, _runs, ns in cost["programs"]) / cost["ops"]


def estimate(mine: dict, floor: dict, calls_per_op: float, slow_ns: float, op_ns: float) -> dict:
    """Percentages of one operation's time: the floor's, nsgraph's own, and both (vs nothing)."""
    own_bpf, floor_bpf = bpf_ns_per_op(mine), bpf_ns_per_op(floor)
    floor_ns = slow_ns * calls_per_op + floor_bpf
    own_ns = max(0.0, own_bpf - floor_bpf)
    return {"op_ns": op_ns, "calls_per_op": calls_per_op, "floor_ns": floor_ns, "own_ns": own_ns,
            "floor_pct": floor_ns / op_ns * 100, "own_pct": own_ns / op_ns * 100,
            "vs_off_pct": (floor_ns + own_ns) / op_ns * 100}
