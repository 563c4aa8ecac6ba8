#!/usr/bin/env python3
"""The fleet dashboard's cost per journal record, offline: records/s per core.

An agent's real data path (NamespaceGraph with the journal tap, Batcher, Outbox, the
wire encoding) turns a synthetic copy of bench_fleet's latency workload (a storm of
failing setns calls from one process, and every 500 records a marker: clone, exec of
`unshare`, unshare(CLONE_NEWUTS), exec of `sleep`, exit) into the events messages it
would publish, 50 ms worth (250 records at 5 000 events/s) each.  The dashboard's side
then takes them as `serve --fleet` does for one node: wire decode -> NodeReplica
(replay into the node's graph) -> the node page's SSE hub with one open stream (every
event encoded for the browser, diffs coalesced).  Each stage is timed in CPU seconds of
its thread (time.thread_time), so a busy machine slows it less than a wall clock would.

--against DIR measures another source tree (e.g. `git archive main | tar -x -C DIR`) in
alternating pairs with this one, each in its own process; medians and spread.

usage: .venv/bin/python bench/bench_fleet_replay.py [--records 60000] [--pairs 3] [--against DIR] [--json]
No root, no NATS: the messages never leave the process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BATCH = 250                         # records per message: 50 ms at 5 000 events/s
MARKER_EVERY = 500                  # bench_fleet: a marker every 0.1 s at 5 000 events/s
DEV = 4
HOST = {"mnt": 100, "pid": 101, "pid_for_children": 101, "net": 102, "uts": 103, "ipc": 104,
        "user": 105, "cgroup": 106, "time": 107, "time_for_children": 107}


def agent_messages(records: int):
    """The events messages (and the start checkpoint) an agent publishes for the workload."""
    import collections

    from tracer import nstypes
    from tracer.events.event import Event
    from tracer.fleet import wire
    from tracer.fleet.outbox import Batcher, JournalTap, Outbox
    from tracer.graph.model import NamespaceGraph
    from tracer.host.snapshot import NsInfo, ProcInfo, Snapshot

    namespaces = {}
    for slot, inode in HOST.items():
        kind = slot.replace("_for_children", "")
        namespaces[(kind, DEV, inode)] = NsInfo(kind, inode, DEV, ns_id=inode,
                                                owner_inode=None if kind == "user" else 105)
    procs = {pid: ProcInfo(pid, 0 if pid == 1 else 1, 0, "init" if pid == 1 else "sh", ["sh"], pid, "0::/",
                           {s: (DEV, i) for s, i in HOST.items()}) for pid in (1, 50, 4242)}
    graph = NamespaceGraph(dev=DEV)
    graph.load_snapshot(Snapshot(time.time(), procs, namespaces, collections.Counter()))
    tap, outbox = JournalTap(), Outbox(1 << 30)
    batcher = Batcher(graph, tap, outbox, "bench", "run1", max_records_per_message=10 * BATCH)
    with graph.lock:
        state = graph.export_state()
        graph.add_journal(tap)
    start = wire.encode_checkpoint("bench", "run1", state, "start", 60.0)
    host, before, seq, uts, pid = dict(HOST), dict(HOST), 0, 5000, 100000
    t0 = time.time()

    def event(kind, p, **kw):
        nonlocal seq
        seq += 1
        base = dict(kind=kind, seq=seq, ts=t0 + seq / 5000, pid=p, tid=p, ppid=50, uid=0, vpid=p, comm="workload")
        base.update(kw)
        return Event(**base)

    while seq < records:
        if seq % MARKER_EVERY == 0:
            pid += 1
            uts += 1
            mine = dict(host, uts=uts)
            for ev in (event("clone", 50, syscall="clone", child_pid=pid, child_vpid=pid, raw_flags=17, ns=host,
                             ns_before=before),
                       event("exec", pid, filename="/usr/bin/unshare", comm="unshare", args=["unshare", "--uts"]),
                       event("unshare", pid, syscall="unshare", raw_flags=nstypes.CLONE_NEWUTS, ns=mine,
                             ns_before=host, comm="unshare"),
                       event("exec", pid, filename="/usr/bin/sleep", comm="sleep", args=["sleep", "30"], ns=mine),
                       event("exit", pid, exit_code=0, ns=mine)):
                graph.apply(ev)
        graph.apply(event("setns", 4242, syscall="setns", raw_flags=nstypes.CLONE_NEWNET, ret=-9, fd=-1,
                          ns=host, ns_before=host))
        if len(tap) >= BATCH:
            batcher.flush()
    batcher.flush()
    messages = []
    while True:
        msg = outbox.peek()
        if msg is None:
            break
        outbox.pop(msg)
        if msg.kind == "events":
            messages.append(msg)
    return start, messages


def measure(records: int) -> dict:
    """One run in this process, against the tree on sys.path."""
    from tracer.fleet import wire
    from tracer.fleet.fleet import Fleet
    from tracer.fleet.nodeview import NodeService
    from webapp.config import WebConfig
    from webapp.stream import StreamHub

    from tracer import malloc
    start, messages = agent_messages(records)
    malloc.tune_gc()                # as `serve` runs: no automatic full collection (tracer/malloc.py)
    malloc.freeze_startup()
    fleet = Fleet()
    replica = fleet.node("bench", create=True).replica
    replica.on_checkpoint(wire.decode(start.subject, start.headers, start.body))
    hub = StreamHub(NodeService(fleet, "bench"), WebConfig(), lambda: {"state": "running"})
    hub.try_open()                  # one browser tab on the node's page
    hub.pump()
    clock = time.thread_time
    spent = {"decode": 0.0, "replay": 0.0, "sse": 0.0}
    count = 0
    for msg in messages:
        a = clock()
        batch = wire.decode(msg.subject, dict(msg.headers), msg.body)
        b = clock()
        count += replica.on_events(batch)
        c = clock()
        hub.pump()
        d = clock()
        spent["decode"] += b - a
        spent["replay"] += c - b
        spent["sse"] += d - c
    total = sum(spent.values())
    out = {"records": count, "messages": len(messages),
           "bytes_per_record": round(sum(len(m.body) for m in messages) / max(1, count), 2),
           "records_per_s_per_core": round(count / total) if total else None,
           "us_per_record": {k: round(v / count * 1e6, 2) for k, v in spent.items()},
           "wire": messages[0].headers.get("Nsgraph-Wire") if messages else None}
    out["us_per_record"]["total"] = round(total / count * 1e6, 2)
    return out


def run_tree(tree: str, records: int) -> dict:
    """measure() in a child process whose imports come from `tree`."""
    env = dict(os.environ, PYTHONPATH=tree)
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", "--records", str(records)],
                          cwd=tree, env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError("measuring %s failed: %s" % (tree, (proc.stderr.strip().splitlines() or ["?"])[-1]))
    return json.loads(proc.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=60_000)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--against", metavar="DIR", help="another source tree, measured in alternating pairs")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, os.getcwd() if args.child else REPO)     # the child: the tree it measures
    from tracer.exitcodes import EXIT_OK, EXIT_USAGE
    if args.child:
        print(json.dumps(measure(args.records)))
        return EXIT_OK
    trees = {"this": REPO}
    if args.against:
        if not os.path.isdir(os.path.join(args.against, "tracer", "fleet")):
            print("bench_fleet_replay: %s is not an nsgraph source tree with tracer/fleet" % args.against,
                  file=sys.stderr)
            return EXIT_USAGE
        trees["against"] = os.path.abspath(args.against)
    runs = {name: [] for name in trees}
    load = [os.getloadavg()[0]]
    for i in range(args.pairs):
        order = list(trees) if i % 2 == 0 else list(reversed(trees))
        for name in order:
            runs[name].append(run_tree(trees[name], args.records))
    load.append(os.getloadavg()[0])
    result = {"load": load, "records": args.records, "pairs": args.pairs, "trees": trees, "runs": runs,
              "median": {name: {"records_per_s_per_core": statistics.median(r["records_per_s_per_core"] for r in rows),
                                "us_per_record": {k: round(statistics.median(r["us_per_record"][k] for r in rows), 2)
                                                  for k in rows[0]["us_per_record"]},
                                "bytes_per_record": rows[0]["bytes_per_record"], "wire": rows[0]["wire"]}
                         for name, rows in runs.items()}}
    if args.json:
        print(json.dumps(result, indent=1))
        return EXIT_OK
    print("fleet dashboard per record, offline (%d records, %d pair(s); load %.1f -> %.1f on %d cores)"
          % (args.records, args.pairs, load[0], load[1], os.cpu_count()))
    for name, row in result["median"].items():
        spread = [r["records_per_s_per_core"] for r in runs[name]]
        print("  %-8s wire v%s: %7d records/s per core (runs %s); us per record %s; %.1f bytes per record"
              % (name, row["wire"], row["records_per_s_per_core"], spread, json.dumps(row["us_per_record"]),
                 row["bytes_per_record"]))
    if "against" in result["median"]:
        ratio = result["median"]["this"]["records_per_s_per_core"] / result["median"]["against"]["records_per_s_per_core"]
        print("  this / against: x%.2f records per core" % ratio)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
