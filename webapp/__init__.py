"""The Flask app factory.  Nothing starts at import: no threads, no BPF, no Docker.

    app = create_app(config, service=NsgraphService(...))

`service` is the tracer service, seen only through webapp.contract.Service
(tracer.service.NsgraphService implements it); it may still be starting, or
None (then the dashboard answers "starting").  The SSE publisher thread starts
with `app.extensions["nsgraph"].start()` (nsgraph serve does it), not here.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Optional

from flask import Flask, jsonify, render_template, request, send_file

from .config import WebConfig
from .contract import Service
from .demos import DemoManager
from .state import WebState

HERE = os.path.dirname(os.path.abspath(__file__))


def plotly_js_path() -> Optional[str]:
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "package_data", "plotly.min.js")
    return path if os.path.isfile(path) else None


PLACEHOLDER = """<!doctype html><html><head><meta charset="utf-8"><title>nsgraph</title></head>
<body><h1>nsgraph</h1><p>The dashboard page (webapp/templates/index.html) is not installed;
the API is at <a href="/api/status">/api/status</a>.</p></body></html>"""


def create_app(config: Optional[WebConfig] = None, service: Optional[Service] = None,
               demos: Optional[DemoManager] = None, machine_addresses=()) -> Flask:
    from . import api, auth, inside, metrics, stream, vocab
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
    app.register_blueprint(vocab.bp)
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
