#!/usr/bin/env python3
"""Benchmark: 10 SSE clients while 10 000 events/s flow, and `nsgraph serve` start-up.

Part 1 (no root needed): synthetic tracer events (fork -> exec -> exit, with an
unshare(CLONE_NEWUTS) now and then) go through the real path: NamespaceGraph.apply
(offline: no /proc reads), the SSE hub (event encoding, coalesced diffs) and werkzeug's
threaded server, to N client processes reading /stream over real sockets.  Each
client counts the events it got, samples the lag (receive time - event time) and
counts resyncs (it fell behind).  "Keeps up" means: every client got every event,
no resync, and the p99 lag stays small.

Part 2 (root): run `nsgraph serve --port 0` and time the URL line on stdout and the
first /api/status answering "running".

    .venv/bin/python bench/bench_web_stream.py [--clients 10] [--rate 10000] [--seconds 10] [--no-startup]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import datetime

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tracer import nstypes  # noqa: E402
from tracer.events.event import Event  # noqa: E402

TOKEN = "bench-token-0123456789abcdef"
DEV = 4
HOST = {"mnt": 100, "pid": 101, "pid_for_children": 101, "net": 102, "uts": 103, "ipc": 104,
        "user": 105, "cgroup": 106, "time": 107, "time_for_children": 107}
EVENT_RE = re.compile(rb'event: event\ndata: \{"kind":"\w+","ts":"([^"]+)","seq":(\d+)')


# -- the server side ------------------------------------------------------------------------------

class Feed:
    """What the collector does with each decoded event: the graph applies it and the
    SSE hub queues it (the two subscribers NsgraphService wires up)."""

    def __init__(self, graph, hub):
        self.graph = graph
        self.hub = hub

    def emit(self, event):
        self.graph.apply(event)
        self.hub.on_event(event)


def build_graph():
    from tracer.graph.model import NamespaceGraph
    from tracer.host.snapshot import NsInfo, ProcInfo, Snapshot
    import collections
    namespaces = {}
    for slot, inode in HOST.items():
        t = slot.replace("_for_children", "")
        namespaces[(t, DEV, inode)] = NsInfo(t, inode, DEV, ns_id=inode, owner_inode=None if t == "user" else 105)
    procs = {pid: ProcInfo(pid, 0 if pid == 1 else 1, 0, "init" if pid == 1 else "sh", ["sh"], pid, "0::/",
                           {s: (DEV, i) for s, i in HOST.items()}) for pid in (1, 50)}
    g = NamespaceGraph(dev=DEV)
    g.load_snapshot(Snapshot(time.time(), procs, namespaces, collections.Counter()))
    return g


def event_stream():
    """Endless synthetic events: fork, exec, (unshare every 50th), exit."""
    seq = 0
    pid = 1000
    uts = 5000

    def make(kind, p, **kw):
        nonlocal seq
        seq += 1
        base = dict(kind=kind, seq=seq, ts=time.time(), pid=p, tid=p, ppid=50, uid=0, vpid=p,
                    comm="worker", ns=dict(HOST), ns_before=dict(HOST) if kind != "exec" and kind != "exit" else None)
        base.update(kw)
        return Event(**base)

    n = 0
    while True:
        pid += 1
        n += 1
        yield make("clone", 50, syscall="clone", child_pid=pid, child_vpid=pid, raw_flags=17)
        yield make("exec", pid, filename="/bin/true")
        if n % 50 == 0:
            uts += 1
            after = dict(HOST, uts=uts)
            yield make("unshare", pid, syscall="unshare", raw_flags=nstypes.CLONE_NEWUTS, ns=after)
        yield make("exit", pid, exit_code=0)


def produce(feed, rate, seconds, stop, sent):
    gen = event_stream()
    start = time.monotonic()
    batch = max(1, rate // 200)           # 5 ms worth of events per step
    n = 0
    while not stop.is_set():
        elapsed = time.monotonic() - start
        if elapsed >= seconds:
            break
        due = int(elapsed * rate) + batch
        while n < due:
            feed.emit(next(gen))
            n += 1
        sleep = (n / rate) - (time.monotonic() - start)
        if sleep > 0:
            time.sleep(sleep)
    sent["events"] = n
    sent["seconds"] = time.monotonic() - start


# -- the clients (separate processes: a browser does not share our GIL) -----------------------------------

def client(port, seconds, result_queue, index):
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    req = ("GET /stream HTTP/1.0\r\nHost: 127.0.0.1:%d\r\nAuthorization: Bearer %s\r\n"
           "Accept: text/event-stream\r\n\r\n" % (port, TOKEN))
    sock.sendall(req.encode())
    sock.settimeout(1.0)
    got = set()
    lags = []
    resyncs = 0
    diffs = 0
    nbytes = 0
    tail = b""
    deadline = time.time() + seconds
    sample = 0
    while time.time() < deadline:
        try:
            data = sock.recv(1 << 20)
        except socket.timeout:
            continue
        if not data:
            break
        now = time.time()
        nbytes += len(data)
        data = tail + data
        cut = data.rfind(b"\n\n")
        if cut < 0:
            tail = data
            continue
        block, tail = data[:cut + 2], data[cut + 2:]
        for ts, seq in EVENT_RE.findall(block):
            got.add(int(seq))
            sample += 1
            if sample % 50 == 0:
                t = datetime.fromisoformat(ts.decode().replace("Z", "+00:00")).timestamp()
                lags.append(now - t)
        resyncs += block.count(b"event: resync")
        diffs += block.count(b"event: diff")
    sock.close()
    result_queue.put({"client": index, "events": len(got), "max_seq": max(got) if got else 0,
                      "lags": lags, "resyncs": resyncs, "diffs": diffs, "bytes": nbytes})


def pct(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def bench_stream(n_clients, rate, seconds):
    from werkzeug.serving import make_server

    from tracer.service import NsgraphService
    from webapp import create_app
    from webapp.config import WebConfig

    import logging
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    graph = build_graph()
    service = NsgraphService().use_graph(graph)
    app = create_app(WebConfig(token=TOKEN, port=0), service=service)
    state = app.extensions["nsgraph"]
    state.start()
    feed = Feed(graph, state.hub)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    port = server.server_port
    threading.Thread(target=server.serve_forever, daemon=True).start()

    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    # Clients read a little longer than the producer runs, to drain what is in flight.
    procs = [ctx.Process(target=client, args=(port, seconds + 3, queue, i)) for i in range(n_clients)]
    for p in procs:
        p.start()
    deadline = time.time() + 10
    while state.hub.open_streams < n_clients and time.time() < deadline:
        time.sleep(0.05)
    connected = state.hub.open_streams
    stop = threading.Event()
    sent = {}
    cpu0 = os.times()
    produce(feed, rate, seconds, stop, sent)
    cpu1 = os.times()
    results = [queue.get(timeout=seconds + 30) for _ in procs]
    for p in procs:
        p.join(timeout=5)
    hub = state.hub
    server.shutdown()
    state.stop()

    print("== SSE fan-out: %d clients (%d connected), target %d events/s for %d s" % (
        n_clients, connected, rate, seconds))
    achieved = sent["events"] / sent["seconds"]
    print("events sent: %d in %.2f s = %.0f events/s (%.2f of target)" % (
        sent["events"], sent["seconds"], achieved, achieved / rate))
    print("server CPU (user+sys) during the run: %.2f s for %.2f s wall = %.2f cores" % (
        (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system), sent["seconds"],
        ((cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)) / sent["seconds"]))
    print("graph version reached: %d; diffs received by client 0 (coalesced): %d; hub max backlog: %d messages"
          % (graph.version, results[0]["diffs"], hub.max_lag))
    all_lags = []
    kept_up = True
    for r in sorted(results, key=lambda r: r["client"]):
        complete = r["events"] / sent["events"] if sent["events"] else 0
        all_lags.extend(r["lags"])
        ok = r["events"] == sent["events"] and r["resyncs"] == 0
        kept_up &= ok
        print("  client %2d: events %d/%d (%.4f) resyncs %d diffs %d lag p50 %.1f ms p99 %.1f ms max %.1f ms, %.1f MB"
              % (r["client"], r["events"], sent["events"], complete, r["resyncs"], r["diffs"],
                 pct(r["lags"], 50) * 1e3, pct(r["lags"], 99) * 1e3, max(r["lags"] or [float("nan")]) * 1e3,
                 r["bytes"] / 1e6))
    print("all clients: lag p50 %.1f ms, p99 %.1f ms, max %.1f ms (sampled every 50th event)" % (
        pct(all_lags, 50) * 1e3, pct(all_lags, 99) * 1e3, max(all_lags or [float("nan")]) * 1e3))
    print("verdict: %s" % ("every client received every event with no resync" if kept_up else
                           "at least one client fell behind (missing events or resyncs)"))


# -- start-up ------------------------------------------------------------------------------------------------

def bench_startup():
    print("== nsgraph serve start-up")
    if os.geteuid() != 0:
        print("skipped: needs root (it loads the eBPF probes)")
        return
    exe = os.path.join(os.path.dirname(sys.executable), "nsgraph")
    cmd = [exe, "serve", "--port", "0", "--read-only"] if os.path.exists(exe) else \
        [sys.executable, "-m", "tracer.cli", "serve", "--port", "0", "--read-only"]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().strip()
        t_url = time.monotonic() - t0
        m = re.match(r"http://([^/]+)/\?token=(\S+)$", line)
        if not m:
            print("no URL line on stdout (got %r); stderr: %s" % (line, proc.stderr.read()[:2000]))
            return
        hostport, token = m.groups()
        state = None
        t_run = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                req = urllib.request.Request("http://%s/api/status" % hostport,
                                             headers={"Authorization": "Bearer " + token})
                with urllib.request.urlopen(req, timeout=2) as r:
                    state = json.load(r)["state"]
            except Exception as exc:
                state = "unreachable (%s)" % exc
            if state in ("running", "error"):
                t_run = time.monotonic() - t0
                break
            time.sleep(0.05)
        print("URL line on stdout after %.3f s" % t_url)
        if t_run is None:
            print("state never became running within 120 s (last: %s)" % state)
        else:
            print("state %s after %.3f s (the page shows 'starting' for %.3f s)" % (state, t_run, t_run - t_url))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--rate", type=int, default=10000)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--no-startup", action="store_true")
    args = ap.parse_args()
    bench_stream(args.clients, args.rate, args.seconds)
    if not args.no_startup:
        bench_startup()


if __name__ == "__main__":
    main()
