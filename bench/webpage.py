"""The dashboard page for browser benchmarks, without root or a tracer: a stdlib
HTTP server with the app's Content-Security-Policy that serves a tree's page and
static files exactly as `nsgraph serve` does (webapp/assets.py: hashed URLs,
br/gzip, cache headers), and a synthetic graph at /api/graph.

`legacy=True` serves a tree from before webapp/assets.py (plain /static/ files,
the full plotly.min.js from the plotly package), to measure "before" and "after"
in one run.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import threading
import types
import time

CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data: blob:; connect-src 'self'; object-src 'none'")


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
        conts.append({"id": "%064x" % (c + 1), "name": name, "image": "svc-%d:latest" % (c % 7), "runtime": "docker",
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
    protocol_version = "HTTP/1.1"
    graph_body = b""
    tree = ""
    legacy = False
    catalog = None
    index = b""

    def log_message(self, *args):
        pass

    def end_headers(self):
        self.send_header("Content-Security-Policy", CSP)
        super().end_headers()

    def _send(self, body: bytes, ctype: str, status: int = 200, headers=None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/":
            return self._send(self.index, "text/html; charset=utf-8", headers={"Cache-Control": "no-store"})
        if path == "/api/status":
            return self._send(b'{"state": "running", "progress": "", "counters": {}}', "application/json")
        if path == "/api/graph":
            return self._send(self.graph_body, "application/json", headers={"Cache-Control": "no-store"})
        if path == "/api/events":
            return self._send(b'{"events": [], "last_seq": 0}', "application/json")
        if path == "/api/demos":
            return self._send(b'{"scenarios": [], "read_only": true}', "application/json")
        if path == "/stream":
            # No live events here; tell EventSource not to come back soon.
            return self._send(b"retry: 600000\n\n", "text/event-stream")
        if path.startswith("/static/"):
            return self._static(path)
        return self._send(b'{"error": "not here"}', "application/json", 404)

    def _static(self, path):
        from webapp import vocab
        if self.legacy:
            if path == vocab.PATH:
                return self._send(vocab.render().encode(), "text/javascript")
            if path == "/static/vendor/plotly.min.js":
                import plotly
                with open(os.path.join(os.path.dirname(plotly.__file__), "package_data", "plotly.min.js"), "rb") as f:
                    return self._send(f.read(), "text/javascript")
            self.path = path[len("/static"):]
            return super().do_GET()
        asset, cache = self.catalog.resolve(path)
        if asset is None:
            return self._send(b"not found", "text/plain", 404)
        body, headers = self.catalog.encode(asset, self.headers.get("Accept-Encoding", ""))
        headers["Cache-Control"] = cache
        ctype = headers.pop("Content-Type")
        return self._send(body, ctype, headers=headers)

    def guess_type(self, path):
        return "text/javascript" if str(path).endswith(".js") else super().guess_type(path)


def serve(tree: str, graph: dict, legacy: bool = False):
    """Start a server for a tree's page; returns (base URL, server)."""
    attrs = {"graph_body": json.dumps(graph).encode(), "tree": tree, "legacy": legacy}
    web = os.path.join(tree, "webapp")
    if legacy:
        with open(os.path.join(web, "templates", "index.html"), "rb") as f:
            attrs["index"] = f.read()
    else:
        import jinja2

        from webapp import assets, vocab
        catalog = assets.AssetCatalog(static=os.path.join(web, "static"), generated={vocab.ASSET: vocab.render()})
        env = jinja2.Environment(loader=jinja2.FileSystemLoader(os.path.join(web, "templates")), autoescape=True)
        attrs["catalog"] = catalog
        attrs["index"] = env.get_template("index.html").render(
            assets=catalog, read_only=True,
            # the page is served at the root here, as `nsgraph serve` serves it without a prefix
            request=types.SimpleNamespace(script_root="")).encode()
    handler_class = type("TreeHandler", (Handler,), attrs)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(handler_class, directory=os.path.join(web, "static")))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return "http://127.0.0.1:%d/" % server.server_address[1], server
