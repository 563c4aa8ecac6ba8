#!/usr/bin/env python3
"""First render of a 5 000-node namespace graph in headless Chromium (target <= 1 s).

The real page code (webapp/templates/index.html + webapp/static/) is served by a
small stdlib server with the app's Content-Security-Policy, whose /api/graph
answers a synthetic graph of exactly N entities (namespaces + processes + join
sessions) following docs/ARCHITECTURE.md "Graph JSON".  No root, no tracer.

Measured, per page load (median of --runs fresh browser contexts):
  graph->paint   from the /api/graph answer being parsed to the first painted frame
  plotly         the Plotly.newPlot call alone
  nav->paint     from navigation start (includes loading 4.8 MB of plotly.js)
for the default view (processes with one namespace set collapsed into counted
nodes) and with every node drawn (?collapse=100000).  Then one live update: a
diff of 50 changes applied to the fully drawn graph, until painted.

usage: .venv/bin/python bench/bench_web_render.py [--nodes 5000] [--runs 3]
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import statistics
import sys
import threading
import time

from pageutil import poll

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tracer.exitcodes import EXIT_FAILURE, EXIT_OK  # noqa: E402
from webapp import vocab  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WEB = os.path.join(REPO, "webapp")
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data: blob:; connect-src 'self'; object-src 'none'")
TARGET_S = 1.0


def plotly_js() -> str:
    import plotly
    return os.path.join(os.path.dirname(plotly.__file__), "package_data", "plotly.min.js")


def synthetic_graph(total: int, containers: int = 200, sandboxes: int = 98, joins: int = 12) -> dict:
    """Exactly `total` nodes: namespaces + processes + joins, shaped like a busy host."""
    now = time.time()
    ino = [4026532000]

    def ns(t, container=None, created=None):
        ino[0] += 1
        i = "%s:4:%d:0" % (t, ino[0])
        return {"id": i, "type": t, "inode": ino[0], "dev": 4, "ns_id": ino[0] - 4026531000, "alive": True,
                "created": created, "ended": None,
                "creator": {"pid": 1000, "comm": "runc:[1:CHILD]", "syscall": "clone3", "flags": ["CLONE_NEW" + t.upper()], "ts": created} if created else None,
                "pids": [], "container": container, "owner": 4026531837, "owner_id": "user:4:4026531837:0",
                "parent": None, "parent_id": "pid:4:4026531836:0" if t == "pid" and container else None,
                "owner_uid": None, "pinned": [], "holders": []}

    host_types = ["user", "pid", "mnt", "net", "uts", "ipc", "cgroup", "time"]
    host = {}
    namespaces, processes, conts, join_list = [], [], [], []
    for k, t in enumerate(host_types):
        n = ns(t)
        n["id"] = "%s:4:%d:0" % (t, 4026531835 + k)
        n["inode"] = 4026531835 + k
        host[t] = n["id"]
        namespaces.append(n)
    pid = 10
    for c in range(containers):
        name = "svc-%03d" % c
        own = dict(host)
        for t in ("mnt", "pid", "net", "uts", "ipc", "cgroup"):
            n = ns(t, name, now - 3600 + c)
            own[t] = n["id"]
            namespaces.append(n)
        first = pid
        for k in range(12):
            processes.append({"pid": pid, "ppid": first if k else 1, "comm": "worker" if k else "init",
                              "cmdline": "/app/run --shard %d" % k, "uid": 0, "ns": own, "container": name})
            pid += 1
        conts.append({"id": "%064x" % (c + 1), "name": name, "image": "svc:latest", "runtime": "docker",
                      "pid": first, "labels": {}, "state": "running"})
    for s in range(sandboxes):
        own = dict(host)
        for t in ("uts", "net"):
            n = ns(t, None, now - 60 + s)
            own[t] = n["id"]
            namespaces.append(n)
        processes.append({"pid": pid, "ppid": 1, "comm": "sandbox", "cmdline": "unshare -un sleep inf",
                          "uid": 1000, "ns": own, "container": None})
        pid += 1
    for j in range(joins):
        c = conts[j % len(conts)]
        join_list.append({"id": j + 1, "pid": 90000 + j, "comm": "runc:[1:CHILD]", "tool": "runc", "container": c["name"],
                          "types": ["ipc", "uts", "net", "pid", "mnt"],
                          "target": {t: processes[(j % len(conts)) * 12]["ns"][t] for t in ["ipc", "uts", "net", "pid", "mnt"]},
                          "command": "ps aux", "exec_pid": 90100 + j, "start": now - 30 + j, "end": now - 30 + j + 0.1,
                          "summary": "joined container %s's namespaces" % c["name"]})
    while len(namespaces) + len(processes) + len(join_list) < total:
        processes.append({"pid": pid, "ppid": 1, "comm": "kworker/%d" % pid, "cmdline": "", "uid": 0, "ns": dict(host), "container": None})
        pid += 1
    nodes = len(namespaces) + len(processes) + len(join_list)
    if nodes != total:
        raise SystemExit("cannot shape a %d-node graph with these parameters (got %d); raise --nodes" % (total, nodes))
    return {"version": 1, "time": now, "node": "bench", "host_ns": host, "namespaces": namespaces,
            "processes": processes, "containers": conts, "joins": join_list,
            "counters": {"events": 0, "lost": 0, "repaired": 0, "rejected": 0,
                         "namespaces_alive": len(namespaces), "namespaces_by_type": {}}}


class Handler(http.server.SimpleHTTPRequestHandler):
    graph_body = b""

    def log_message(self, *args):
        pass

    def end_headers(self):
        self.send_header("Content-Security-Policy", CSP)
        super().end_headers()

    def _send(self, body: bytes, ctype: str, status: int = 200):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/":
            with open(os.path.join(WEB, "templates", "index.html"), "rb") as f:
                return self._send(f.read(), "text/html; charset=utf-8")
        if path == vocab.PATH:       # generated from Python, as nsgraph serve does
            return self._send(vocab.render().encode(), "text/javascript")
        if path == "/static/vendor/plotly.min.js":
            with open(plotly_js(), "rb") as f:
                return self._send(f.read(), "text/javascript")
        if path == "/api/status":
            return self._send(b'{"state": "running", "progress": "", "counters": {}}', "application/json")
        if path == "/api/graph":
            return self._send(self.graph_body, "application/json")
        if path == "/api/events":
            return self._send(b'{"events": [], "last_seq": 0}', "application/json")
        if path == "/api/demos":
            return self._send(b'{"scenarios": [], "read_only": true}', "application/json")
        if path == "/stream":
            # No live events here; tell EventSource not to come back soon.
            return self._send(b"retry: 600000\n\n", "text/event-stream")
        if path.startswith("/static/"):
            self.path = path[len("/static"):]
            return super().do_GET()
        return self._send(b'{"error": "not here"}', "application/json", 404)

    def guess_type(self, path):
        return "text/javascript" if str(path).endswith(".js") else super().guess_type(path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--screenshot", help="save a PNG of the fully drawn graph here")
    args = ap.parse_args()
    if not os.path.exists(args.chromium):
        print("Chromium not found at %s (apt-get install chromium)" % args.chromium, file=sys.stderr)
        return EXIT_FAILURE
    from playwright.sync_api import sync_playwright

    graph = synthetic_graph(args.nodes)
    Handler.graph_body = json.dumps(graph).encode()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=os.path.join(WEB, "static")))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = "http://127.0.0.1:%d/" % server.server_address[1]
    print("graph: %d nodes (%d namespaces, %d processes, %d joins, %d containers), %.1f MB JSON" % (
        args.nodes, len(graph["namespaces"]), len(graph["processes"]), len(graph["joins"]),
        len(graph["containers"]), len(Handler.graph_body) / 1e6))
    results = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run", "--disable-sync"])
        for label, query in (("collapsed (default)", ""), ("every node drawn", "?collapse=100000")):
            samples = []
            for _ in range(args.runs):
                ctx = browser.new_context(viewport={"width": 1500, "height": 1200})
                page = ctx.new_page()
                errors = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(base + query)
                first = poll(page, "window.nsgraph && window.nsgraph.metrics.firstRender")
                if errors:
                    raise SystemExit("page errors: %s" % errors)
                samples.append(first)
                if args.screenshot and not samples[1:]:
                    root, ext = os.path.splitext(args.screenshot)
                    page.screenshot(path="%s-%s%s" % (root, "expanded" if query else "collapsed", ext or ".png"))
                if query and not results.get("update"):
                    results["update"] = measure_update(page, graph)
                ctx.close()
            results[label] = samples
        browser.close()
    server.shutdown()

    print("%-22s %6s %13s %9s %9s %9s %9s %11s" % ("view", "drawn", "graph->paint", "queued", "build", "plotly", "paint", "nav->paint"))
    worst = 0.0
    for label in ("collapsed (default)", "every node drawn"):
        s = results[label]
        g2p = statistics.median(x["sinceGraphLoaded"] for x in s)
        worst = max(worst, g2p)
        med = lambda key: statistics.median(x[key] for x in s)
        print("%-22s %6d %10.0f ms %6.0f ms %6.0f ms %6.0f ms %6.0f ms %8.0f ms" % (
            label, s[0]["nodes"], g2p, med("queuedMs"), med("buildMs"), med("renderMs") - med("buildMs"),
            med("paintMs"), med("sinceNavigation")))
    u = results["update"]
    print("live update of the fully drawn graph (50 changes): %.0f ms to paint (Plotly.react %.0f ms)" % (u["paint"], u["react"]))
    print("first render ratio to the %.0f ms target: %.2f (%s)" % (TARGET_S * 1000, worst / (TARGET_S * 1000),
                                                                 "met" if worst <= TARGET_S * 1000 else "NOT met"))
    return EXIT_OK


def measure_update(page, graph) -> dict:
    """Push one diff (25 new namespaces, 25 removed) through the page's stream handler."""
    changes = []
    for k in range(25):
        i = "uts:4:%d:0" % (4026600000 + k)
        changes.append({"op": "add", "entity": "namespace", "id": i,
                        "data": {"id": i, "type": "uts", "inode": 4026600000 + k, "dev": 4, "alive": True,
                                 "created": time.time(), "pids": [], "container": None}})
    for n in graph["namespaces"][-25:]:
        changes.append({"op": "remove", "entity": "namespace", "id": n["id"], "data": None})
    diff = json.dumps({"version": 2, "changes": changes})
    renders = page.evaluate("window.nsgraph.metrics.renders")
    t0 = page.evaluate("(d) => { window.__t0 = performance.now(); window.nsgraph.stream.enqueue(d); return window.__t0; }", diff)
    poll(page, "window.nsgraph.metrics.renders > %d" % renders)
    react = page.evaluate("window.nsgraph.metrics.lastRenderMs")
    painted = page.evaluate("window.nsgraph.metrics.lastPaintedAt - performance.timeOrigin")
    return {"react": react, "paint": painted - t0}


if __name__ == "__main__":
    sys.exit(main())
