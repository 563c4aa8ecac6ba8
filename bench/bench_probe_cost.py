#!/usr/bin/env python3
"""What nsgraph's probes cost, against nothing and against the floor, in one run.

    sudo .venv/bin/python bench/bench_probe_cost.py [--rounds 7] [--quick] [--json FILE]

The floor is a set of BPF programs that return at once, attached to exactly the
hooks the tracer uses (read from the running tracer's own programs, so it follows
the tracepoint or the fentry path): what any tracer on those hooks must pay.

1. Per-program cost, from the kernel's own counters (run_cnt, run_time_ns, switched
   on with BPF_ENABLE_STATS for this stage only): for `nsgraph trace` (namespace
   events only) and `nsgraph serve` (process events on, the dashboard's consumer),
   each storm, each program: runs per operation, ns per run, ns per operation; the
   floor's beside them; and ns per event handed to the ring buffer.
2. The same overhead estimated from the kernel's counters (estimate.py): the
   slow path every system call pays while a syscall tracepoint is attached
   (getppid under off and floor) times the system calls an operation makes
   (counted in its own cgroup, syscalls.py), plus the floor's and nsgraph's BPF
   time per operation, over the operation's time with nothing attached.  Precise
   where the wall clock is not: printed as floor, nsgraph's own, and both.
3. Wall-clock overhead: every storm under off / floor / nsgraph, for `trace` and
   `serve`, in rotating order over several rounds (identical runs differ by up to
   +-10 % on a shared 2-core VM: medians and the spread are reported).  The
   workload runs on CPU 0, the tracer on the others.
4. Loss: the kernel's counters (ring buffer full, syscall entries not remembered)
   after each storm, per mode.
5. serve's CPU time, idle and with 1 000 namespace events/s (setns calls that each
   move the caller between two uts namespaces), as a share of one core.
6. The highest rate of back-to-back unshare(CLONE_NEWUTS) calls `nsgraph serve`
   follows for 5 s without loss (the kernel's ring-buffer-full counter).

Storms (bench/workload.c): fork+exit, fork+exec, back-to-back unshare(CLONE_NEWUTS),
fork+unshare+exit, back-to-back setns() switching uts namespaces, and getppid()
(a system call nsgraph does not trace: what the hooks cost everything else).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

from bench import estimate, syscalls  # noqa: E402
from bench.bench_tracer import TRACER_CPUS, WORKLOAD_CPUS, build_workload  # noqa: E402
from tracer.exitcodes import EXIT_FAILURE, EXIT_NO_PRIVILEGES, EXIT_OK, EXIT_USAGE  # noqa: E402
from tracer.kernel import bpfstats  # noqa: E402

NSGRAPH = [sys.executable, "-m", "tracer.cli"]

# name -> (workload mode, operations, what one operation is)
STORMS = {
    "fork": ("fork", 2000, "fork+exit"),
    "forkexec": ("forkexec", 600, "fork+exec+exit"),
    "unshare": ("unshare", 150000, "unshare(CLONE_NEWUTS)"),
    "forkunshare": ("forkunshare", 2000, "fork+unshare+exit"),
    "setns": ("setns", 150000, "setns() switching uts"),
    "getppid": ("getppid", 2000000, "getppid() (untraced)"),
}
QUICK_SCALE = 0.25


def _pin_tracer():
    os.sched_setaffinity(0, TRACER_CPUS)


class Process:
    """A tracer or floor process started for a measurement, stopped with SIGINT."""

    def __init__(self, label: str, argv, ready: str, stream: str = "stderr", env=None):
        self.label = label
        self.argv = argv
        self.ready = ready
        self.stream = stream
        self.env = env
        self.proc = None
        self.output = []

    def start(self, timeout: float = 120.0) -> "Process":
        self.proc = subprocess.Popen(
            self.argv, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE if self.stream == "stdout"
            else subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, preexec_fn=_pin_tracer, env=self.env)
        pipe = self.proc.stdout if self.stream == "stdout" else self.proc.stderr
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = pipe.readline()
            if not line:
                raise SystemExit("%s exited before it was ready (rc=%s): %s" % (
                    self.label, self.proc.wait(), "".join(self.output[-20:]) + self.proc.stderr.read()))
            self.output.append(line)
            if self.ready in line:
                # Keep draining so that a chatty process never blocks on a full pipe.
                import threading
                threading.Thread(target=lambda: [self.output.append(x) for x in pipe], daemon=True).start()
                return self
        raise SystemExit("%s was not ready within %.0f s" % (self.label, timeout))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def prog_ids(self):
        return bpfstats.prog_ids_of(self.proc.pid)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def trace_mode() -> Process:
    return Process("nsgraph trace", NSGRAPH + ["trace", "--json"], "Tracing namespace events")


def serve_mode(tmp: str) -> Process:
    db = os.path.join(tmp, "history-%d.db" % time.monotonic_ns())
    return Process("nsgraph serve", NSGRAPH + ["serve", "--port", "0", "--read-only", "--db", db,
                                               "--token-file", os.path.join(tmp, "token")],
                   "running: tracing started")


def floor_mode(hooks) -> Process:
    return Process("floor", [sys.executable, os.path.join(HERE, "floor.py"), *hooks], "floor ready", "stdout")


class Off:
    label = "off"

    def start(self):
        return self

    def stop(self):
        pass


def hooks_of(mode: Process) -> list:
    """The BCC program names of a running tracer: what its floor attaches to."""
    samples = bpfstats.sample_all(mode.prog_ids())
    return sorted(s.name for s in samples.values())


def run_storm(workload: str, storm: str, scale: float) -> float:
    mode, count, _what = STORMS[storm]
    count = max(1, int(count * scale))
    started = time.perf_counter()
    subprocess.run([workload, mode, str(count)], check=True, stdout=subprocess.DEVNULL,
                   preexec_fn=lambda: os.sched_setaffinity(0, WORKLOAD_CPUS))
    return time.perf_counter() - started


def storm_ops(storm: str, scale: float) -> int:
    return max(1, int(STORMS[storm][1] * scale))


def kernel_counters(mode: Process):
    """(events, ringbuf_full, pending_full) from the tracer's per-CPU counters map."""
    samples = bpfstats.sample_all(mode.prog_ids())
    map_ids = sorted({m for s in samples.values() for m in s.map_ids})
    sums = bpfstats.percpu_array_sums(map_ids, "counters")
    if not sums:
        return None
    return {"events": sums[2], "ringbuf_full": sums[0], "pending_full": sums[1]}


# -- stage 1: per-program cost ---------------------------------------------------------------

def program_costs(mode: Process, workload: str, storms, scale: float) -> dict:
    """storm -> {"programs": [(name, runs, ns)], "ops": n, "events": n, "lost": n}, stats switched on."""
    out = {}
    ids = mode.prog_ids()
    with bpfstats.enabled():
        for storm in storms:
            before = bpfstats.sample_all(ids)
            c0 = kernel_counters(mode)
            run_storm(workload, storm, scale)
            time.sleep(0.2)
            after = bpfstats.sample_all(ids)
            c1 = kernel_counters(mode)
            entry = {"ops": storm_ops(storm, scale),
                     "programs": [(bpfstats.short_name(c.name), c.runs, c.run_time_ns)
                                  for c in bpfstats.diff(before, after)]}
            if c0 and c1:
                entry["events"] = c1["events"] - c0["events"]
                entry["lost"] = (c1["ringbuf_full"] - c0["ringbuf_full"]) + (c1["pending_full"] - c0["pending_full"])
            out[storm] = entry
    return out


def print_costs(label: str, mine: dict, floor: dict) -> None:
    print("-- %s: BPF time per program (kernel counters), floor beside" % label)
    for storm, entry in mine.items():
        ops = entry["ops"]
        fl = {name: (runs, ns) for name, runs, ns in floor.get(storm, {}).get("programs", [])}
        total = sum(ns for _n, _r, ns in entry["programs"]) / ops
        ftotal = sum(ns for _r, ns in fl.values()) / ops
        events = entry.get("events")
        print("   %s (%d x %s): %.0f ns per operation (floor %.0f, nsgraph's own %.0f)%s%s" % (
            storm, ops, STORMS[storm][2], total, ftotal, total - ftotal,
            "; %.2f events per operation, %.0f ns per event" % (events / ops, total * ops / events)
            if events else "; no events",
            "; LOST %d" % entry["lost"] if entry.get("lost") else ""))
        for name, runs, ns in entry["programs"]:
            if not runs:
                continue
            fr, fns = fl.get(name, (0, 0))
            print("      %-22s %6.2f runs/op %7.0f ns/run %7.0f ns/op   | floor %5.0f ns/run" % (
                name, runs / ops, ns / runs, ns / ops, fns / fr if fr else float("nan")))


# -- stage 2: the overhead from the kernel's counters ------------------------------------------

def counter_estimate(workload: str, storms, modes, hooks: dict, results: dict, rounds: int, scale: float):
    """storm -> mode -> estimate.estimate(); None when system calls cannot be counted here."""
    measured = [s for s in storms if s != estimate.SLOW_PATH_STORM]
    print("== estimate from the kernel's counters: slow path x system calls + BPF time, over the "
          "operation's time with nothing attached")
    try:
        calls = syscalls.per_operation(workload, {STORMS[s][0]: storm_ops(s, QUICK_SCALE) for s in measured},
                                       WORKLOAD_CPUS)
    except (syscalls.CountError, OSError, subprocess.CalledProcessError) as exc:
        print("   skipped: %s" % exc)
        return None

    def ns_per_op(storm):
        return run_storm(workload, storm, scale) / storm_ops(storm, scale) * 1e9
    slow = estimate.slow_path(ns_per_op, lambda: floor_mode(hooks[modes[-1]]).start(), rounds)
    print("   getppid: %.0f ns off, %.0f ns under the floor: the slow path costs %.1f ns a system call "
          "(rounds %+.1f..%+.1f)" % (slow["off_ns"], slow["floor_ns"], slow["slow_ns"], slow["min_ns"],
                                       slow["max_ns"]))
    out = {"slow_path": slow, "calls_per_op": calls, "storms": {}}
    print("   %-12s %-6s %9s %6s %-22s %-22s %s" % ("storm", "mode", "op (off)", "calls", "floor",
                                                 "nsgraph's own", "nsgraph vs nothing"))
    for storm in measured:
        op_ns = statistics.median(ns_per_op(storm) for _ in range(5))
        for label in modes:
            e = estimate.estimate(results["cost_" + label][storm], results["cost_floor_" + label][storm],
                                  calls[STORMS[storm][0]], slow["slow_ns"], op_ns)
            out["storms"].setdefault(storm, {})[label] = e
            print("   %-12s %-6s %7.0f ns %6.0f %6.0f ns (%+5.2f %%)   %6.0f ns (%+5.2f %%)   %+5.2f %%" % (
                storm, label, op_ns, e["calls_per_op"], e["floor_ns"], e["floor_pct"], e["own_ns"],
                e["own_pct"], e["vs_off_pct"]))
    return out


# -- stage 3: wall clock -----------------------------------------------------------------------

def wall_clock(workload: str, makers: dict, storms, rounds: int, scale: float) -> dict:
    """mode label -> storm -> [seconds per round]."""
    times = {label: {storm: [] for storm in storms} for label in makers}
    labels = list(makers)
    for r in range(rounds):
        order = labels[r % len(labels):] + labels[:r % len(labels)]
        for label in order:
            mode = makers[label]().start()
            try:
                time.sleep(0.5)
                for storm in storms:
                    times[label][storm].append(run_storm(workload, storm, scale))
            finally:
                mode.stop()
        print("   round %d/%d done (order: %s)" % (r + 1, rounds, ", ".join(order)), flush=True)
    return times


def ratio_summary(times: dict, num: str, den: str, storm: str) -> dict:
    ratios = [a / b for a, b in zip(times[num][storm], times[den][storm])]
    return {"median_pct": (statistics.median(ratios) - 1) * 100, "min_pct": (min(ratios) - 1) * 100,
            "max_pct": (max(ratios) - 1) * 100}


# -- stage 5: serve's CPU ------------------------------------------------------------------------

def cpu_seconds(pid: int) -> float:
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks   # utime + stime of every thread


def serve_cpu(workload: str, tmp: str, seconds: float, rate: int) -> dict:
    """serve's CPU share idle and with `rate` namespace events/s, and the records it got in each
    window (on a shared machine other people's processes make events too)."""
    mode = serve_mode(tmp).start()
    try:
        time.sleep(3.0)   # let start-up work (reconcile, first status) finish
        windows = {}
        for label in ("idle", "busy"):
            c0, r0, t0 = cpu_seconds(mode.pid), kernel_counters(mode), time.monotonic()
            if label == "idle":
                time.sleep(seconds)
            else:
                out = subprocess.run([workload, "switch-rate", str(rate), str(seconds)], capture_output=True,
                                     text=True, check=True,
                                     preexec_fn=lambda: os.sched_setaffinity(0, WORKLOAD_CPUS))
                time.sleep(0.5)
            elapsed = time.monotonic() - t0
            r1 = kernel_counters(mode)
            windows[label] = {"cpu_pct": (cpu_seconds(mode.pid) - c0) / elapsed * 100,
                              "records_per_s": (r1["events"] - r0["events"]) / elapsed}
        calls = int(out.stdout.strip())
    finally:
        mode.stop()
    busy, idle = windows["busy"], windows["idle"]
    extra = busy["records_per_s"] - idle["records_per_s"]
    return {"idle_pct": idle["cpu_pct"], "idle_records_per_s": idle["records_per_s"],
            "busy_pct": busy["cpu_pct"], "busy_records_per_s": busy["records_per_s"],
            "rate": calls / seconds,
            "pct_per_1000_per_s": (busy["cpu_pct"] - idle["cpu_pct"]) / extra * 1000 if extra > 0 else None}


# -- stage 6: serve's zero-loss unshare rate ------------------------------------------------

UNSHARE_RATES = (20_000, 50_000, 100_000, 150_000, 200_000, 300_000, 400_000)


def serve_unshare_rates(workload: str, tmp: str, seconds: float) -> list:
    """[(asked, made per s, lost)] for unshare-rate steps under one `nsgraph serve`, up to the first loss."""
    out = []
    mode = serve_mode(tmp).start()
    try:
        for rate in UNSHARE_RATES:
            c0 = kernel_counters(mode)
            run = subprocess.run([workload, "unshare-rate", str(rate), str(seconds)], capture_output=True,
                                 text=True, check=True, preexec_fn=lambda: os.sched_setaffinity(0, WORKLOAD_CPUS))
            time.sleep(1.0)
            c1 = kernel_counters(mode)
            lost = (c1["ringbuf_full"] - c0["ringbuf_full"]) + (c1["pending_full"] - c0["pending_full"])
            made = int(run.stdout.strip()) / seconds
            out.append((rate, made, lost))
            print("   asked %6d/s: made %6.0f/s, lost %d" % (rate, made, lost), flush=True)
            if lost or made < rate * 0.9:
                break
    finally:
        mode.stop()
    return out


def machine_load() -> str:
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    return "load average %s (2 cores; shared with other work)" % " ".join(load)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7, help="wall-clock rounds (each runs every mode)")
    parser.add_argument("--quick", action="store_true", help="smaller storms, 2 rounds (a smoke run)")
    parser.add_argument("--storms", default=",".join(STORMS), help="comma-separated storms to run")
    parser.add_argument("--skip", default="", help="stages to skip: cost,estimate,wall,cpu,rate "
                        "(estimate needs cost)")
    parser.add_argument("--json", metavar="FILE", help="also write every number to FILE")
    parser.add_argument("--modes", default="trace,serve",
                        help="tracer modes to measure: trace, serve or both (serve needs the dashboard's "
                             "packages; a minimal VM has only the tracer's)")
    parser.add_argument("--workload", metavar="BINARY",
                        help="a bench/workload.c built elsewhere (e.g. gcc -static, for a machine with no "
                             "compiler); default: built here with cc")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("run as root (loading eBPF probes, reading BPF statistics)", file=sys.stderr)
        return EXIT_NO_PRIVILEGES
    storms = [s for s in args.storms.split(",") if s]
    unknown = set(storms) - set(STORMS)
    if unknown:
        print("unknown storm(s) %s; known: %s" % (", ".join(sorted(unknown)), ", ".join(STORMS)), file=sys.stderr)
        return EXIT_USAGE
    modes = [m for m in args.modes.split(",") if m]
    if not modes or set(modes) - {"trace", "serve"}:
        print("--modes takes trace, serve or trace,serve", file=sys.stderr)
        return EXIT_USAGE
    cc = shutil.which("cc") or shutil.which("gcc")
    if args.workload:
        if not os.access(args.workload, os.X_OK):
            print("--workload %s is not an executable file" % args.workload, file=sys.stderr)
            return EXIT_USAGE
    elif not cc:
        print("bench needs a C compiler (apt-get install gcc) or --workload BINARY", file=sys.stderr)
        return EXIT_FAILURE
    skip = set(args.skip.split(","))
    if "serve" not in modes:
        skip |= {"cpu", "rate"}                 # both stages measure serve
    scale = QUICK_SCALE if args.quick else 1.0
    rounds = 2 if args.quick else args.rounds
    results = {"machine": machine_load(), "storms": {s: STORMS[s] for s in storms}}
    print("== %s; workload on CPU %s, tracers on CPU %s" % (results["machine"], sorted(WORKLOAD_CPUS),
                                                           sorted(TRACER_CPUS)))
    with tempfile.TemporaryDirectory() as tmp:
        workload = args.workload or build_workload(cc, tmp)
        hooks = {}
        for label, make in (("trace", trace_mode), ("serve", lambda: serve_mode(tmp))):
            if label not in modes:
                continue
            mode = make().start()
            try:
                hooks[label] = hooks_of(mode)
                print("== %s attaches %d programs: %s" % (label, len(hooks[label]),
                                                         ", ".join(map(bpfstats.short_name, hooks[label]))))
                if "cost" not in skip:
                    results["cost_" + label] = program_costs(mode, workload, storms, scale)
            finally:
                mode.stop()
            if "cost" not in skip:
                floor = floor_mode(hooks[label]).start()
                try:
                    results["cost_floor_" + label] = program_costs(floor, workload, storms, scale)
                finally:
                    floor.stop()
                print_costs("nsgraph " + label, results["cost_" + label], results["cost_floor_" + label])
        results["machine_after_cost"] = machine_load()

        if not {"cost", "estimate"} & skip:
            results["estimate"] = counter_estimate(workload, storms, modes, hooks, results, rounds, scale)

        if "wall" not in skip:
            print("== wall clock: %d rounds of every storm under each mode" % rounds)
            makers = {"off": Off}
            if "trace" in modes:
                makers.update({"floor-trace": lambda: floor_mode(hooks["trace"]), "trace": trace_mode})
            if "serve" in modes:
                makers.update({"floor-serve": lambda: floor_mode(hooks["serve"]), "serve": lambda: serve_mode(tmp)})
            times = wall_clock(workload, makers, storms, rounds, scale)
            results["wall_seconds"] = times
            print("   %-12s %-8s %-26s %-26s %s" % ("storm", "mode", "vs nothing (median, range)",
                                                    "vs floor (median, range)", "floor vs nothing"))
            for storm in storms:
                for label in modes:
                    vs_off = ratio_summary(times, label, "off", storm)
                    vs_floor = ratio_summary(times, label, "floor-" + label, storm)
                    floor_off = ratio_summary(times, "floor-" + label, "off", storm)
                    results.setdefault("wall", {}).setdefault(storm, {})[label] = {
                        "vs_off": vs_off, "vs_floor": vs_floor, "floor_vs_off": floor_off}
                    print("   %-12s %-8s %+6.1f %% (%+.1f..%+.1f)      %+6.1f %% (%+.1f..%+.1f)      %+6.1f %%" % (
                        storm, label, vs_off["median_pct"], vs_off["min_pct"], vs_off["max_pct"],
                        vs_floor["median_pct"], vs_floor["min_pct"], vs_floor["max_pct"], floor_off["median_pct"]))

        if "cpu" not in skip:
            seconds = 3.0 if args.quick else 10.0
            c = serve_cpu(workload, tmp, seconds, 1000)
            results["serve_cpu"] = c
            print("== serve CPU: 'idle' %.2f %% of one core (the machine made %.0f records/s meanwhile); "
                  "with %.0f more namespace events/s %.2f %% (%.0f records/s): %s %% of a core per 1 000 "
                  "events/s (targets: <= 0.5 %% idle, <= 5 %% at 1 000/s)" % (
                      c["idle_pct"], c["idle_records_per_s"], c["rate"], c["busy_pct"], c["busy_records_per_s"],
                      "?" if c["pct_per_1000_per_s"] is None else "%.2f" % c["pct_per_1000_per_s"]))
        if "rate" not in skip:
            print("== serve: back-to-back unshare(CLONE_NEWUTS) at stepped rates, 5 s each")
            steps = serve_unshare_rates(workload, tmp, 2.0 if args.quick else 5.0)
            results["serve_unshare_rates"] = steps
            clean = [made for _rate, made, lost in steps if not lost]
            print("   highest zero-loss rate: %s" % ("%.0f unshare/s" % max(clean) if clean else "none"))
        results["machine_end"] = machine_load()
        print("== %s" % results["machine_end"])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
