#!/usr/bin/env python3
"""Soak: `nsgraph serve` under steady events for an hour; RSS sampled every minute (run by hand).

The real serve (eBPF, graph, history, SSE) runs as a subprocess; the C workload
(bench/workload.c mix-rate) makes --rate events per second (failed setns calls,
fork+exit pairs, a uts namespace now and then); --readers SSE clients read
/stream; one client polls /api/status, /api/graph and /api/history/graph every 5 s.
Every minute: RSS, descriptors, threads, CPU, events seen, history database size.
The verdict compares the sample at the end of --warmup with the last one (target:
<= 50 MB growth).  Loopback only; every loop ends at --minutes.

Another program's storm: --burst N forks N children as fast as it can at minute
--burst-at (what a build or a test suite does to a host serve traces).

A busy machine: --hog N starts N busy loops at minute --hog-at for --hog-minutes;
with --cpu C serve and the hogs share CPU C (the workload runs on the others), so serve
falls behind the events by a deterministic amount and must catch up.  Each sample also
shows the anonymous memory (smaps_rollup), Python's allocated blocks, the history
writer's queue and the kernel's losses (from /metrics, where the serve has them);
--repo runs another checkout's serve (an A/B against main with the same hog).

    sudo .venv/bin/python bench/soak_serve.py [--minutes 60] [--warmup 5] [--rate 2000]
    sudo .venv/bin/python bench/soak_serve.py --minutes 12 --warmup 3 --sample-s 15 \\
        --cpu 1 --hog 3 --hog-at 4 --hog-minutes 5 [--repo /work/main]
    sudo .venv/bin/python bench/soak_serve.py --minutes 8 --warmup 3 --sample-s 15 \\
        --burst 200000 --burst-at 4 [--repo /work/main]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tracer.exitcodes import EXIT_NO_PRIVILEGES, EXIT_OK  # noqa: E402
from servectl import Serve, build_workload, die_with_parent, load_text  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def reader(port, token, stop, counts):
    while not stop.is_set():
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", "/stream", headers={"Authorization": "Bearer " + token})
            response = conn.getresponse()
            while not stop.is_set():
                chunk = response.read1(65536)
                if not chunk:
                    break
                counts["bytes"] += len(chunk)
            conn.close()
        except (OSError, http.client.HTTPException):
            counts["errors"] += 1
            stop.wait(1)


def poller(port, token, stop, counts):
    while not stop.wait(5):
        for path in ("/api/status", "/api/graph", "/api/history/graph?at=%f" % (time.time() - 60)):
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                conn.request("GET", path, headers={"Authorization": "Bearer " + token})
                response = conn.getresponse()
                response.read()
                conn.close()
                counts["api_%d" % response.status] = counts.get("api_%d" % response.status, 0) + 1
            except (OSError, http.client.HTTPException):
                counts["api_errors"] = counts.get("api_errors", 0) + 1


class Hog:
    """N busy loops (the machine got busy), pinned to `cpus` when given; ended by stop()."""

    def __init__(self, count: int, cpus=None):
        self.procs = []
        for _ in range(count):
            # Each in its own session: with sched_autogroup the scheduler shares a CPU between
            # sessions, so loops in one session would weigh as one.
            self.procs.append(subprocess.Popen(
                [sys.executable, "-c", "while True: pass"], start_new_session=True,
                preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None))

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.procs = []


def metric_columns(serve) -> dict:
    try:
        m = serve.metrics()
    except Exception:       # an old serve, or a slow answer: the columns stay empty
        return {}
    return {"py_blocks_k": m.get("nsgraph_python_allocated_blocks", -1000) / 1000.0,
            "hist_queued": m.get("nsgraph_history_queued_inputs"),
            "hist_dropped": m.get("nsgraph_history_dropped_inputs_total"),
            "lost": m.get("nsgraph_lost_total")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--warmup", type=float, default=5.0, help="minutes before the baseline sample")
    ap.add_argument("--rate", type=int, default=2000, help="events per second")
    ap.add_argument("--readers", type=int, default=5)
    ap.add_argument("--out", help="write the samples as JSON here")
    ap.add_argument("--repo", default=REPO, help="the checkout whose serve runs (default: this one)")
    ap.add_argument("--sample-s", type=float, default=60.0, help="seconds between samples")
    ap.add_argument("--hog", type=int, default=0, help="busy loops to start at --hog-at")
    ap.add_argument("--hog-at", type=float, default=0.0, help="minute the busy loops start")
    ap.add_argument("--hog-minutes", type=float, default=5.0)
    ap.add_argument("--burst", type=int, default=0, metavar="N",
                    help="at --burst-at, a storm of N fork+exit pairs as fast as they go (another "
                         "program's storm on a shared machine)")
    ap.add_argument("--burst-at", type=float, default=0.0, help="minute the storm starts")
    ap.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                    help="extra environment for serve (e.g. PYTHONMALLOC=malloc); repeatable")
    ap.add_argument("--cpu", type=int, help="serve and the busy loops on this CPU, the workload on the others")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (nsgraph serve loads eBPF probes)", file=sys.stderr)
        return EXIT_NO_PRIVILEGES
    if not (0 < args.minutes <= 180):
        ap.error("--minutes must be in (0, 180]")
    if not (1 <= args.sample_s <= 600):
        ap.error("--sample-s must be in [1, 600]")
    if args.hog < 0 or args.hog > 16 or args.hog_minutes <= 0:
        ap.error("--hog must be in [0, 16] and --hog-minutes above 0")
    all_cpus = os.sched_getaffinity(0)
    if args.cpu is not None and (args.cpu not in all_cpus or len(all_cpus) < 2):
        ap.error("--cpu must be one of %s (and leave another for the workload)" % sorted(all_cpus))
    if not (0 <= args.burst <= 5_000_000) or args.burst_at < 0:
        ap.error("--burst must be in [0, 5000000] and --burst-at at least 0")
    if any("=" not in item for item in args.env):
        ap.error("--env takes NAME=VALUE")
    pinned = {args.cpu} if args.cpu is not None else None
    others = (all_cpus - pinned) if pinned else None
    tmp = tempfile.mkdtemp(prefix="nsgsoak-")
    serve = Serve(args.repo, tmp, label="soak", cpus=pinned, env=dict(item.split("=", 1) for item in args.env))
    stop = threading.Event()
    counts = {"bytes": 0, "errors": 0}
    samples = []
    workload = hog = burst = None
    try:
        serve.wait_running()
        binary = build_workload(tmp)
        total = (args.minutes + args.warmup) * 60
        def workload_child():      # dies with the soak, like serve (a killed soak left it running)
            die_with_parent()
            if others:
                os.sched_setaffinity(0, others)
        workload = subprocess.Popen([binary, "mix-rate", str(args.rate), str(total)], stdout=subprocess.PIPE,
                                    preexec_fn=workload_child)
        threads = [threading.Thread(target=reader, args=(serve.port, serve.token, stop, counts), daemon=True)
                   for _ in range(args.readers)]
        threads.append(threading.Thread(target=poller, args=(serve.port, serve.token, stop, counts), daemon=True))
        for t in threads:
            t.start()
        start = time.monotonic()
        print("%s (serve from %s%s)" % (load_text(), args.repo, "".join(" " + e for e in args.env)), flush=True)
        print("minute  rss_mb  anon_mb  pyblk_k  hist_q  hist_drop   lost  recon  procs  fds  threads  cpu_s   "
              "events  db_mb  load  hog", flush=True)
        n = 0
        end_s = (args.minutes + args.warmup) * 60
        while n * args.sample_s <= end_s:
            minute = n * args.sample_s / 60.0
            if args.hog and hog is None and args.hog_at <= minute < args.hog_at + args.hog_minutes:
                hog = Hog(args.hog, pinned)
            elif hog is not None and minute >= args.hog_at + args.hog_minutes:
                hog.stop()
            if args.burst and burst is None and minute >= args.burst_at:
                burst = subprocess.Popen([binary, "fork", str(args.burst)], preexec_fn=die_with_parent)
            status = {}
            try:
                status = serve.status(timeout=30)
            except Exception as exc:     # a sample must not end the soak
                status = {"error": str(exc)}
            counters = status.get("counters") or {}
            db = os.path.join(tmp, "soak.db")
            db_mb = sum(os.path.getsize(p) for p in (db, db + "-wal") if os.path.exists(p)) / 2**20
            sample = {"minute": round(minute, 2), "rss_mb": round(serve.rss_mb(), 1),
                      "anon_mb": round(serve.anon_mb(), 1), "fds": serve.fds(),
                      "threads": serve.threads(), "cpu_s": round(serve.cpu_seconds(), 1),
                      "events": counters.get("events"), "reconciles": counters.get("reconciles"),
                      "procs": counters.get("processes"), "ns_kept": counters.get("namespaces_ended_kept"),
                      "db_mb": round(db_mb, 1),
                      "warnings": status.get("warnings"), "load": os.getloadavg()[0],
                      "hog": bool(hog and hog.procs)}
            sample.update(metric_columns(serve))
            samples.append(sample)
            print("%6.2f  %6.1f  %7.1f  %7.0f  %6s  %9s  %5s  %5s  %5s  %4d  %7d  %6.1f  %7s  %5.1f  %4.1f  %s" % (
                minute, sample["rss_mb"], sample["anon_mb"], sample.get("py_blocks_k", -1),
                _num(sample.get("hist_queued")), _num(sample.get("hist_dropped")), _num(sample.get("lost")),
                _num(sample["reconciles"]), _num(sample["procs"]), sample["fds"], sample["threads"],
                sample["cpu_s"], sample["events"], sample["db_mb"], sample["load"],
                "hog" if sample["hog"] else ""), flush=True)
            n += 1
            time.sleep(max(0.0, start + n * args.sample_s - time.monotonic()))
            if serve.proc.poll() is not None:
                print("nsgraph serve exited (%s); see %s" % (serve.proc.returncode, serve.log_path))
                break
    finally:
        stop.set()
        if hog is not None:
            hog.stop()
        for child in (workload, burst):
            if child is not None and child.poll() is None:
                child.terminate()
        serve.stop()
    base = next((s for s in samples if s["minute"] >= args.warmup), samples[0] if samples else None)
    if base and samples:
        growth = samples[-1]["rss_mb"] - base["rss_mb"]
        peak = max(s["rss_mb"] for s in samples if s["minute"] >= args.warmup)
        print("RSS after warm-up %.1f MB, peak %.1f MB, at the end %.1f MB: growth %.1f MB (target <= 50); "
              "SSE bytes read %d, errors %d; %s" % (base["rss_mb"], peak, samples[-1]["rss_mb"], growth,
                                                   counts["bytes"], counts["errors"],
                                                   {k: v for k, v in counts.items() if k.startswith("api")}))
    before_hog = [s for s in samples if s["minute"] < args.hog_at]
    if args.hog and before_hog and samples[-1]["minute"] >= args.hog_at + args.hog_minutes:
        pre = before_hog[-1]
        peak = max(s["rss_mb"] for s in samples)
        print("busy machine (%d busy loops, minutes %g-%g): RSS before %.1f MB, peak %.1f MB, at the end %.1f MB "
              "(%+.1f MB kept); anonymous %.1f -> %.1f MB; Python blocks %.0fk -> %.0fk" % (
                  args.hog, args.hog_at, args.hog_at + args.hog_minutes, pre["rss_mb"], peak,
                  samples[-1]["rss_mb"], samples[-1]["rss_mb"] - pre["rss_mb"], pre["anon_mb"],
                  samples[-1]["anon_mb"], pre.get("py_blocks_k", -1), samples[-1].get("py_blocks_k", -1)))
    before_burst = [s for s in samples if s["minute"] < args.burst_at]
    if args.burst and before_burst and len(samples) > len(before_burst):
        pre = before_burst[-1]
        print("storm (%d forks at minute %g): RSS before %.1f MB, peak %.1f MB, at the end %.1f MB (%+.1f MB kept); "
              "history inputs dropped %s" % (
                  args.burst, args.burst_at, pre["rss_mb"], max(s["rss_mb"] for s in samples),
                  samples[-1]["rss_mb"], samples[-1]["rss_mb"] - pre["rss_mb"], _num(samples[-1].get("hist_dropped"))))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"samples": samples, "counts": counts, "args": vars(args)}, f, indent=1)
    return EXIT_OK


def _num(value) -> str:
    return "-" if value is None else "%d" % value


if __name__ == "__main__":
    sys.exit(main())
