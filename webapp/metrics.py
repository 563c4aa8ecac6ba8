"""/metrics in the Prometheus text exposition format (version 0.0.4).

Token-protected like the API (scrape with `authorization: {credentials_file: TOKEN_FILE}`
in prometheus.yml), unless `public_metrics` is set: the counters reveal activity
on the host, so they are not public by default.
"""

from __future__ import annotations

import re
import sys

from flask import Blueprint, Response, current_app

bp = Blueprint("metrics", __name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# tracer/health.py's checks (named here: the web layer reaches the core only through contract.py).
HEALTH_CHECKS = ("collector", "docker", "reconcile", "descriptors", "lost_events", "history")

_LABEL_ESCAPE = re.compile(r'(["\\\n])')


def _label(value) -> str:
    return _LABEL_ESCAPE.sub(lambda m: "\\n" if m.group(1) == "\n" else "\\" + m.group(1), str(value))


class _Writer:
    def __init__(self):
        self.lines = []

    def metric(self, name: str, kind: str, help_text: str, samples) -> None:
        """samples: a number, or a list of (labels dict, number)."""
        self.lines.append("# HELP %s %s" % (name, help_text))
        self.lines.append("# TYPE %s %s" % (name, kind))
        if not isinstance(samples, list):
            samples = [({}, samples)]
        for labels, value in samples:
            if value is None:
                continue
            if labels:
                text = ",".join('%s="%s"' % (k, _label(v)) for k, v in sorted(labels.items()))
                self.lines.append("%s{%s} %s" % (name, text, _number(value)))
            else:
                self.lines.append("%s %s" % (name, _number(value)))

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


MetricsWriter = _Writer     # the public name (webapp/fleetmetrics.py writes the fleet's series with it)


def _number(value) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    try:
        return repr(float(value))
    except (TypeError, ValueError):
        return "NaN"


def render(state) -> str:
    status = state.status()
    counters = status.get("counters") or {}
    w = _Writer()
    w.metric("nsgraph_up", "gauge", "1 when tracing runs, 0 while starting or after an error",
             1 if status.get("state") == "running" else 0)
    w.metric("nsgraph_state", "gauge", "the service state (1 for the current one)",
             [({"state": s}, 1 if status.get("state") == s else 0) for s in ("starting", "running", "error")])
    degraded = {h["check"] for h in status.get("health") or []}
    w.metric("nsgraph_degraded", "gauge", "1 for each degraded part (the message is in /api/status warnings)",
             [({"check": c}, 1 if c in degraded else 0) for c in HEALTH_CHECKS])
    for key, help_text in (("events", "events received from the kernel"),
                           ("lost", "events the kernel could not deliver (buffer full)"),
                           ("repaired", "graph inconsistencies repaired from /proc"),
                           ("rejected", "malformed records rejected by the decoder")):
        w.metric("nsgraph_%s_total" % key, "counter", help_text, _int(counters.get(key)))
    w.metric("nsgraph_namespaces_alive", "gauge", "namespaces alive in the graph",
             _int(counters.get("namespaces_alive")))
    by_type = counters.get("namespaces_by_type") or {}
    w.metric("nsgraph_namespaces", "gauge", "namespaces alive in the graph, by type",
             [({"type": t}, _int(n)) for t, n in sorted(by_type.items())])
    w.metric("nsgraph_graph_version", "gauge", "the graph's version number", _int(status.get("version")))

    demos = state.demos.stats()
    w.metric("nsgraph_demos_started_total", "counter", "demo runs started", demos["started"])
    w.metric("nsgraph_demos_running", "gauge", "demo runs in progress", demos["running"])
    w.metric("nsgraph_demos_failed_total", "counter", "demo runs that failed", demos["failed"])
    w.metric("nsgraph_demos_refused_total", "counter", "demo launches refused by the caps",
             [({"reason": "busy"}, demos["refused_busy"]), ({"reason": "rate"}, demos["refused_rate"])])

    hub = state.hub
    w.metric("nsgraph_sse_clients", "gauge", "open /stream connections", hub.open_streams)
    w.metric("nsgraph_sse_connections_total", "counter", "/stream connections accepted", hub.streams_total)
    w.metric("nsgraph_sse_messages_total", "counter", "SSE messages published", hub.published)
    w.metric("nsgraph_sse_resyncs_total", "counter", "resyncs sent to lagging or stale clients",
             hub.resyncs_sent)
    w.metric("nsgraph_sse_max_lag_messages", "gauge", "the largest backlog a client had (messages)",
             hub.max_lag)
    w.metric("nsgraph_sse_backlog_messages", "gauge", "SSE messages held for clients (bounded)",
             hub.backlog)
    w.metric("nsgraph_sse_events_unencodable_total", "counter",
             "trace events left out of the stream because they could not be encoded (a bug: see the log)",
             hub.events_unencodable)
    w.metric("nsgraph_sse_events_skipped_total", "counter",
             "trace events skipped in a storm beyond one ring of messages (never sent)", hub.events_skipped)
    w.metric("nsgraph_sse_events_dropped_total", "counter",
             "trace events left out of the stream because the tracer outran the publisher (graph diffs "
             "still carry every change)", hub.events_dropped)
    w.metric("nsgraph_sse_refused_total", "counter", "/stream connections refused at the --max-streams cap",
             hub.streams_refused)
    store = state.service.store if state.service is not None else None
    history = store.stats() if store is not None else {}
    if "queued" in history:         # a local SQLite history (a fleet node's is read from NATS)
        w.metric("nsgraph_history_queued_inputs", "gauge",
                 "graph inputs waiting for the history writer (bounded; beyond it they are dropped)",
                 _int(history.get("queued")))
        w.metric("nsgraph_history_dropped_inputs_total", "counter",
                 "graph inputs the history could not keep (writer behind or failing; a checkpoint follows)",
                 _int(history.get("dropped")))
    # Objects Python holds, against the process's resident memory: RSS far above what these
    # explain is memory the allocators keep after a peak (fragmentation), not live data.
    w.metric("nsgraph_python_allocated_blocks", "gauge", "memory blocks Python's allocator has handed out",
             sys.getallocatedblocks())
    server = state.server_stats()
    if server is not None:
        w.metric("nsgraph_http_connections", "gauge", "open HTTP connections", server["connections"])
        w.metric("nsgraph_http_connections_busy", "gauge", "connections with a request being served",
                 server["connections_busy"])
        w.metric("nsgraph_http_connections_max", "gauge", "the connection cap (--max-connections)",
                 server["connections_max"])
        w.metric("nsgraph_http_accepted_total", "counter", "connections accepted", server["accepted"])
        w.metric("nsgraph_http_closed_total", "counter", "connections closed by the server's policy",
                 [({"reason": r}, server["closed"].get(r, 0))
                  for r in ("request_timeout", "idle", "stalled", "shed")])
        w.metric("nsgraph_http_queued_requests", "gauge", "requests waiting for a worker thread",
                 server["queued_requests"])
        if "loop_passes" in server:
            w.metric("nsgraph_http_loop_passes_total", "counter", "passes of the server's event loop",
                     server["loop_passes"])
    w.metric("nsgraph_http_rejected_total", "counter", "requests refused by the security checks",
             [({"reason": r}, state.counters[r]) for r in
              ("rejected_host", "rejected_auth", "rejected_origin", "rejected_body")])
    return w.text()


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


@bp.route("/metrics")
def metrics():
    state = current_app.extensions["nsgraph"]
    # content_type, not mimetype: Flask appends "; charset=utf-8" to a mimetype itself.
    return Response(render(state), content_type=CONTENT_TYPE)
