#!/usr/bin/env python3
"""Tracer benchmark: the consumer's throughput and the tracer's start-up.

    sudo .venv/bin/python bench/bench_tracer.py [--quick] [--seconds 10]

(What the probes cost the traced workload, per program and in wall-clock time,
against nothing and against the floor, is bench/bench_probe_cost.py.)

1. The highest namespace-event rate decoded for 10 s with zero loss: a generator
   makes setns(-1, CLONE_NEWNET) calls (EBADF: a real namespace event that costs
   the kernel almost nothing) at a fixed rate, stepped up until events are lost or
   fewer arrive than were made.  The consumer is the collector (batched decoding)
   with a per-event subscriber, on its own CPU.  Target >= 500 000 events/s.
2. Time from starting `nsgraph trace` to its "Tracing" line.  Target <= 3 s.
   Also the tracer's resident memory.
3. `nsgraph trace --json` end to end (decoding, filtering and the JSON Lines encoder,
   writing to /dev/null): the highest setns rate it follows for 10 s with zero loss,
   from its own summary line ("N events seen, M shown, L lost").

The machine's load average is printed before and after: on a shared machine the
rate depends on what else runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
NSGRAPH = [sys.executable, "-m", "tracer.cli"]

from tracer.exitcodes import EXIT_FAILURE, EXIT_NO_PRIVILEGES, EXIT_OK  # noqa: E402


def build_workload(cc: str, tmp: str) -> str:
    binary = os.path.join(tmp, "workload")
    subprocess.run([cc, "-O2", "-o", binary, os.path.join(HERE, "workload.c")], check=True)
    return binary


# With two or more CPUs the workload runs on CPU 0 and the tracer on the others, in
# both halves of a pair, so that the comparison is not about where the scheduler
# happened to put the parent and its children.
CPUS = sorted(os.sched_getaffinity(0))
WORKLOAD_CPUS = {CPUS[0]}
TRACER_CPUS = set(CPUS[1:]) or {CPUS[0]}


def start_tracer(extra=()):
    """Start `nsgraph trace` and return (process, seconds until its Tracing line)."""
    started = time.monotonic()
    proc = subprocess.Popen(NSGRAPH + ["trace", "--json", *extra], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: os.sched_setaffinity(0, TRACER_CPUS))
    while True:
        line = proc.stderr.readline()
        if not line:
            raise SystemExit("nsgraph trace exited before tracing: rc=%s" % proc.wait())
        if line.startswith("Tracing namespace events"):
            return proc, time.monotonic() - started


def stop_tracer(proc) -> str:
    proc.send_signal(2)
    _out, err = proc.communicate(timeout=30)
    return err.strip().splitlines()[-1] if err.strip() else ""


def rss_mb(pid: int) -> float:
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def rate_run(workload: str, rate: int, seconds: float) -> dict:
    from tracer.kernel.collector import Collector
    from tracer.kernel.probes import ProbeOptions

    counted = {"n": 0}
    target = {"pid": None}

    def on_event(event):
        if event.pid == target["pid"] and event.kind == "setns":
            counted["n"] += 1

    collector = Collector(options=ProbeOptions(proc_events=False))
    collector.subscribe(on_event)
    collector.load()
    stop = threading.Event()

    def poll_on_tracer_cpus():
        os.sched_setaffinity(0, TRACER_CPUS)
        collector.run_forever(stop.is_set)
    poller = threading.Thread(target=poll_on_tracer_cpus, daemon=True)
    poller.start()
    gen = subprocess.Popen([workload, "setns-rate", str(rate), str(seconds)], stdout=subprocess.PIPE, text=True,
                           preexec_fn=lambda: os.sched_setaffinity(0, WORKLOAD_CPUS))
    target["pid"] = gen.pid
    calls = int(gen.communicate()[0].strip())
    time.sleep(0.3)
    stop.set()
    poller.join()
    collector.drain(quiet_ms=200)
    stats = collector.stats()
    collector.stop()
    return {"rate": rate, "calls": calls, "decoded": counted["n"], "lost": stats["lost"],
            "achieved_per_s": calls / seconds}


def json_run(workload: str, rate: int, seconds: float) -> dict:
    """One `nsgraph trace --json` through a setns-rate step: its summary's counts."""
    import re
    proc, _seconds = start_tracer()
    try:
        gen = subprocess.run([workload, "setns-rate", str(rate), str(seconds)], capture_output=True, text=True,
                             check=True, preexec_fn=lambda: os.sched_setaffinity(0, WORKLOAD_CPUS))
        time.sleep(0.5)
    finally:
        summary = stop_tracer(proc)
    m = re.match(r"(\d+) events seen, (\d+) shown, (\d+) lost", summary)
    if not m:
        raise SystemExit("unexpected summary from nsgraph trace: %r" % summary)
    seen, shown, lost = map(int, m.groups())
    calls = int(gen.stdout.strip())
    return {"rate": rate, "calls": calls, "achieved_per_s": calls / seconds, "shown": shown, "lost": lost,
            "encoded_per_s": shown / seconds}


def startup(samples: int) -> dict:
    times, rss = [], []
    for _ in range(samples):
        proc, seconds = start_tracer()
        times.append(seconds)
        rss.append(rss_mb(proc.pid))
        stop_tracer(proc)
    return {"median_s": statistics.median(times), "max_s": max(times), "rss_mb": statistics.median(rss)}


def load_average() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short rate steps (a smoke run)")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each rate step")
    parser.add_argument("--skip", default="", help="stages to skip: startup,rate,json")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("run as root (loading eBPF probes)", file=sys.stderr)
        return EXIT_NO_PRIVILEGES
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        print("bench needs a C compiler: apt-get install gcc", file=sys.stderr)
        return EXIT_FAILURE
    seconds = 2.0 if args.quick else args.seconds
    skip = set(args.skip.split(","))
    print("== load average %s (2 cores; shared with other work); generator on CPU %s, consumer on CPU %s"
          % (load_average(), sorted(WORKLOAD_CPUS), sorted(TRACER_CPUS)))
    with tempfile.TemporaryDirectory() as tmp:
        workload = build_workload(cc, tmp)
        if "startup" not in skip:
            print("== start-up: nsgraph trace until 'Tracing...' (target <= 3 s)")
            s = startup(3 if args.quick else 5)
            print("   median %.2f s, max %.2f s; tracer RSS %.0f MB" % (s["median_s"], s["max_s"], s["rss_mb"]))
        if "rate" not in skip:
            rate_stage(workload, seconds)
        if "json" not in skip:
            json_stage(workload, seconds)
    print("== load average %s at the end" % load_average())
    return EXIT_OK


def rate_stage(workload: str, seconds: float) -> None:
    print("== highest namespace-event rate decoded for %.0f s with zero loss (target >= 500 000/s)" % seconds)
    best = None
    for rate in (200_000, 300_000, 400_000, 500_000, 600_000, 700_000, 800_000, 1_000_000):
        r = rate_run(workload, rate, seconds)
        ok = r["lost"] == 0 and r["decoded"] == r["calls"]
        print("   asked %7d/s: made %8d calls (%7.0f/s), decoded %8d, lost %d -> %s" % (
            rate, r["calls"], r["achieved_per_s"], r["decoded"], r["lost"], "ok" if ok else "LOSS"))
        if not ok:
            break
        best = r
        if r["achieved_per_s"] < rate * 0.9:
            print("   (the generator cannot go faster on this machine)")
            break
    if best:
        print("   highest zero-loss rate: %.0f events/s" % best["achieved_per_s"])
    else:
        print("   no step ran without loss")


def json_stage(workload: str, seconds: float) -> None:
    print("== nsgraph trace --json > /dev/null: highest setns rate with zero loss, %.0f s each" % seconds)
    best = None
    for rate in (100_000, 200_000, 300_000, 400_000, 500_000, 600_000):
        r = json_run(workload, rate, seconds)
        ok = r["lost"] == 0 and r["shown"] >= r["calls"]
        print("   asked %7d/s: made %8d calls (%7.0f/s), %8d JSON lines (%7.0f/s), lost %d -> %s" % (
            rate, r["calls"], r["achieved_per_s"], r["shown"], r["encoded_per_s"], r["lost"],
            "ok" if ok else "LOSS"))
        if not ok:
            break
        best = r
    print("   highest zero-loss rate with --json: %s" % (
        "%.0f events/s" % best["achieved_per_s"] if best else "none"))


if __name__ == "__main__":
    sys.exit(main())
