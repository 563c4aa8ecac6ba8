#!/usr/bin/env python3
"""Snapshot speed: take_snapshot() against `lsns -J` and bare readlinks, same processes, same run.

Issue 3 asks for a snapshot of 10 000 processes in <= 0.4 s and >= 3x faster
than `lsns -J`.  This starts N sleeping processes spread over a few namespace
sets (host; new uts+ipc; new net+mnt; new user+pid), measures, and kills them
all (each group is its own session, killed with killpg; nothing is left behind
even on Ctrl-C).

    sudo .venv/bin/python bench/bench_snapshot.py              # 1000 then 10000
    sudo .venv/bin/python bench/bench_snapshot.py --sizes 2000 --repeat 5

Needs root (unshare, reading every process's ns links).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tracer import nstypes  # noqa: E402
from tracer.exitcodes import EXIT_NO_PRIVILEGES, EXIT_OK  # noqa: E402
from tracer.host.snapshot import take_snapshot  # noqa: E402

GROUPS = (
    [],
    ["unshare", "--uts", "--ipc"],
    ["unshare", "--net", "--mount"],
    ["unshare", "--user", "--map-root-user", "--pid", "--fork", "--mount-proc"],
)


def start_sleepers(n: int) -> list:
    """n `sleep` processes in len(GROUPS) namespace sets; returns the group leaders."""
    leaders = []
    per = [n // len(GROUPS) + (1 if i < n % len(GROUPS) else 0) for i in range(len(GROUPS))]
    for prefix, k in zip(GROUPS, per):
        # One shell per group forks the sleepers: no Python process per child.
        script = ("i=0; while [ $i -lt %d ]; do sleep 3600 >/dev/null & i=$((i+1)); done; "
                  "echo ready; wait" % k)
        leaders.append(subprocess.Popen(prefix + ["sh", "-c", script], start_new_session=True,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE))
    return leaders


def wait_ready(leaders: list) -> None:
    """Each group's shell says "ready" once it has forked all its sleepers."""
    for leader in leaders:
        line = leader.stdout.readline()
        if line.strip() != b"ready":
            raise SystemExit("a sleeper group failed to start (pid limit? memory?)")


def stop_sleepers(leaders: list) -> None:
    for leader in leaders:
        try:
            os.killpg(leader.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for leader in leaders:
        leader.wait()
        leader.stdout.close()


def bare_readlinks() -> int:
    n = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        for slot in nstypes.NS_SLOTS:
            try:
                os.readlink("/proc/%s/ns/%s" % (name, slot))
                n += 1
            except OSError:
                pass
    return n


def lsns_json() -> None:
    subprocess.run(["lsns", "-J"], stdout=subprocess.DEVNULL, check=True)


def timed(fn, repeat: int) -> list:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def measure(n: int, repeat: int) -> dict:
    leaders = start_sleepers(n)
    try:
        wait_ready(leaders)
        time.sleep(0.5)            # the last forks exec sleep

        bare_readlinks()           # first touch allocates the /proc dentries: not timed
        results = {"bare": [], "lsns": [], "snap": [], "snap_nofd": [], "snap_serial": []}
        phases = []
        for _ in range(repeat):    # interleaved so that load from others hits all alike
            results["bare"] += timed(bare_readlinks, 1)
            results["lsns"] += timed(lsns_json, 1)
            t0 = time.perf_counter()
            snap = take_snapshot()
            results["snap"].append(time.perf_counter() - t0)
            phases.append(snap.timings)
            results["snap_nofd"] += timed(lambda: take_snapshot(scan_fds=False), 1)
            results["snap_serial"] += timed(lambda: take_snapshot(workers=1), 1)
        med = {k: statistics.median(v) for k, v in results.items()}
        best = {k: min(v) for k, v in results.items()}
        phase_med = {k: statistics.median(p[k] for p in phases) for k in phases[0]}
        return {"n": n, "procs": len(snap.processes), "namespaces": len(snap.namespaces),
                "errors": dict(snap.errors), "med": med, "best": best, "phases": phase_med}
    finally:
        stop_sleepers(leaders)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("run as root: the snapshot reads every process's namespace links", file=sys.stderr)
        return EXIT_NO_PRIVILEGES

    rows = []
    for n in args.sizes:
        r = measure(n, args.repeat)
        rows.append(r)
        m, b, ph = r["med"], r["best"], r["phases"]
        print("N=%d sleepers: %d processes, %d namespaces, errors %s"
              % (n, r["procs"], r["namespaces"], r["errors"]))
        for key, label in (("bare", "bare readlinks"), ("lsns", "lsns -J"),
                           ("snap", "take_snapshot()"), ("snap_nofd", "take_snapshot(scan_fds=False)"),
                           ("snap_serial", "take_snapshot(workers=1)")):
            print("  %-30s median %7.1f ms  best %7.1f ms  %5.1f us/process"
                  % (label, m[key] * 1e3, b[key] * 1e3, m[key] * 1e6 / r["procs"]))
        print("  snapshot phases (median ms): " +
              ", ".join("%s %.1f" % (k, v * 1e3) for k, v in ph.items()))
        print("  lsns -J / take_snapshot() = %.2fx (median), %.2fx (best); without fd scan %.2fx; "
              "one process %.2fx; take_snapshot() / bare readlinks = %.2fx"
              % (m["lsns"] / m["snap"], b["lsns"] / b["snap"], m["lsns"] / m["snap_nofd"],
                 m["lsns"] / m["snap_serial"], m["snap"] / m["bare"]))
        print("  target: <= 400 ms at 10 000 processes and >= 3x faster than lsns -J")
    if len(rows) > 1:
        lo, hi = rows[0], rows[-1]
        scale = hi["procs"] / lo["procs"]
        print("growth %d -> %d processes (x%.1f), median time ratio:" % (lo["procs"], hi["procs"], scale))
        for key, label in (("snap", "take_snapshot()"), ("snap_nofd", "  scan_fds=False"),
                           ("snap_serial", "  workers=1"), ("lsns", "lsns -J"), ("bare", "bare readlinks")):
            print("  %-18s x%.2f" % (label, hi["med"][key] / lo["med"][key]))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
