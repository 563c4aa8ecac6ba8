"""The Flask app factory.  Nothing starts at import: no threads, no BPF, no Docker.

    app = create_app(config, service=NsgraphService(...))

`service` is the tracer service (tracer.service.NsgraphService: .status, .graph,
.store, .collector, .subscribe(cb)); it may still be starting, or None (then
the dashboard answers "starting").  The SSE publisher thread starts with
`app.extensions["nsgraph"].start()` (nsgraph serve does it), not here.
"""

from __future__ import annotations

import collections
import importlib.util
import os
import threading
from typing import Optional

from flask import Flask, jsonify, render_template, request, send_file

from .config import WebConfig

HERE = os.path.dirname(os.path.abspath(__file__))


class WebState:
    """What the blueprints share: config, service, SSE hub, demo launcher, counters."""

    def __init__(self, config: WebConfig, service, demos=None):
        from .demos import DemoManager
        from .stream import StreamHub
        self.config = config
        self.service = service
        self.counters = collections.Counter()
        self._lock = threading.Lock()
        self._graph_cache = (None, None)
        self.hub = StreamHub(service, config, self.status)
        self.demos = demos or DemoManager(config)
        if getattr(self.demos, "graph_json_fn", None) is None:
            self.demos.graph_json_fn = self.graph_json
        previous = self.demos.notify

        def notify(run, _previous=previous):
            _previous(run)
            self.hub.publish("demo", run)
        self.demos.notify = notify

    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counters[key] += n

    def start(self) -> None:
        self.hub.start()

    def stop(self) -> None:
        self.hub.stop()
        self.demos.stop()

    def graph(self):
        return getattr(self.service, "graph", None) if self.service is not None else None

    def graph_json(self) -> Optional[dict]:
        """graph.to_json(), computed once per graph version."""
        graph = self.graph()
        if graph is None:
            return None
        version = getattr(graph, "version", None)
        cached_version, cached = self._graph_cache
        if cached is not None and version is not None and version == cached_version:
            return cached
        data = graph.to_json()
        self._graph_cache = (data.get("version", version), data)
        return data

    def status(self) -> dict:
        """{"state", "progress", "error", "version", "counters"} whatever the service's shape."""
        service = self.service
        if service is None:
            return {"state": "starting", "progress": "the tracer has not started yet",
                    "error": None, "version": None, "counters": {}}
        raw = getattr(service, "status", None)
        if callable(raw):
            raw = raw()
        if isinstance(raw, dict):
            state, progress, err = raw.get("state"), raw.get("progress"), raw.get("error")
        elif isinstance(raw, str):
            state, progress, err = raw, None, None
        else:
            state = getattr(raw, "state", None)
            progress = getattr(raw, "progress", None)
            err = getattr(raw, "error", None)
        counters = {}
        graph = self.graph()
        if graph is not None:
            counters.update(_graph_counters(graph, self))
        collector = getattr(service, "collector", None)
        if collector is not None and hasattr(collector, "stats"):
            try:
                stats = collector.stats()
                for key in ("events", "lost", "rejected"):
                    if key in stats and key not in counters:
                        counters[key] = stats[key]
            except Exception:
                pass
        demos = self.demos.stats()
        counters["demos_running"] = demos["running"]
        counters["sse_clients"] = self.hub.open_streams
        warnings = raw.get("warnings") if isinstance(raw, dict) else getattr(raw, "warnings", None)
        return {"state": state or ("running" if graph is not None else "starting"),
                "warnings": list(warnings or []),
                "progress": progress, "error": str(err) if err else None,
                "version": getattr(graph, "version", None), "counters": counters,
                "read_only": self.config.read_only}


def _graph_counters(graph, state: WebState) -> dict:
    snapshot = getattr(graph, "counters_snapshot", None)
    if callable(snapshot):
        return dict(snapshot())
    counters = getattr(graph, "counters", None)
    if callable(counters):
        counters = counters()
    if isinstance(counters, dict):
        return dict(counters)
    data = state.graph_json()
    return dict((data or {}).get("counters") or {})


def plotly_js_path() -> Optional[str]:
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "package_data", "plotly.min.js")
    return path if os.path.isfile(path) else None


PLACEHOLDER = """<!doctype html><html><head><meta charset="utf-8"><title>nsgraph</title></head>
<body><h1>nsgraph</h1><p>The dashboard page (webapp/templates/index.html) is not installed;
the API is at <a href="/api/status">/api/status</a>.</p></body></html>"""


def create_app(config: Optional[WebConfig] = None, service=None, demos=None,
               machine_addresses=()) -> Flask:
    from . import api, auth, inside, metrics, stream
    config = config or WebConfig()
    app = Flask(__name__, static_folder=os.path.join(HERE, "static"),
                template_folder=os.path.join(HERE, "templates"))
    app.json.sort_keys = False
    state = WebState(config, service, demos)
    app.extensions["nsgraph"] = state
    auth.init_app(app, config, machine_addresses)
    app.register_blueprint(api.bp)
    app.register_blueprint(stream.bp)
    app.register_blueprint(metrics.bp)
    app.register_blueprint(inside.bp)

    @app.route("/")
    def index():
        if os.path.isfile(os.path.join(HERE, "templates", "index.html")):
            return render_template("index.html", read_only=config.read_only)
        return PLACEHOLDER

    @app.route("/static/vendor/plotly.min.js")
    def plotly_js():
        path = plotly_js_path()
        if path is None:
            return auth.error(404, "plotly.min.js not found in the plotly package; "
                              "reinstall it (pip install --force-reinstall plotly)")
        return send_file(path, mimetype="text/javascript", max_age=86400)

    def _json_error(exc):
        code = getattr(exc, "code", 500) or 500
        if request.path.startswith("/api/") or request.path in ("/stream", "/metrics"):
            return auth.error(code, getattr(exc, "description", None) or str(exc))
        return exc

    for code in (400, 404, 405, 413, 415):
        app.register_error_handler(code, _json_error)

    @app.errorhandler(500)
    def _internal(exc):
        return jsonify({"error": "internal error: see the nsgraph serve log", "status": 500}), 500

    return app
