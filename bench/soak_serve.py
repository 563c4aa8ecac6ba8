#!/usr/bin/env python3
"""Soak: `nsgraph serve` under steady events for an hour; RSS sampled every minute (run by hand).

The real serve (eBPF, graph, history, SSE) runs as a subprocess; the C workload
(bench/workload.c mix-rate) makes --rate events per second (failed setns calls,
fork+exit pairs, a uts namespace now and then); --readers SSE clients read
/stream; one client polls /api/status, /api/graph and /api/history/graph every 5 s.
Every minute: RSS, descriptors, threads, CPU, events seen, history database size.
The verdict compares the sample at the end of --warmup with the last one (target:
<= 50 MB growth).  Loopback only; every loop ends at --minutes.

    sudo .venv/bin/python bench/soak_serve.py [--minutes 60] [--warmup 5] [--rate 2000]
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
from servectl import Serve, build_workload, load_text  # noqa: E402

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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--warmup", type=float, default=5.0, help="minutes before the baseline sample")
    ap.add_argument("--rate", type=int, default=2000, help="events per second")
    ap.add_argument("--readers", type=int, default=5)
    ap.add_argument("--out", help="write the samples as JSON here")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (nsgraph serve loads eBPF probes)", file=sys.stderr)
        return EXIT_NO_PRIVILEGES
    if not (0 < args.minutes <= 180):
        ap.error("--minutes must be in (0, 180]")
    tmp = tempfile.mkdtemp(prefix="nsgsoak-")
    serve = Serve(REPO, tmp, label="soak")
    stop = threading.Event()
    counts = {"bytes": 0, "errors": 0}
    samples = []
    workload = None
    try:
        serve.wait_running()
        binary = build_workload(tmp)
        total = (args.minutes + args.warmup) * 60
        workload = subprocess.Popen([binary, "mix-rate", str(args.rate), str(total)], stdout=subprocess.PIPE)
        threads = [threading.Thread(target=reader, args=(serve.port, serve.token, stop, counts), daemon=True)
                   for _ in range(args.readers)]
        threads.append(threading.Thread(target=poller, args=(serve.port, serve.token, stop, counts), daemon=True))
        for t in threads:
            t.start()
        start = time.monotonic()
        print("minute  rss_mb  fds  threads  cpu_s  events  db_mb  %s" % load_text(), flush=True)
        minute = 0
        while minute <= args.minutes + args.warmup:
            status = {}
            try:
                status = serve.status(timeout=30)
            except Exception as exc:     # a sample must not end the soak
                status = {"error": str(exc)}
            db = os.path.join(tmp, "soak.db")
            db_mb = sum(os.path.getsize(p) for p in (db, db + "-wal") if os.path.exists(p)) / 2**20
            sample = {"minute": minute, "rss_mb": round(serve.rss_mb(), 1), "fds": serve.fds(),
                      "threads": serve.threads(), "cpu_s": round(serve.cpu_seconds(), 1),
                      "events": (status.get("counters") or {}).get("events"), "db_mb": round(db_mb, 1),
                      "warnings": status.get("warnings"), "load": os.getloadavg()[0]}
            samples.append(sample)
            print("%6d  %6.1f  %4d  %7d  %6.1f  %8s  %6.1f  load %.1f" % (
                minute, sample["rss_mb"], sample["fds"], sample["threads"], sample["cpu_s"],
                sample["events"], sample["db_mb"], sample["load"]), flush=True)
            minute += 1
            time.sleep(max(0.0, start + minute * 60 - time.monotonic()))
            if serve.proc.poll() is not None:
                print("nsgraph serve exited (%s); see %s" % (serve.proc.returncode, serve.log_path))
                break
    finally:
        stop.set()
        if workload is not None and workload.poll() is None:
            workload.terminate()
        serve.stop()
    base = next((s for s in samples if s["minute"] >= args.warmup), samples[0] if samples else None)
    if base and samples:
        growth = samples[-1]["rss_mb"] - base["rss_mb"]
        print("RSS after warm-up %.1f MB, at the end %.1f MB: growth %.1f MB (target <= 50); "
              "SSE bytes read %d, errors %d; %s" % (base["rss_mb"], samples[-1]["rss_mb"], growth,
                                                   counts["bytes"], counts["errors"],
                                                   {k: v for k, v in counts.items() if k.startswith("api")}))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"samples": samples, "counts": counts, "args": vars(args)}, f, indent=1)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
