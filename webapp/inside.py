"""The inside-view API: what a namespace contains, and namespaces of one type side by side.

    GET /api/namespace/<id>/inside         one namespace (tracer/host/inside/view.py's answer)
    GET /api/inside/compare?ns=ID&ns=ID    2-6 namespaces of one type: {"type", "columns", "rows", "views"}
    GET /api/inside/stats                  helper runs and refusals (counters)

Behind the same token as the rest of /api (auth.py).  An id must have a
namespace id's shape (400 otherwise) and name a namespace the live graph knows
(404 otherwise) before anything is read: no helper process starts for any
other request.  A namespace the graph already saw end answers "ended" without
a read.  Reads are rate-limited (429 + Retry-After) and at most a few run at
once; nothing is computed while nobody asks.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass

from flask import Blueprint, current_app, jsonify, request

from tracer.host.inside import resolve
from tracer.host.inside.spawn import STATS
from tracer.host.inside.view import ENDED, answer, compare, inspect

from .auth import error

bp = Blueprint("inside", __name__, url_prefix="/api")

MAX_COMPARE = 6


@dataclass
class InsideLimits:
    reads_per_window: int = 60        # namespaces read ...
    window_s: float = 10.0            # ... per this many seconds
    concurrent: int = 2               # requests reading at the same time
    queue_wait_s: float = 2.0         # how long a request waits for a free slot before 429


class InsideGate:
    """Admission for reads: a sliding-window rate limit and a cap on concurrent reads."""

    def __init__(self, limits: InsideLimits):
        self.limits = limits
        self._slots = threading.BoundedSemaphore(limits.concurrent)
        self._lock = threading.Lock()
        self._reads = collections.deque()
        self.counters = collections.Counter()

    def admit(self, cost: int):
        """None when admitted (call release() after), else (retry_after_s, why)."""
        now = time.monotonic()
        with self._lock:
            window = self.limits.window_s
            while self._reads and self._reads[0] <= now - window:
                self._reads.popleft()
            if len(self._reads) + cost > self.limits.reads_per_window:
                self.counters["refused_rate"] += 1
                oldest = self._reads[0] if self._reads else now
                return (max(1, int(oldest + window - now) + 1),
                        "rate limit: %d namespace reads per %d s" % (self.limits.reads_per_window, window))
            self._reads.extend([now] * cost)
        if not self._slots.acquire(timeout=self.limits.queue_wait_s):
            self.counters["refused_busy"] += 1
            return 1, "%d inside-view reads are already running" % self.limits.concurrent
        self.counters["admitted"] += 1
        return None

    def release(self) -> None:
        self._slots.release()


@bp.record_once
def _init(setup_state) -> None:
    setup_state.app.extensions.setdefault("nsgraph_inside", InsideGate(InsideLimits()))


def _gate() -> InsideGate:
    return current_app.extensions["nsgraph_inside"]


def _graph():
    state = current_app.extensions["nsgraph"]
    return state.graph()


def _not_ready():
    response = error(503, "the graph is not ready yet; watch /api/status")
    response.headers["Retry-After"] = "1"
    return response


def _refused(retry_after: int, why: str):
    response = error(429, "%s; try again in %d s" % (why, retry_after))
    response.headers["Retry-After"] = str(retry_after)
    return response


def _details(graph, ids: list):
    """(details, None) for ids the graph knows, else (None, error response).  Reads nothing."""
    details = []
    for ident in ids:
        try:
            detail = resolve.lookup(graph, ident)
        except resolve.BadRef as exc:
            _gate().counters["refused_bad_id"] += 1
            return None, error(400, str(exc))
        if detail is None:
            _gate().counters["refused_unknown"] += 1
            return None, error(404, "no namespace %r in the graph (ids come from /api/graph)" % ident[:80])
        details.append(detail)
    return details, None


def _read(graph, details: list) -> list:
    """Views for the details, in order; each distinct live namespace is read once."""
    hosts = resolve.host_ids(graph)
    unique = {}
    for d in details:
        if d.get("alive", True) and d["id"] not in unique:
            unique[d["id"]] = resolve.target_from(d, hosts)
    views = dict(zip(unique, inspect(list(unique.values())))) if unique else {}
    return [views[d["id"]] if d["id"] in views else answer(resolve.target_from(d, hosts), "ended", ENDED)
            for d in details]


def _admitted_read(graph, details: list):
    """(views, None) or (None, a 429 response)."""
    cost = len({d["id"] for d in details if d.get("alive", True)})
    if not cost:
        return _read(graph, details), None
    gate = _gate()
    refused = gate.admit(cost)
    if refused is not None:
        return None, _refused(*refused)
    try:
        return _read(graph, details), None
    finally:
        gate.release()


@bp.route("/namespace/<ns_id>/inside")
def namespace_inside(ns_id):
    graph = _graph()
    if graph is None:
        return _not_ready()
    details, bad = _details(graph, [ns_id])
    if bad is not None:
        return bad
    views, refused = _admitted_read(graph, details)
    if refused is not None:
        return refused
    view = views[0]
    response = jsonify(view)
    if view["state"] == "error":
        response.status_code = 502
    return response


@bp.route("/inside/compare")
def inside_compare():
    graph = _graph()
    if graph is None:
        return _not_ready()
    ids = [i for raw in request.args.getlist("ns") for i in raw.split(",") if i]
    if not 2 <= len(ids) <= MAX_COMPARE:
        return error(400, "compare 2 to %d namespaces: /api/inside/compare?ns=ID&ns=ID" % MAX_COMPARE)
    details, bad = _details(graph, ids)
    if bad is not None:
        return bad
    types = sorted({d["type"] for d in details})
    if len(types) != 1:
        return error(400, "compare namespaces of one type at a time (got %s)" % ", ".join(types))
    views, refused = _admitted_read(graph, details)
    if refused is not None:
        return refused
    table = compare(views)
    table["views"] = views
    return jsonify(table)


@bp.route("/inside/stats")
def inside_stats():
    gate = _gate()
    return jsonify({"helpers": STATS.snapshot(), "requests": dict(gate.counters),
                    "limits": {"reads_per_window": gate.limits.reads_per_window,
                               "window_s": gate.limits.window_s, "concurrent": gate.limits.concurrent}})
