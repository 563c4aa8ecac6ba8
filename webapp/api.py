"""The JSON API (docs/ARCHITECTURE.md, "Web API").  Authentication is in auth.py."""

from __future__ import annotations

import json
import time

from flask import Blueprint, Response, current_app, jsonify, request

from .auth import error
from .demos import DemoError

bp = Blueprint("api", __name__, url_prefix="/api")

MAX_EVENTS = 5000
RUNS_LISTED = 50


def _state():
    return current_app.extensions["nsgraph"]


def _not_ready():
    state = _state()
    status = state.status()
    response = jsonify({"error": "the graph is not ready yet (state %s: %s); watch /api/status"
                        % (status["state"], status["progress"] or "starting"),
                        "state": status["state"], "status": 503})
    response.status_code = 503
    response.headers["Retry-After"] = "1"
    return response


def _int_arg(name: str, default=None, minimum=None, maximum=None):
    """(value, error response): a query argument as an int, range-checked."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default, None
    try:
        value = int(raw)
    except ValueError:
        return None, error(400, "%s must be an integer, got %r" % (name, raw[:40]))
    if minimum is not None and value < minimum:
        return None, error(400, "%s must be at least %d" % (name, minimum))
    if maximum is not None and value > maximum:
        value = maximum
    return value, None


def _check_body():
    """POST bodies are optional; when present they must be a small JSON object."""
    data = request.get_data(cache=True)  # MAX_CONTENT_LENGTH caps chunked bodies too
    if not data.strip():
        return None
    if not request.is_json:
        return error(415, "send no body, or a JSON object with Content-Type: application/json")
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        return error(400, "malformed JSON body: %s" % exc)
    except RecursionError:
        return error(400, "the JSON body is nested too deeply")
    if not isinstance(body, dict):
        return error(400, "the JSON body must be an object")
    return None


@bp.route("/status")
def status():
    return jsonify(_state().status())


@bp.route("/graph")
def graph():
    """?housekeeping=1: the join list includes the container engines' own switches."""
    state = _state()
    if request.args.get("housekeeping") in ("1", "true", "yes"):
        reader = state.graph()
        data = reader.to_json(include_housekeeping=True) if reader is not None else None
    else:
        data = state.graph_json()
    if data is None:
        return _not_ready()
    return jsonify(data)


@bp.route("/graph/diff")
def graph_diff():
    state = _state()
    graph = state.graph()
    if graph is None:
        return _not_ready()
    since, bad = _int_arg("since", minimum=0)
    if bad:
        return bad
    if since is None:
        return error(400, "since=VERSION is required (the version of the graph you hold)")
    diff = graph.diff_since(since) if since <= graph.version else None
    if diff is None:
        response = jsonify({"error": "version %d is too old or unknown: GET /api/graph again" % since,
                            "version": graph.version, "status": 409})
        response.status_code = 409
        return response
    return jsonify(diff)


@bp.route("/events")
def events():
    since, bad = _int_arg("since_seq", default=0, minimum=0)
    if bad:
        return bad
    limit, bad = _int_arg("limit", default=500, minimum=0, maximum=MAX_EVENTS)
    if bad:
        return bad
    items = _state().hub.recent_events(since, limit)
    return jsonify({"events": items, "last_seq": items[-1].get("seq") if items else since})


def _lookup(find, key, missing: str):
    """One detail lookup of the graph (GraphReader.namespace/process/container/join)."""
    graph = _state().graph()
    if graph is None:
        return _not_ready()
    found = find(graph, key)
    if found is None:
        return error(404, missing)
    return jsonify(found)


@bp.route("/namespace/<path:ns_id>")
def namespace(ns_id):
    """A NamespaceDetail: the namespace and its member processes."""
    return _lookup(lambda g, k: g.namespace(k), ns_id,
                   "no namespace %r in the graph (ids look like net:4:4026531840:0)" % ns_id[:100])


@bp.route("/process/<int:pid>")
def process(pid):
    return _lookup(lambda g, k: g.process(k), pid, "no process %d in the graph (it may have exited)" % pid)


@bp.route("/container/<name>")
def container(name):
    """A ContainerDetail: the container, its processes and namespaces (by name or id prefix)."""
    return _lookup(lambda g, k: g.container(k), name, "no container %r in the graph" % name[:100])


@bp.route("/join/<int:join_id>")
def join(join_id):
    return _lookup(lambda g, k: g.join(k), join_id, "no join session %d in the graph" % join_id)


@bp.route("/history/graph")
def history_graph():
    raw = request.args.get("at")
    try:
        at = float(raw)
    except (TypeError, ValueError):
        return error(400, "at=T is required: a time in seconds since the epoch")
    if at != at or at < 0 or at > time.time() + 86400:  # NaN, negative, far future
        return error(400, "at=%r is not a usable time" % raw[:40])
    service = _state().service
    store = service.store if service is not None else None
    if store is None:
        return error(503, "no event store: start nsgraph serve with --db PATH to keep history")
    data = store.graph_json_at(at)
    if data is None:
        return error(404, "no history at %s (before the first record?)" % raw[:40])
    return jsonify(data)


@bp.route("/export.json")
def export_json():
    data = _state().graph_json()
    if data is None:
        return _not_ready()
    response = Response(json.dumps(data, indent=1, default=str), mimetype="application/json")
    response.headers["Content-Disposition"] = 'attachment; filename="nsgraph-%s.json"' % data["version"]
    return response


@bp.route("/export.dot")
def export_dot():
    graph = _state().graph()
    if graph is None:
        return _not_ready()
    version = graph.version
    response = Response(graph.to_dot(), mimetype="text/vnd.graphviz")
    response.headers["Content-Disposition"] = 'attachment; filename="nsgraph-%s.dot"' % version
    return response


# -- demos ------------------------------------------------------------------------------

@bp.route("/demos")
def demos():
    state = _state()
    return jsonify({"scenarios": state.demos.scenarios(), "read_only": state.config.read_only,
                    "limits": {"concurrent": state.config.max_concurrent_demos,
                               "rate": state.config.demo_rate,
                               "rate_window_s": state.config.demo_rate_window_s,
                               "ttl_s": state.config.demo_ttl_s}})


@bp.route("/demos/cleanup", methods=["POST"])
def demos_cleanup():
    bad = _check_body()
    if bad:
        return bad
    state = _state()
    if state.config.read_only:
        return error(403, "the demo launcher is disabled (--read-only)")
    return jsonify(state.demos.cleanup())


@bp.route("/demos/runs")
def demo_runs():
    return jsonify({"runs": _state().demos.recent_runs(RUNS_LISTED)})


@bp.route("/demos/runs/<run_id>")
def demo_run(run_id):
    run = _state().demos.run_json(run_id)
    if run is None:
        return error(404, "no demo run %r (runs are kept while the server runs)" % run_id[:40])
    return jsonify(run)


@bp.route("/demos/<scenario_id>", methods=["POST"])
def demo_launch(scenario_id):
    bad = _check_body()
    if bad:
        return bad
    try:
        run = _state().demos.launch(scenario_id)
    except DemoError as exc:
        response = error(exc.status, str(exc))
        if exc.retry_after:
            response.headers["Retry-After"] = str(exc.retry_after)
        return response
    response = jsonify({"run_id": run.id, "status": run.status, "command": run.command,
                        "poll": "/api/demos/runs/%s" % run.id})
    response.status_code = 202
    return response
