"""The dashboard in fleet mode (`nsgraph serve --fleet URL --fleet-creds DIR`).

  /                         the fleet page: node list with health, overview, search
  /api/fleet/overview       every node: health, losses, namespaces by type, containers, recent joins
  /api/fleet/nodes/<node>   one node's summary, replica and consumer state
  /api/fleet/search         ?q=TEXT&since=SECONDS_AGO&kind=join,container,process,namespace
  /api/status, /metrics     the fleet's state; per-node metric series
  /node/<node>/...          the single-host dashboard for that node, unchanged: the same
                            pages and API over the node's replica (read-only: no demos)

Authentication, Host checks and headers are the single-host ones (auth.init_app), on
the fleet app and on every node app alike; the token cookie covers both.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from typing import Dict

from flask import Blueprint, Flask, Response, current_app, jsonify, render_template, request

from tracer.fleet.subjects import NODE_RE
from tracer.fleet.fleet import SEARCH_KINDS

from . import auth
from .config import WebConfig

HERE = os.path.dirname(os.path.abspath(__file__))
bp = Blueprint("fleet", __name__)


class FleetWebState:
    """What the fleet app's blueprints share (auth counts rejections here too)."""

    def __init__(self, config: WebConfig, service, machine_addresses=()):
        import collections
        self.config = config
        self.service = service
        self.counters = collections.Counter()
        self._lock = threading.Lock()
        self._node_apps: Dict[str, Flask] = {}
        self._machine_addresses = tuple(machine_addresses)
        self._server_stats = None

    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counters[key] += n

    def set_server_stats(self, stats_fn) -> None:
        """The HTTP server's numbers (webapp/server.py stats()); the node apps report them too."""
        self._server_stats = stats_fn

    def server_stats(self):
        return self._server_stats() if self._server_stats is not None else None

    def start(self) -> None:
        pass    # node apps start their stream hubs when first opened

    def stop(self) -> None:
        for app in list(self._node_apps.values()):
            app.extensions["nsgraph"].stop()

    def node_app(self, node: str) -> Flask:
        """The single-host dashboard over one node's replica, made on first use."""
        with self._lock:
            app = self._node_apps.get(node)
            if app is None:
                from . import create_app
                config = dataclasses.replace(self.config, read_only=True, db=None)
                app = create_app(config, service=self.service.node_service(node),
                                 machine_addresses=self._machine_addresses)
                app.extensions["nsgraph"].set_server_stats(self._server_stats)
                app.extensions["nsgraph"].start()
                self._node_apps[node] = app
            return app


class NodeDispatcher:
    """WSGI middleware: /node/<name>/... goes to that node's app, mounted at /node/<name>."""

    def __init__(self, fleet_wsgi, state: FleetWebState):
        self.fleet_wsgi = fleet_wsgi
        self.state = state

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO") or ""
        if path.startswith("/node/"):
            name, slash, rest = path[len("/node/"):].partition("/")
            if NODE_RE.match(name) and self.state.service.fleet.node(name) is not None:
                if not slash:
                    query = environ.get("QUERY_STRING")
                    target = "/node/%s/%s" % (name, ("?" + query) if query else "")
                    start_response("308 Permanent Redirect", [("Location", target), ("Content-Length", "0")])
                    return [b""]
                environ = dict(environ)
                environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + "/node/" + name
                environ["PATH_INFO"] = "/" + rest
                return self.state.node_app(name)(environ, start_response)
        return self.fleet_wsgi(environ, start_response)


def create_fleet_app(config: WebConfig, service, machine_addresses=()) -> Flask:
    """The fleet dashboard; `service` is a tracer.fleet.central.FleetService."""
    # Static files are webapp/assets.py's, as in the single-host app (the node pages
    # load their hashed modules from /static/ at the root, vocab.js included).
    app = Flask(__name__, static_folder=None, template_folder=os.path.join(HERE, "templates"))
    app.json.sort_keys = False
    state = FleetWebState(config, service, machine_addresses)
    app.extensions["nsgraph"] = state
    auth.init_app(app, config, machine_addresses)
    app.register_blueprint(bp)
    from . import assets, vocab
    assets.init_app(app, generated={vocab.ASSET: vocab.render()})

    for code in (400, 404, 405, 413):
        app.register_error_handler(code, lambda exc: auth.error(getattr(exc, "code", 500) or 500,
                                                                getattr(exc, "description", None) or str(exc)))
    app.wsgi_app = NodeDispatcher(app.wsgi_app, state)
    return app


def _service():
    return current_app.extensions["nsgraph"].service


@bp.route("/")
def index():
    return render_template("fleet.html")


@bp.route("/api/status")
def status():
    service = _service()
    st = service.status
    return jsonify({"state": st.state, "progress": st.progress, "error": st.error, "warnings": st.warnings,
                    "mode": "fleet", "nodes": service.fleet.names(), "connection": dict(service.fleet.connection),
                    "read_only": True})


@bp.route("/api/fleet/overview")
def overview():
    return jsonify(_service().fleet.overview())


@bp.route("/api/fleet/nodes/<name>")
def node(name):
    service = _service()
    summary = service.fleet.node_summary(name) if NODE_RE.match(name) else None
    if summary is None:
        return auth.error(404, "no node %r in the fleet (nodes: %s)" % (name[:64], ", ".join(service.fleet.names())))
    summary["heartbeat"] = service.fleet.node(name).status
    summary["consumer"] = {"rebuilt_at": service.consumer.rebuilt_at.get(name)}
    return jsonify(summary)


@bp.route("/api/fleet/search")
def search():
    text = (request.args.get("q") or "").strip()
    if len(text) > 200:
        return auth.error(400, "q is limited to 200 characters")
    kinds = [k for k in (request.args.get("kind") or ",".join(SEARCH_KINDS)).split(",") if k]
    bad = [k for k in kinds if k not in SEARCH_KINDS]
    if bad:
        return auth.error(400, "kind must be among %s, not %s" % (", ".join(SEARCH_KINDS), ", ".join(bad)[:80]))
    since = None
    raw = request.args.get("since")
    if raw:
        try:
            ago = float(raw)
        except ValueError:
            return auth.error(400, "since is a number of seconds ago (3600 for the last hour), not %r" % raw[:40])
        if not 0 < ago < 10 * 365 * 86400:
            return auth.error(400, "since must be between 0 and ten years, in seconds")
        since = time.time() - ago
    if not text and "join" not in kinds:
        return auth.error(400, "give q=TEXT (or search joins, which can be listed without text)")
    nodes = [n for n in (request.args.get("node") or "").split(",") if n] or None
    return jsonify(_service().fleet.search(text, since=since, kinds=kinds, nodes=nodes))


@bp.route("/metrics")
def metrics():
    from .fleetmetrics import render
    return Response(render(_service(), current_app.extensions["nsgraph"]),
                    mimetype="text/plain; version=0.0.4; charset=utf-8")
