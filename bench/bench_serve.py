#!/usr/bin/env python3
"""`nsgraph serve` under abuse: the authenticated user's latency, serve's CPU and memory.

For each server (--before: a checkout of the old code, e.g. main with Werkzeug's
development server; --after: this checkout), in alternating pairs within one run
(the machine is shared: medians and spread, and the load, are printed):
  1. start the real `nsgraph serve` (eBPF, graph, history) with RLIMIT_NOFILE 1 024,
     what a systemd unit without LimitNOFILE= gives; wait for "running";
  2. --rate events per second from bench/workload.c (mix-rate);
  3. bench/loadgen.py opens --idle idle connections, --slow slow-header connections and
     --sse /stream clients (half of them stop reading), reopening what the server closes;
  4. meanwhile the authenticated user GETs /api/status on a new connection every 0.2 s
     (a failure or more than 5 s counts as 5 000 ms);
  5. serve's CPU (user+system seconds / wall seconds) and RSS (before the flood, peak).
Target: p99 <= 300 ms.  Loopback only; every loop ends after --seconds.

    sudo .venv/bin/python bench/bench_serve.py --before /tmp/nsgraph-main [--pairs 2] [--seconds 60]
(a checkout of main: mkdir /tmp/nsgraph-main && git -C /work/main archive main | tar -x -C /tmp/nsgraph-main)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
from tracer.exitcodes import EXIT_NO_PRIVILEGES, EXIT_OK  # noqa: E402
from loadgen import probe  # noqa: E402
from servectl import Serve, build_workload, load_text  # noqa: E402

REPO = os.path.dirname(HERE)
TARGET_P99_MS = 300.0


def one_run(label, repo, args, tmp, workload) -> dict:
    serve = Serve(repo, os.path.join(tmp, label), label=label)
    result = {"label": label, "load_start": os.getloadavg()[0]}
    procs = []
    try:
        serve.wait_running()
        time.sleep(3)
        result["rss_before_mb"] = serve.rss_mb()
        cpu0, t0 = serve.cpu_seconds(), time.monotonic()
        procs.append(subprocess.Popen([workload, "mix-rate", str(args.rate), str(args.seconds + 5)],
                                      stdout=subprocess.DEVNULL))
        attacker = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "loadgen.py"), "--port", str(serve.port), "--token",
             serve.token, "--idle", str(args.idle), "--slow", str(args.slow), "--sse", str(args.sse),
             "--seconds", str(args.seconds)], stdout=subprocess.PIPE, text=True)
        procs.append(attacker)
        peak = {"rss": 0.0, "fds": 0, "threads": 0}
        stop = threading.Event()

        def sample():
            while not stop.wait(1.0):
                try:
                    peak["rss"] = max(peak["rss"], serve.rss_mb())
                    peak["fds"] = max(peak["fds"], serve.fds())
                    peak["threads"] = max(peak["threads"], serve.threads())
                except OSError:
                    return
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        time.sleep(3)                      # let the flood establish itself
        result.update(probe(serve.port, serve.token, args.seconds - 5))
        try:
            result["cpu_cores"] = (serve.cpu_seconds() - cpu0) / (time.monotonic() - t0)
        except OSError:
            result["cpu_cores"] = None
        out, _ = attacker.communicate(timeout=args.seconds + 60)
        stop.set()
        result["attacker"] = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
        result["rss_peak_mb"] = peak["rss"]
        result["fds_peak"] = peak["fds"]
        result["threads_peak"] = peak["threads"]
        try:
            status = serve.status(timeout=10)
            result["warnings"] = status.get("warnings")
            result["events"] = (status.get("counters") or {}).get("events")
        except Exception as exc:            # the old server may not answer at all any more
            result["warnings"] = ["status unreadable: %s" % exc]
        result["serve_alive"] = serve.proc.poll() is None
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        serve.stop()
    result["load_end"] = os.getloadavg()[0]
    return result


def fmt(values, unit="", digits=0):
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    med = statistics.median(values)
    text = "%.*f%s" % (digits, med, unit)
    if len(values) > 1:
        text += " (%.*f-%.*f)" % (digits, min(values), digits, max(values))
    return text


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", help="a checkout of the old code (main); omitted: measure --after only")
    ap.add_argument("--after", default=REPO)
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--idle", type=int, default=1100)
    ap.add_argument("--slow", type=int, default=500)
    ap.add_argument("--sse", type=int, default=200)
    ap.add_argument("--rate", type=int, default=5000, help="events per second (workload mix-rate)")
    ap.add_argument("--json", help="write every run's numbers here")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (nsgraph serve loads eBPF probes)", file=sys.stderr)
        return EXIT_NO_PRIVILEGES
    if not (10 <= args.seconds <= 600) or not (1 <= args.pairs <= 5):
        ap.error("--seconds must be 10..600 and --pairs 1..5 (bounded runs)")
    tmp = tempfile.mkdtemp(prefix="nsgbench-serve-")
    workload = build_workload(tmp)
    servers = [("after", args.after)] + ([("before", args.before)] if args.before else [])
    runs = []
    print("%d pair(s) of %.0f s: %d idle + %d slow-header + %d SSE connections, %d events/s; %s; "
          "shared machine" % (args.pairs, args.seconds, args.idle, args.slow, args.sse, args.rate,
                              load_text()), flush=True)
    for i in range(args.pairs):
        order = servers if i % 2 else list(reversed(servers))
        for label, repo in order:
            run = one_run(label, repo, args, tmp, workload)
            runs.append(run)
            print("  %-6s p50 %s ms  p99 %s ms  failed %d/%d  cpu %.2f cores  rss %.0f -> %.0f MB  fds %d  "
                  "threads %d  sse ok %s / 503 %s  closed %s  load %.1f->%.1f  alive %s" % (
                      label, fmt([run.get("p50_ms")]), fmt([run.get("p99_ms")]), run.get("failures", -1),
                      run.get("requests", 0), run.get("cpu_cores") or -1, run.get("rss_before_mb", 0),
                      run.get("rss_peak_mb", 0), run.get("fds_peak", 0), run.get("threads_peak", 0),
                      run["attacker"].get("sse_ok"), run["attacker"].get("sse_503"),
                      run["attacker"].get("closed_by_server"), run["load_start"], run["load_end"],
                      run.get("serve_alive")), flush=True)
    print("\n| server | p50 ms | p99 ms (target <= %d) | failed requests | serve CPU (cores) | RSS before flood MB "
          "| RSS peak MB | peak fds | peak threads |" % TARGET_P99_MS)
    print("|---|---|---|---|---|---|---|---|---|")
    for label, _ in servers:
        rs = [r for r in runs if r["label"] == label]
        print("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            label, fmt([r.get("p50_ms") for r in rs]), fmt([r.get("p99_ms") for r in rs]),
            "/".join("%d of %d" % (r.get("failures", 0), r.get("requests", 0)) for r in rs),
            fmt([r.get("cpu_cores") for r in rs], digits=2), fmt([r.get("rss_before_mb") for r in rs]),
            fmt([r.get("rss_peak_mb") for r in rs]), fmt([r.get("fds_peak") for r in rs]),
            fmt([r.get("threads_peak") for r in rs])))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(runs, f, indent=1, default=str)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
