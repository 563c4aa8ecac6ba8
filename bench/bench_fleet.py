#!/usr/bin/env python3
"""The fleet's numbers, measured on the real stack: a three-server NATS JetStream cluster
on loopback (TLS, per-node credentials), nsgraph agents, the fleet dashboard.

  latency   3 agents, 5 000 events/s each (one kernel, three agents: every agent sees every
            event), markers (`unshare --uts sleep`) every 0.1 s: kernel event -> the marker's
            namespace arrives in the fleet dashboard's per-node stream (/node/N/stream, what a
            browser gets).  p50/p99 per node; loss: every marker seen, the kernel, the agents
            and the stream lost nothing, and every node's graph counted every workload call.
  restart   the agents run for --history-min minutes (load at 500 events/s); the dashboard
            is killed and started again: seconds until every node is live with its graph.
  overhead  `nsgraph serve` vs `nsgraph agent` on this host, same workload (2 000 events/s),
            alternating pairs: CPU seconds and RSS of each process; medians and spread.
  memory    1 000 extra processes; one node graph's checkpoint loaded into K replicas in
            this process: memory per replica (what the dashboard holds per node).
Then the 1 000-node estimate from these numbers.

Needs root, nats-server and nats-py (scripts/setup.sh test installs them), a C compiler.
usage: sudo .venv/bin/python bench/bench_fleet.py [--phases latency,restart,overhead,memory]
           [--seconds 30] [--history-min 10] [--pairs 5]
The machine may be shared: every ratio is measured within one run, in alternating pairs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path[:0] = [REPO, HERE, os.path.join(REPO, "tests", "fleet")]

from bench_tracer import build_workload, rss_mb  # noqa: E402
from fleetwhere import CpuMeter, Where, cpu_s  # noqa: E402
from harness import NSGRAPH, Agent, Cluster, Dashboard, Process, free_ports, wait_until  # noqa: E402

from tracer.exitcodes import EXIT_FAILURE, EXIT_NO_PRIVILEGES, EXIT_OK  # noqa: E402

NODES = ("bench-a", "bench-b", "bench-c")


def pct(values, q):
    s = sorted(values)
    return s[max(0, min(len(s) - 1, int(round(q / 100.0 * len(s) + 0.5)) - 1))] if s else None


class StreamWatch(threading.Thread):
    """Reads one node's SSE stream; records when each uts namespace made by a marker arrives.

    A `resync` (the page would fetch the whole graph again) is followed the same way: the
    graph is fetched and markers found in it count as arrived then (an upper bound)."""

    def __init__(self, dashboard, node, markers):
        super().__init__(daemon=True)
        self.dashboard, self.node, self.markers = dashboard, node, markers
        self.latency = {}
        self.resyncs = 0
        self.stop = False
        self.error = None           # why the stream ended early (a stall past 60 s on a loaded machine)

    def _note(self, ns, now):
        creator = ns.get("creator") or {}
        if ns.get("type") == "uts" and creator.get("pid") in self.markers and creator["pid"] not in self.latency:
            self.latency[creator["pid"]] = now - ns["created"]

    def run(self):
        try:
            self._follow()
        except (OSError, ValueError) as exc:
            self.error = "%s: %s" % (type(exc).__name__, exc)

    def _follow(self):
        req = urllib.request.Request("http://127.0.0.1:%d/node/%s/stream" % (self.dashboard.port, self.node),
                                     headers={"Authorization": "Bearer " + self.dashboard.token})
        with urllib.request.urlopen(req, timeout=60) as resp:
            kind = None
            for raw in resp:
                if self.stop:
                    return
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: ") and kind == "diff":
                    now = time.time()
                    for change in json.loads(line[6:]).get("changes", []):
                        if change.get("entity") == "namespace" and change.get("data"):
                            self._note(change["data"], now)
                elif line.startswith("data: ") and kind == "resync":
                    self.resyncs += 1
                    graph = self.dashboard.graph(self.node) or {}
                    now = time.time()
                    for ns in graph.get("namespaces", []):
                        self._note(ns, now)


def start_fleet(base, nodes, agent_extra=()):
    cluster = Cluster(base, list(nodes))
    cluster.start()
    cluster.make_streams()
    agents = {n: Agent(cluster, n, base, extra=list(agent_extra)).start() for n in nodes}
    dashboard = Dashboard(cluster, base).start()
    return cluster, agents, dashboard


def wait_live(dashboard, nodes, timeout=180):
    def live():
        rows = {n["node"]: n for n in dashboard.overview()["nodes"]}
        return all(rows.get(n, {}).get("health", {}).get("state") == "live" and rows[n]["replica"]["synced"]
                   for n in nodes)
    wait_until(live, "nodes live", timeout, step=0.2)


def phase_latency(base, workload, seconds, rate):
    cluster, agents, dashboard = start_fleet(base, NODES)
    try:
        wait_live(dashboard, NODES)
        before = {n: dashboard.graph(n)["counters"].get("failed_calls", 0) for n in NODES}
        markers = set()
        watches = [StreamWatch(dashboard, n, markers) for n in NODES]
        for w in watches:
            w.start()
        where = Where(dashboard, NODES)
        where.start()
        pids = {"agent " + n: a.proc.pid for n, a in agents.items()}
        pids["dashboard"] = dashboard.proc.pid
        pids.update((server.name, server.proc.pid) for server in cluster.servers)
        time.sleep(1)
        meter = CpuMeter(pids).start()
        load = subprocess.Popen([workload, "setns-rate", str(rate), str(seconds)], stdout=subprocess.PIPE, text=True)
        sleepers = []
        end = time.monotonic() + seconds - 2
        while time.monotonic() < end:
            p = subprocess.Popen(["unshare", "--uts", "sleep", "30"])
            markers.add(p.pid)
            sleepers.append(p)
            time.sleep(0.1)
        calls = int(load.communicate(timeout=seconds + 60)[0].strip() or 0)
        cores = meter.stop()
        try:
            wait_until(lambda: all(len(w.latency) == len(markers) for w in watches), "every marker on every node",
                       120, step=0.5)
        except AssertionError:
            pass        # reported below: markers seen per node, and what each part of the way lost
        where.stop = True
        try:        # count the workload's calls once every replica has what its agent had taken
            wait_until(lambda: all(s["replica_behind"] == 0 for s in where_now(dashboard)), "replicas caught up",
                       120, step=0.5)
        except AssertionError:
            pass
        for p in sleepers:
            p.kill()
            p.wait()
        out = {"rate_per_agent": rate, "seconds": seconds, "workload_calls": calls, "markers": len(markers),
               "cores_during_load": cores, "where": where.summary(), "nodes": {},
               # The dashboard's CPU per record, all in (NATS client, decode, replay, SSE, HTTP):
               # its cores over the records/s it was sent (3 agents x rate, plus their /proc reads).
               "dashboard_us_per_record": round(cores["dashboard"] * 1e6 / (len(NODES) * rate), 1)
               if cores.get("dashboard") else None}
        for w in watches:
            w.stop = True
            row = dashboard.node(w.node)
            graph = dashboard.graph(w.node)
            lat = [v * 1000 for v in w.latency.values()] or [float("nan")]
            out["nodes"][w.node] = {
                "p50_ms": round(pct(lat, 50), 1), "p99_ms": round(pct(lat, 99), 1), "max_ms": round(max(lat), 1),
                "markers_seen": len(w.latency), "resyncs": w.resyncs, "stream_error": w.error, "losses": row["health"]["losses"],
                "replica": {k: row["replica"][k] for k in ("records", "latency_p50_s", "latency_p99_s", "resets")},
                "calls_counted": graph["counters"].get("failed_calls", 0) - before[w.node],
                "agent_published": dashboard.get("/api/fleet/nodes/%s" % w.node)["heartbeat"]["outbox"]}
        return out
    finally:
        stop_all(cluster, agents, dashboard)


def where_now(dashboard):
    out = []
    for node in NODES:
        row = dashboard.get("/api/fleet/nodes/%s" % node)
        out.append({"replica_behind": max(0, (row["heartbeat"].get("seq") or 0) - (row["replica"].get("seq") or 0))})
    return out


def stop_all(cluster, agents, dashboard):
    for a in agents.values():
        a.signal()
    if dashboard is not None:
        dashboard.signal()
    cluster.stop()


def phase_restart(base, workload, minutes, rate):
    # The agents' default checkpoint interval (the tests' 15 s would shorten the tail to replay).
    cluster, agents, dashboard = start_fleet(base, NODES, agent_extra=["--checkpoint-interval", "60"])
    load = None
    try:
        wait_live(dashboard, NODES)
        load = subprocess.Popen([workload, "setns-rate", str(rate), str(minutes * 60 + 180)], stdout=subprocess.DEVNULL)
        time.sleep(minutes * 60)
        # The worst moment: every node's newest checkpoint 45-58 s old, so that a restart has
        # nearly a whole interval of records to replay (killed right after the checkpoints, as
        # a run of exactly N minutes would be, it replays almost nothing).
        deadline = time.monotonic() + 90
        while True:
            ages = as_admin(cluster, checkpoint_ages)
            if (min(ages.values()) >= 45 and max(ages.values()) < 58) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        stream = as_admin(cluster, stream_info)
        # What each node had published when the dashboard died: "live again" also means every
        # record up to there replayed (health turns live up to 10 s of records before that).
        published = {n: dashboard.get("/api/fleet/nodes/%s" % n)["heartbeat"]["seq"] for n in NODES}
        dashboard.kill()
        t0 = time.monotonic()
        dashboard = Dashboard(cluster, base).start()
        listening_s = time.monotonic() - t0
        wait_live(dashboard, NODES, timeout=120)
        live_s = time.monotonic() - t0
        at_live = {n: dashboard.node(n)["replica"]["records"] for n in NODES}
        wait_until(lambda: all(dashboard.node(n)["replica"]["seq"] >= published[n] for n in NODES),
                   "every record published before the restart replayed", 120, step=0.2)
        caught_up_s = time.monotonic() - t0
        return {"history_minutes": minutes, "rate_per_agent": rate, "stream": stream,
                "checkpoint_age_at_kill_s": {n: round(v, 1) for n, v in ages.items()}, "checkpoint_interval_s": 60,
                "listening_s": round(listening_s, 2), "live_again_s": round(live_s, 2), "caught_up_s": round(caught_up_s, 2),
                "records_replayed_when_live": at_live,
                "records_replayed_when_caught_up": {n: dashboard.node(n)["replica"]["records"] for n in NODES},
                "load_at_restart": os.getloadavg()[0]}
    finally:
        if load is not None:
            load.kill()
            load.wait()
        stop_all(cluster, agents, dashboard)


async def checkpoint_ages(js):
    """Seconds since each node's newest checkpoint reached the stream."""
    out = {}
    for node in NODES:
        msg = await js.get_last_msg("NSGRAPH", "nsgraph.%s.checkpoints" % node)
        out[node] = time.time() - msg.time.timestamp() if msg.time else 0.0
    return out


def as_admin(cluster, ask):
    """ask(jetstream) with the admin identity, on a connection of its own."""
    import nats

    from tracer.fleet.natsconn import Credentials, connect_options

    async def run():
        creds = Credentials.load(cluster.creds("admin"))
        nc = await nats.connect(**connect_options(creds, cluster.urls.split(","), "bench"))
        try:
            return await ask(nc.jetstream())
        finally:
            await nc.close()
    return asyncio.run(run())


async def stream_info(js):
    info = await js.stream_info("NSGRAPH")
    return {"messages": info.state.messages, "bytes": info.state.bytes}


def phase_overhead(base, workload, pairs, seconds, rate):
    cluster = Cluster(base, ["over"])
    cluster.start()
    cluster.make_streams()
    db = os.path.join(base, "serve.db")
    runs = {"serve": [], "agent": []}
    try:
        for i in range(pairs):
            for kind in (("serve", "agent") if i % 2 == 0 else ("agent", "serve")):
                if kind == "serve":
                    port = free_ports(1)[0]
                    proc = Process("serve-%d" % i, NSGRAPH + ["serve", "--port", str(port), "--db", db, "--read-only"],
                                   base).start()
                    ready = "running: tracing started"
                else:
                    proc = Agent(cluster, "over", base).start()
                    ready = "running: streaming"
                wait_until(lambda: ready in proc.output(), "%s ready" % kind, 120, step=0.2)
                time.sleep(2)
                c0 = cpu_s(proc.proc.pid)
                subprocess.run([workload, "setns-rate", str(rate), str(seconds)], stdout=subprocess.DEVNULL, check=True)
                time.sleep(1)
                runs[kind].append({"cpu_s": cpu_s(proc.proc.pid) - c0, "rss_mb": rss_mb(proc.proc.pid)})
                proc.signal()
        out = {"pairs": pairs, "seconds": seconds, "rate": rate}
        for kind, rows in runs.items():
            out[kind] = {"cpu_s_median": round(statistics.median(r["cpu_s"] for r in rows), 3),
                         "cpu_s_all": [round(r["cpu_s"], 2) for r in rows],
                         "rss_mb_median": round(statistics.median(r["rss_mb"] for r in rows), 1),
                         "rss_mb_all": [round(r["rss_mb"], 1) for r in rows]}
        out["cpu_agent_vs_serve"] = round(out["agent"]["cpu_s_median"] / out["serve"]["cpu_s_median"], 3)
        out["rss_agent_vs_serve"] = round(out["agent"]["rss_mb_median"] / out["serve"]["rss_mb_median"], 3)
        return out
    finally:
        cluster.stop()


def phase_memory(base, processes, replicas):
    cluster, agents, dashboard = start_fleet(base, ["mem"])
    sleepers = []
    try:
        wait_live(dashboard, ["mem"])
        for _ in range(processes):
            sleepers.append(subprocess.Popen(["sleep", "600"]))
        wait_until(lambda: dashboard.node("mem")["processes"] >= processes, "the processes in the graph", 120)
        agents["mem"].signal()                     # a restart publishes a start checkpoint with them all
        agents["mem"] = Agent(cluster, "mem", base).start()
        wait_live(dashboard, ["mem"])
        last = as_admin(cluster, lambda js: js.get_last_msg("NSGRAPH", "nsgraph.mem.checkpoints"))
        subj, headers, body = last.subject, last.headers, last.data
        import gc

        from tracer.fleet.replica import NodeReplica
        from tracer.fleet.wire import decode
        gc.collect()
        before = rss_mb(os.getpid())
        held = []
        for i in range(replicas):
            # Each replica from its own decoding of the message, as the dashboard does (a shared
            # decoded state would let the replicas share its strings and lists).
            r = NodeReplica("mem-%d" % i)
            r.on_checkpoint(decode(subj, headers, body))
            held.append(r)
        gc.collect()
        per = (rss_mb(os.getpid()) - before) / replicas
        return {"processes_in_graph": len(held[0].graph.to_json()["processes"]),
                "namespaces_in_graph": len(held[0].graph.to_json()["namespaces"]),
                "checkpoint_bytes": len(body),
                "replicas_loaded": replicas, "mb_per_replica": round(per, 2),
                "dashboard_rss_mb": round(rss_mb(dashboard.proc.pid), 1)}
    finally:
        for p in sleepers:
            p.kill()
            p.wait()
        stop_all(cluster, agents, dashboard)


def estimate(results):
    lat = results.get("latency")
    mem = results.get("memory")
    if not lat:
        return None
    node = next(iter(lat["nodes"].values()))
    sent = node["agent_published"]
    per_record = sent["sent_bytes"] / max(1, sent["sent_records"])
    msgs_per_s = sent["sent_messages"] / max(1.0, lat["seconds"])
    out = {"bytes_per_record": round(per_record, 1), "messages_per_s_per_agent_at_5000": round(msgs_per_s, 1)}
    for label, rate in (("typical_50_per_s", 50), ("busy_5000_per_s", 5000)):
        out[label] = {"events_per_s": 1000 * rate, "stream_bytes_per_s": round(1000 * rate * per_record),
                      "storage_per_day_gb": round(1000 * rate * per_record * 86400 / 1e9, 1)}
    if mem:
        out["dashboard_memory_gb_for_1000_nodes_of_1000_processes"] = round(mem["mb_per_replica"] * 1000 / 1024, 1)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phases", default="latency,restart,overhead,memory")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rate", type=int, default=5000)
    parser.add_argument("--history-min", type=float, default=10.0)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--processes", type=int, default=1000)
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_fleet: run as root (the agents load eBPF probes)", file=sys.stderr)
        return EXIT_NO_PRIVILEGES
    if shutil.which("nats-server") is None:
        print("bench_fleet: nats-server is missing (scripts/setup.sh test installs it)", file=sys.stderr)
        return EXIT_FAILURE
    results = {"machine": {"cpus": os.cpu_count(), "load_before": os.getloadavg()[0], "shared": True}}
    with tempfile.TemporaryDirectory(prefix="nsgraph-bench-fleet-") as tmp:
        cc = shutil.which("cc") or shutil.which("gcc")
        if cc is None:
            print("bench_fleet: a C compiler is needed (apt-get install gcc)", file=sys.stderr)
            return EXIT_FAILURE
        workload = build_workload(cc, tmp)
        phases = args.phases.split(",")
        if "latency" in phases:
            results["latency"] = phase_latency(tempfile.mkdtemp(dir=tmp), workload, args.seconds, args.rate)
            print(json.dumps({"latency": results["latency"]}, indent=1), flush=True)
        if "restart" in phases:
            results["restart"] = phase_restart(tempfile.mkdtemp(dir=tmp), workload, args.history_min, 500)
            print(json.dumps({"restart": results["restart"]}, indent=1), flush=True)
        if "overhead" in phases:
            results["overhead"] = phase_overhead(tempfile.mkdtemp(dir=tmp), workload, args.pairs, 15.0, 2000)
            print(json.dumps({"overhead": results["overhead"]}, indent=1), flush=True)
        if "memory" in phases:
            results["memory"] = phase_memory(tempfile.mkdtemp(dir=tmp), args.processes, 10)
            print(json.dumps({"memory": results["memory"]}, indent=1), flush=True)
    results["estimate_1000_nodes"] = estimate(results)
    results["machine"]["load_after"] = os.getloadavg()[0]
    print(json.dumps(results, indent=1) if args.json else summary(results))
    return EXIT_OK


def summary(r) -> str:
    lines = ["", "== bench_fleet (2-core machine, shared: load %.1f -> %.1f) ==" % (r["machine"]["load_before"],
                                                                              r["machine"]["load_after"])]
    if "latency" in r:
        for node, row in r["latency"]["nodes"].items():
            lines.append("latency %s: p50 %s ms, p99 %s ms (target p99 <= 500), markers %d/%d, losses %s, "
                         "workload calls counted %d/%d" % (node, row["p50_ms"], row["p99_ms"], row["markers_seen"],
                                                           r["latency"]["markers"], row["losses"],
                                                           row["calls_counted"], r["latency"]["workload_calls"]))
    if "latency" in r:
        lines.append("CPU cores during the load: %s; dashboard %s us per record"
                     % (json.dumps(r["latency"]["cores_during_load"]), r["latency"]["dashboard_us_per_record"]))
        for node, row in r["latency"]["where"].items():
            lines.append("where %s: %s" % (node, json.dumps(row)))
    if "restart" in r:
        lines.append("dashboard restart with %.0f min of history on 3 nodes: listening after %.2f s, every node live "
                     "again after %.2f s (target <= 10), every record published before the restart replayed after %.2f s"
                     % (r["restart"]["history_minutes"], r["restart"]["listening_s"], r["restart"]["live_again_s"],
                        r["restart"]["caught_up_s"]))
    if "overhead" in r:
        o = r["overhead"]
        lines.append("agent vs serve: CPU x%.3f, RSS x%.3f (target <= 1.10); serve %s CPU-s %s MB, agent %s CPU-s %s MB"
                     % (o["cpu_agent_vs_serve"], o["rss_agent_vs_serve"], o["serve"]["cpu_s_all"],
                        o["serve"]["rss_mb_all"], o["agent"]["cpu_s_all"], o["agent"]["rss_mb_all"]))
    if "memory" in r:
        m = r["memory"]
        lines.append("dashboard memory per node graph of %d processes (%d namespaces): %.2f MB"
                     % (m["processes_in_graph"], m["namespaces_in_graph"], m["mb_per_replica"]))
    if r.get("estimate_1000_nodes"):
        lines.append("1 000-node estimate: %s" % json.dumps(r["estimate_1000_nodes"]))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
