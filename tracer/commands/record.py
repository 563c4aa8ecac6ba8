"""`nsgraph record FILE` and `nsgraph replay FILE` (the file format: tracer/history/recording.py)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time

from ..exitcodes import EXIT_FAILURE, EXIT_NO_PRIVILEGES, EXIT_OK, EXIT_USAGE

RECORD_EXAMPLES = """\
examples:
  sudo nsgraph record trace.jsonl                  # until Ctrl-C
  sudo nsgraph record trace.jsonl --duration 60
  nsgraph replay trace.jsonl                       # the graph at the end, as a table
  nsgraph replay trace.jsonl --json > graph.json
  nsgraph replay trace.jsonl --until 1764470000 --dot | dot -Tsvg > then.svg

File format: JSON Lines. Line 1 is a header, line 2 the whole graph when recording
began ({"kind": "state"}), then one line per graph input: {"kind": "event"} (a tracer
event, as `nsgraph trace --json` prints it plus a float "ts"), {"kind": "ops"} (snapshot,
repair and container updates) and {"kind": "op"} (a /proc read). See tracer/history/recording.py.
"""


def add_parser(subparsers) -> None:
    rec = subparsers.add_parser(
        "record", help="record the live namespace graph's inputs to a file (JSON Lines)",
        description="Snapshot /proc, then record every namespace event and graph input to FILE "
                    "(JSON Lines) until Ctrl-C, SIGTERM or --duration. Needs root (eBPF).",
        epilog=RECORD_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    rec.add_argument("file", metavar="FILE")
    rec.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this long")
    rec.add_argument("--no-docker", action="store_true", help="container names from cgroup paths only")
    rec.set_defaults(func=run_record)
    rep = subparsers.add_parser(
        "replay", help="rebuild the graph from a recording, offline",
        description="Rebuild the namespace graph from a file written by `nsgraph record` and print it.",
        epilog=RECORD_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    rep.add_argument("file", metavar="FILE")
    out = rep.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="the Graph JSON")
    out.add_argument("--dot", action="store_true", help="Graphviz DOT")
    rep.add_argument("--until", type=float, metavar="T", help="stop at time T (seconds since the epoch)")
    rep.set_defaults(func=run_replay)


def run_record(args) -> int:
    if args.duration is not None and args.duration <= 0:
        print("nsgraph record: --duration must be positive", file=sys.stderr)
        return EXIT_USAGE
    from ..kernel.probes import missing_privileges
    problem = missing_privileges()
    if problem:
        print("nsgraph record: %s" % problem, file=sys.stderr)
        return EXIT_NO_PRIVILEGES
    from ..history.recording import JsonlRecorder
    from ..service import NsgraphService, ServiceConfig
    try:
        recorder = JsonlRecorder(args.file)
    except OSError as exc:
        print("nsgraph record: cannot write %s (%s)" % (args.file, exc.strerror or exc), file=sys.stderr)
        return EXIT_FAILURE
    service = NsgraphService(ServiceConfig(db="none", docker=not args.no_docker))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    # The recorder attaches once the graph holds the snapshot, before the probes start.
    ok = service.start(lambda t: print("nsgraph record: %s" % t, file=sys.stderr, flush=True),
                       on_graph=recorder.attach)
    if not ok:
        recorder.close()
        print("nsgraph record: %s" % service.status.error, file=sys.stderr)
        return EXIT_FAILURE
    deadline = time.monotonic() + args.duration if args.duration else None
    while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
        stop.wait(0.2)
    service.graph.to_json()           # journal the last lazy reads, so a replay shows the same
    service.stop()
    recorder.close()
    print("nsgraph record: %d inputs written to %s%s" % (
        recorder.written, args.file, (", %d dropped" % recorder.dropped) if recorder.dropped else ""),
        file=sys.stderr)
    return EXIT_OK


def run_replay(args) -> int:
    if not os.path.exists(args.file):
        print("nsgraph replay: %s does not exist" % args.file, file=sys.stderr)
        return EXIT_USAGE
    from ..history.recording import ReplayError, replay_file
    try:
        graph = replay_file(args.file, until=args.until)
    except (ReplayError, OSError) as exc:
        print("nsgraph replay: %s" % exc, file=sys.stderr)
        return EXIT_FAILURE
    if args.dot:
        sys.stdout.write(graph.to_dot())
    elif args.json:
        json.dump(graph.to_json(), sys.stdout, indent=1, default=str)
        sys.stdout.write("\n")
    else:
        from .snapshot import render_table
        sys.stdout.write(render_table(graph.to_json(include_ended=False)))
    return EXIT_OK
