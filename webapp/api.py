"""The JSON API (docs/ARCHITECTURE.md, "Web API").  Authentication is in auth.py."""

from __future__ import annotations

import json
import time

from flask import Blueprint, Response, current_app, jsonify, request

from .auth import error
from .demos import DemoError

bp = Blueprint("api", __name__, url_prefix="/api")

MAX_EVENTS = 5000


def _state():
    return current_app.extensions["nsgraph"]


def _not_ready():
    state = _state()
    status = state.status()
    response = jsonify({"error": "the graph is not ready yet (state %s: %s); watch /api/status"
                        % (status.get("state"), status.get("progress") or "starting"),
                        "state": status.get("state"), "status": 503})
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
    if not isinstance(body, dict):
        return error(400, "the JSON body must be an object")
    return None


@bp.route("/status")
def status():
    return jsonify(_state().status())


@bp.route("/graph")
def graph():
    data = _state().graph_json()
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


def _graph_or_none():
    return _state().graph_json()


@bp.route("/namespace/<path:ns_id>")
def namespace(ns_id):
    data = _graph_or_none()
    if data is None:
        return _not_ready()
    by_id = {n.get("id"): n for n in data.get("namespaces", [])}
    ns = by_id.get(ns_id)
    if ns is None:
        return error(404, "no namespace %r in the graph (ids look like net:4:4026531840:0)" % ns_id[:100])
    members = [p for p in data.get("processes", []) if ns_id in (p.get("ns") or {}).values()]
    children = [n for n in data.get("namespaces", [])
                if n.get("parent_id") == ns_id or n.get("owner_id") == ns_id]
    joins = [j for j in data.get("joins", []) if ns_id in (j.get("target") or {}).values()]
    return jsonify({"namespace": ns, "members": members, "children": children,
                    "owner": by_id.get(ns.get("owner_id")), "parent": by_id.get(ns.get("parent_id")),
                    "joins": joins, "is_host": ns_id in (data.get("host_ns") or {}).values()})


@bp.route("/process/<int:pid>")
def process(pid):
    data = _graph_or_none()
    if data is None:
        return _not_ready()
    proc = next((p for p in data.get("processes", []) if p.get("pid") == pid), None)
    if proc is None:
        return error(404, "no process %d in the graph (it may have exited)" % pid)
    by_id = {n.get("id"): n for n in data.get("namespaces", [])}
    host = data.get("host_ns") or {}
    ns = proc.get("ns") or {}
    return jsonify({"process": proc,
                    "namespaces": {t: by_id.get(i) for t, i in ns.items()},
                    "host_ns": host,
                    "same_as_host": {t: host.get(t) == i for t, i in ns.items()}})


@bp.route("/container/<name>")
def container(name):
    data = _graph_or_none()
    if data is None:
        return _not_ready()
    found = None
    for c in data.get("containers", []):
        cid = c.get("id") or ""
        if c.get("name") == name or cid == name or (len(name) >= 12 and cid.startswith(name)):
            found = c
            break
    if found is None:
        return error(404, "no container %r in the graph" % name[:100])
    cname = found.get("name")
    procs = [p for p in data.get("processes", []) if p.get("container") in (cname, found.get("id"))]
    ids = {i for p in procs for i in (p.get("ns") or {}).values()}
    namespaces = [n for n in data.get("namespaces", [])
                  if n.get("id") in ids or n.get("container") == cname]
    joins = [j for j in data.get("joins", []) if j.get("container") == cname]
    return jsonify({"container": found, "processes": procs, "namespaces": namespaces, "joins": joins,
                    "host_ns": data.get("host_ns") or {}})


@bp.route("/join/<join_id>")
def join(join_id):
    data = _graph_or_none()
    if data is None:
        return _not_ready()
    found = next((j for j in data.get("joins", []) if str(j.get("id")) == join_id), None)
    if found is None:
        return error(404, "no join session %r in the graph" % join_id[:100])
    by_id = {n.get("id"): n for n in data.get("namespaces", [])}
    return jsonify({"join": found,
                    "namespaces": {t: by_id.get(i) for t, i in (found.get("target") or {}).items()}})


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
    store = getattr(service, "store", None) if service is not None else None
    if store is None:
        return error(503, "no event store: start nsgraph serve with --db PATH to keep history")
    for name in ("graph_at", "state_at", "graph_json_at"):
        method = getattr(store, name, None)
        if callable(method):
            result = method(at)
            if result is None:
                return error(404, "no history at %s (before the first record?)" % raw[:40])
            if hasattr(result, "to_json"):
                result = result.to_json()
            return jsonify(result)
    return error(501, "this event store cannot rebuild past graphs")


@bp.route("/export.json")
def export_json():
    data = _graph_or_none()
    if data is None:
        return _not_ready()
    response = Response(json.dumps(data, indent=1, default=str), mimetype="application/json")
    response.headers["Content-Disposition"] = 'attachment; filename="nsgraph-%s.json"' % data.get("version")
    return response


@bp.route("/export.dot")
def export_dot():
    state = _state()
    graph = state.graph()
    if graph is None:
        return _not_ready()
    to_dot = getattr(graph, "to_dot", None)
    text = to_dot() if callable(to_dot) else graph_to_dot(state.graph_json())
    response = Response(text, mimetype="text/vnd.graphviz")
    response.headers["Content-Disposition"] = 'attachment; filename="nsgraph-%s.dot"' % graph.version
    return response


def _dot_quote(value) -> str:
    return '"%s"' % str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


def graph_to_dot(data: dict) -> str:
    """Graphviz text: namespaces, processes, ownership, parents, membership."""
    out = ["digraph nsgraph {", "  rankdir=LR;", "  node [fontname=\"sans-serif\"];"]
    for ns in data.get("namespaces", []):
        label = "%s\\n%s" % (ns.get("type"), ns.get("inode"))
        if ns.get("container"):
            label += "\\n%s" % ns.get("container")
        out.append("  %s [shape=box,label=%s%s];" % (
            _dot_quote(ns.get("id")), _dot_quote(label), "" if ns.get("alive", True) else ",style=dashed"))
        if ns.get("owner_id"):
            out.append("  %s -> %s [label=owner];" % (_dot_quote(ns.get("id")), _dot_quote(ns["owner_id"])))
        if ns.get("parent_id"):
            out.append("  %s -> %s [label=parent];" % (_dot_quote(ns.get("id")), _dot_quote(ns["parent_id"])))
    for p in data.get("processes", []):
        pid = "pid:%s" % p.get("pid")
        out.append("  %s [shape=ellipse,label=%s];" % (_dot_quote(pid), _dot_quote("%s %s" % (p.get("pid"), p.get("comm")))))
        for ns_id in (p.get("ns") or {}).values():
            out.append("  %s -> %s;" % (_dot_quote(pid), _dot_quote(ns_id)))
    out.append("}")
    return "\n".join(out) + "\n"


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
    state = _state()
    with state.demos._lock:
        ids = list(state.demos._runs)
    return jsonify({"runs": [state.demos.run_json(i) for i in ids[-50:]]})


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
