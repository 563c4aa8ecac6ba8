"""`nsgraph agent`: trace this host and stream its namespace graph to the fleet's NATS."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from ..exitcodes import EXIT_FAILURE, EXIT_NO_PRIVILEGES, EXIT_OK, EXIT_USAGE

EPILOG = """\
The agent runs the same probes, /proc snapshot and graph as `nsgraph serve`, and
publishes the graph's journal to NATS JetStream (subject nsgraph.NODE.events), a
checkpoint of the whole graph at start and every --checkpoint-interval seconds
(nsgraph.NODE.checkpoints) and a heartbeat (nsgraph.NODE.status).  While NATS is
unreachable it keeps tracing and buffers up to --buffer-mb; past that it drops and
counts, and the next checkpoint repairs the node's graph on the dashboard.

--creds is the bundle `nsgraph fleet init` made for this node (copied from the
central host's /etc/nsgraph/fleet/agent-NODE); it holds the CA, this node's client
certificate and the server list.  An agent may publish only to its own node's subjects.

examples:
  sudo nsgraph agent --creds /etc/nsgraph/fleet/agent-web-1
  sudo nsgraph agent --node web-1 --nats tls://nats.example:4222 --creds /etc/nsgraph/fleet/agent-web-1
  sudo nsgraph agent --creds DIR --nats tls://n1:4222,tls://n2:4222,tls://n3:4222 --no-docker

exit status: 0 after SIGTERM/Ctrl-C (queued data sent first, up to 5 s), 1 when tracing
cannot start, 2 on bad usage or credentials, 77 without root.
"""


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("agent", help="trace this host and stream its graph to the fleet (NATS JetStream)",
                              description="Trace this host and publish its namespace graph to NATS JetStream.",
                              epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--node", help="this node's name in the fleet (default: the bundle's node)")
    p.add_argument("--nats", metavar="URL[,URL...]", help="NATS servers (default: the bundle's list)")
    p.add_argument("--creds", metavar="DIR", required=True, help="this node's credentials bundle")
    p.add_argument("--heartbeat", type=float, default=2.0, metavar="S", help="heartbeat interval (default 2 s)")
    p.add_argument("--checkpoint-interval", type=float, default=60.0, metavar="S",
                   help="seconds between checkpoints (default 60): bounds what a dashboard replays")
    p.add_argument("--batch-ms", type=float, default=50.0, metavar="MS",
                   help="how long records gather into one message (default 50 ms)")
    p.add_argument("--buffer-mb", type=float, default=64.0, metavar="MB",
                   help="memory for messages NATS has not taken yet (default 64 MB)")
    p.add_argument("--db", metavar="PATH", default="none",
                   help="also keep a local SQLite history at PATH (default: none; the stream is the history)")
    p.add_argument("--no-docker", action="store_true", help="do not ask the Docker engine for container names")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..fleet.natsconn import Credentials, CredentialsError, parse_servers, require_client
    from ..fleet.subjects import BadNodeName, check_node
    from ..kernel.probes import missing_privileges
    try:
        require_client()
        creds = Credentials.load(args.creds)
        if creds.role != "agent":
            raise CredentialsError("%s is the %s's bundle; an agent needs an agent-NODE bundle" % (args.creds, creds.role))
        node = check_node(args.node or creds.node or "")
        if creds.node and node != creds.node:
            raise CredentialsError("--node %s does not match the bundle, which is node %s's: the server would "
                                   "refuse every publish (an agent may publish only as itself)" % (node, creds.node))
        servers = parse_servers(args.nats, creds.servers)
        for name, value in (("--heartbeat", args.heartbeat), ("--checkpoint-interval", args.checkpoint_interval),
                            ("--batch-ms", args.batch_ms), ("--buffer-mb", args.buffer_mb)):
            if not value > 0:
                raise CredentialsError("%s must be a positive number" % name)
    except (CredentialsError, BadNodeName) as exc:
        print("nsgraph agent: %s" % exc, file=sys.stderr)
        return EXIT_USAGE
    problem = missing_privileges()
    if problem:
        print("nsgraph agent: %s" % problem, file=sys.stderr)
        return EXIT_NO_PRIVILEGES

    from ..fleet.agent import AgentConfig, FleetAgent
    config = AgentConfig(node=node, servers=servers, creds=creds, batch_s=args.batch_ms / 1000.0,
                         heartbeat_s=args.heartbeat, checkpoint_every_s=args.checkpoint_interval,
                         buffer_bytes=int(args.buffer_mb * (1 << 20)), db=args.db, docker=not args.no_docker)
    agent = FleetAgent(config)

    def progress(message: str) -> None:
        print("nsgraph agent: %s" % message, file=sys.stderr, flush=True)

    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)}
    progress("node %s, run %s, publishing to %s" % (node, agent.run, ",".join(servers)))
    try:
        if not agent.start(progress):
            progress("tracing failed to start: %s" % agent.service.status.error)
            agent.stop()
            return EXIT_FAILURE
        progress("running: streaming node %s's graph" % node)
        while not stop.wait(0.5):
            pass
        progress("stopping: sending what is queued (up to 5 s)")
        agent.stop()
        stats = agent.outbox.stats()
        progress("stopped: %d messages (%d records) published, %d records dropped, %d publishes refused"
                 % (stats["sent_messages"], stats["sent_records"], stats["dropped_records"],
                    agent.publisher.counters["refused"]))
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return EXIT_OK
