#!/usr/bin/env python3
"""What the targeted refresh (tracer/host/nsrefresh.py) costs: per event, per round, and under
a namespace storm (pins made and removed, user namespaces made by a process that maps
itself), with the refresh on and off in alternating phases of one run.

Runs the real service in this process (eBPF probes, graph, maintenance tick), so the
CPU time of this process (time.process_time: every thread) is serve's minus the HTTP
layer; the storm runs in child processes, not counted.  Prints the refresh's own
counters (rounds, the most rounds in any one second, time per round) and the CPU
ratio on/off, medians over the pairs with the spread.

    sudo .venv/bin/python bench/bench_refresh.py [--pairs 3] [--phase 8]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tracer.exitcodes import EXIT_FAILURE, EXIT_NO_PRIVILEGES, EXIT_OK  # noqa: E402

CLONE_NEWNET, CLONE_NEWUSER = 0x40000000, 0x10000000
MS_BIND, MNT_DETACH = 4096, 2


def storm(deadline: float, budget: int, tag: str) -> int:
    """In a child: pin a netns and unpin it, and make a mapped user namespace, until the
    deadline or the budget; returns the namespace changes made."""
    libc = ctypes.CDLL(None, use_errno=True)
    os.makedirs("/run/netns", exist_ok=True)
    made = 0
    while time.monotonic() < deadline and made < budget:
        path = "/run/netns/nsgbench-%s-%d" % (tag, made)
        open(path, "w").close()
        pid = os.fork()
        if pid == 0:
            pinned = False
            try:
                pinned = libc.unshare(CLONE_NEWNET) == 0 and \
                    libc.mount(b"/proc/self/ns/net", path.encode(), None, MS_BIND, None) == 0
            finally:
                os._exit(EXIT_OK if pinned else EXIT_FAILURE)
        os.waitpid(pid, 0)
        libc.umount2(path.encode(), MNT_DETACH)
        os.unlink(path)
        pid = os.fork()
        if pid == 0:
            try:
                if libc.unshare(CLONE_NEWUSER) == 0:
                    with open("/proc/self/uid_map", "w") as f:
                        f.write("0 65534 1\n")
            finally:
                os._exit(EXIT_OK)
        os.waitpid(pid, 0)
        made += 3          # a pin, an unpin, a user namespace
    return made


def per_event_cost(n: int = 200_000) -> float:
    """Microseconds per note_event() call for an event that makes no user namespace (most)."""
    from tracer.events.event import Event
    from tracer.host.nsrefresh import TargetedRefresh
    refresh = TargetedRefresh(lambda t, i: True)
    event = Event("unshare", 1, time.time(), 10, 10, 1, 0, 10, "unshare", syscall="unshare",
                  ns={"uts": 4026532999}, raw_flags=0x04000000)
    t0 = time.perf_counter()
    for _ in range(n):
        refresh.note_event(event)
    return (time.perf_counter() - t0) / n * 1e6


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--phase", type=float, default=8.0, help="seconds per phase")
    parser.add_argument("--budget", type=int, default=30_000, help="namespace changes per phase at most")
    parser.add_argument("--storm-child", nargs=3, metavar=("SECONDS", "BUDGET", "TAG"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.storm_child:
        seconds, budget, tag = args.storm_child
        print(storm(time.monotonic() + min(float(seconds), 600.0), int(budget), tag))
        return EXIT_OK
    if os.geteuid() != 0:
        print("bench_refresh: needs root (eBPF, mounts)", file=sys.stderr)
        return EXIT_NO_PRIVILEGES
    from tracer.service import NsgraphService, ServiceConfig
    print("note_event: %.3f us per event that makes no user namespace" % per_event_cost())
    svc = NsgraphService(ServiceConfig(db="none", docker=False))
    if not svc.start():
        print("bench_refresh: %s" % svc.status.error, file=sys.stderr)
        return EXIT_FAILURE
    refresh = svc.refresh
    results = {"on": [], "off": []}
    try:
        for pair in range(args.pairs):
            for mode in (("on", "off") if pair % 2 == 0 else ("off", "on")):
                svc.refresh = refresh if mode == "on" else None
                before = dict(refresh.stats())
                cpu0, wall0 = time.process_time(), time.monotonic()
                # A child process (not a fork of this threaded one) makes the storm.
                made = subprocess.run([sys.executable, os.path.abspath(__file__), "--storm-child",
                                       str(args.phase), str(args.budget), "%d%s" % (pair, mode)],
                                      capture_output=True, text=True, check=True).stdout.strip()
                svc.collector.sync(timeout=10)
                time.sleep(0.5)                 # the last round
                cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
                after = refresh.stats()
                delta = {k: after.get(k, 0) - before.get(k, 0) for k in ("rounds", "ops", "busy_us", "mount_reads",
                                                                          "user_reads", "user_noted")}
                results[mode].append(cpu / wall)
                print("pair %d %-3s: %s namespace changes; serve CPU %5.1f%% of a core; refresh %s; load %.1f" % (
                    pair, mode, made, 100 * cpu / wall, delta, os.getloadavg()[0]))
        stats = refresh.stats()
    finally:
        svc.refresh = refresh
        svc.stop()
    on, off = statistics.median(results["on"]), statistics.median(results["off"])
    print("serve CPU under the storm: on %.1f%% (%s), off %.1f%% (%s) of a core; ratio on/off %.2f" % (
        100 * on, ", ".join("%.1f" % (100 * x) for x in results["on"]), 100 * off,
        ", ".join("%.1f" % (100 * x) for x in results["off"]), on / off if off else float("nan")))
    print("refresh: at most %d rounds in one second (bound: 1/min_interval = %d); longest round %d us; "
          "mean round %.0f us; %d user namespaces read, %d dropped, %d overflowed" % (
              stats.get("max_rounds_per_s", 0), round(1 / refresh.min_interval), stats.get("max_round_us", 0),
              stats.get("busy_us", 0) / max(1, stats.get("rounds", 1)), stats.get("user_reads", 0),
              stats.get("user_dropped", 0), stats.get("user_overflow", 0)))
    print("(shared machine: numbers vary with the other helpers' load)")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
