"""/metrics in fleet mode: the fleet's own series and one series per node (label `node`).

Same exposition format and token rule as webapp/metrics.py (the single-host series).
"""

from __future__ import annotations

import time

from .metrics import MetricsWriter

STATES = ("live", "stale", "offline", "unknown")
LOSSES = (("kernel_lost", "kernel"), ("agent_dropped", "agent"), ("publish_refused", "refused"),
          ("stream_missed", "stream"), ("bad_messages", "malformed"))


def render(service, state) -> str:
    fleet = service.fleet
    now = time.time()
    rows = [fleet.node_summary(n, now) for n in fleet.names()]
    rows = [r for r in rows if r is not None]
    w = MetricsWriter()
    w.metric("nsgraph_fleet_connected", "gauge", "1 while the dashboard is connected to NATS",
             1 if fleet.connection.get("connected") else 0)
    w.metric("nsgraph_fleet_nodes", "gauge", "nodes by health",
             [({"state": s}, sum(1 for r in rows if r["health"]["state"] == s)) for s in STATES])
    w.metric("nsgraph_fleet_bad_messages_total", "counter", "messages on fleet subjects that were not nsgraph wire data",
             fleet.counters.get("bad_messages", 0))
    w.metric("nsgraph_fleet_refused_clients_total", "counter",
             "clients the NATS servers refused at authentication (needs the monitor bundle)",
             fleet.counters.get("auth_errors", 0))
    w.metric("nsgraph_fleet_repositions_total", "counter", "times a node's consumer read again after a hole",
             service.consumer.counters.get("repositions", 0))

    def per_node(name, kind, help_text, value_of):
        w.metric(name, kind, help_text, [({"node": r["node"]}, value_of(r)) for r in rows])

    per_node("nsgraph_fleet_node_up", "gauge", "1 when the node is live", lambda r: r["health"]["state"] == "live")
    w.metric("nsgraph_fleet_node_state", "gauge", "the node's health (1 for the current one)",
             [({"node": r["node"], "state": s}, r["health"]["state"] == s) for r in rows for s in STATES])
    per_node("nsgraph_fleet_heartbeat_age_seconds", "gauge", "seconds since the node's last heartbeat",
             lambda r: r["health"].get("heartbeat_age_s"))
    per_node("nsgraph_fleet_events_total", "counter", "tracer events the node's graph has applied",
             lambda r: r.get("events", 0))
    per_node("nsgraph_fleet_records_applied_total", "counter", "journal records applied to the node's replica here",
             lambda r: r["replica"]["records"])
    per_node("nsgraph_fleet_resets_total", "counter", "times the node's replica was reset from a checkpoint",
             lambda r: r["replica"]["resets"])
    w.metric("nsgraph_fleet_lost_total", "counter",
             "records lost or refused on the way from the node's kernel to here, by where",
             [({"node": r["node"], "where": where}, r["health"]["losses"].get(key, 0))
              for r in rows for key, where in LOSSES])
    per_node("nsgraph_fleet_processes", "gauge", "processes in the node's graph", lambda r: r.get("processes", 0))
    per_node("nsgraph_fleet_containers", "gauge", "containers in the node's graph", lambda r: len(r.get("containers") or []))
    w.metric("nsgraph_fleet_namespaces", "gauge", "live namespaces in the node's graph, by type",
             [({"node": r["node"], "type": t}, n) for r in rows for t, n in sorted(r["namespaces_by_type"].items())])
    w.metric("nsgraph_fleet_latency_seconds", "gauge",
             "journal record on the node -> applied here (recent samples), by quantile",
             [({"node": r["node"], "quantile": q}, r["replica"].get(key)) for r in rows
              for q, key in (("0.5", "latency_p50_s"), ("0.99", "latency_p99_s"))])
    w.metric("nsgraph_http_rejected_total", "counter", "requests refused by the security checks",
             [({"reason": r}, state.counters[r]) for r in
              ("rejected_host", "rejected_auth", "rejected_origin", "rejected_body")])
    return w.text()
