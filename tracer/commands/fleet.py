"""`nsgraph fleet`: set up and inspect a fleet (CA, credentials, NATS config, streams)."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time

from ..exitcodes import EXIT_FAILURE, EXIT_OK, EXIT_USAGE

EPILOG = """\
On the central host (once; again with more --node to add nodes):
  sudo nsgraph fleet init --dir /etc/nsgraph/fleet --server-name nats.example --node web-1 --node web-2
  sudo nats-server -c /etc/nsgraph/fleet/nats-server-nats-1.conf     # scripts/setup.sh fleet-server does this
  sudo nsgraph fleet streams --creds /etc/nsgraph/fleet/admin --max-age 7d --max-bytes 10G
Then copy /etc/nsgraph/fleet/agent-web-1/ to web-1 and run `nsgraph agent --creds ...` there.
  nsgraph fleet status --creds /etc/nsgraph/fleet/dashboard          # every node's last heartbeat
A three-server cluster: --member n1=10.0.0.1:4222:6222 --member n2=10.0.0.2:4222:6222 ...
(one nats-server-NAME.conf each; the certificate names every member).
"""


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("fleet", help="set up a fleet: CA, credentials, NATS configuration, streams",
                              description="Set up and inspect an nsgraph fleet.", epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="fleet_command", metavar="ACTION")

    init = sub.add_parser("init", help="make (or complete) the fleet directory: CA, certificates, "
                                      "per-node credentials, nats-server configuration")
    init.add_argument("--dir", default="/etc/nsgraph/fleet", help="where (default /etc/nsgraph/fleet)")
    init.add_argument("--node", action="append", default=[], help="a node name (repeatable)")
    init.add_argument("--server-name", action="append", default=[], metavar="DNS",
                      help="a DNS name clients use for the NATS server(s) (repeatable)")
    init.add_argument("--server-ip", action="append", default=[], metavar="IP",
                      help="an IP address clients use for the NATS server(s) (repeatable)")
    init.add_argument("--member", action="append", default=[], metavar="NAME=HOST:PORT:CLUSTER_PORT[:MONITOR_PORT]",
                      help="a server of a cluster (repeatable; default: one server nats-1 on 0.0.0.0:4222); "
                           "MONITOR_PORT: its own monitoring port on 127.0.0.1 (members sharing a host)")
    init.add_argument("--url", action="append", default=[], help="a URL clients dial (default: from the members)")
    init.add_argument("--store-dir", default="/var/lib/nats/nsgraph", help="JetStream file storage")
    init.add_argument("--max-store", default="20G", help="JetStream disk limit per server (default 20G)")
    init.add_argument("--monitor-port", type=int, default=0, help="nats-server monitoring port on 127.0.0.1")
    init.set_defaults(func=run_init)

    add = sub.add_parser("add-node", help="credentials for more nodes (then reload nats-server)")
    add.add_argument("nodes", nargs="+", metavar="NODE")
    add.add_argument("--dir", default="/etc/nsgraph/fleet")
    add.set_defaults(func=run_add_node)

    streams = sub.add_parser("streams", help="create or update the fleet's JetStream stream (admin bundle)")
    _connection_args(streams, "/etc/nsgraph/fleet/admin")
    streams.add_argument("--max-age", default="7d", help="history kept by age (default 7d)")
    streams.add_argument("--max-bytes", default="10G", help="history kept by size (default 10G)")
    streams.add_argument("--replicas", type=int, default=1, help="JetStream replicas (3 in a 3-server cluster)")
    streams.set_defaults(func=run_streams)

    status = sub.add_parser("status", help="every node's last heartbeat (dashboard or admin bundle)")
    _connection_args(status, "/etc/nsgraph/fleet/dashboard")
    status.add_argument("--json", action="store_true", help="one JSON object per node")
    status.set_defaults(func=run_status)
    p.set_defaults(func=lambda args: (p.print_help(sys.stderr), EXIT_USAGE)[1])


def _connection_args(p, default_creds: str) -> None:
    p.add_argument("--nats", metavar="URL[,URL...]", help="NATS servers (default: the bundle's list)")
    p.add_argument("--creds", default=default_creds, metavar="DIR", help="credentials bundle (default %s)" % default_creds)


def _fail(message: str, code: int = EXIT_FAILURE) -> int:
    print("nsgraph fleet: %s" % message, file=sys.stderr)
    return code


def parse_members(texts):
    from ..fleet.serverconf import Member
    out = []
    for text in texts:
        try:
            name, rest = text.split("=", 1)
            ports = re.fullmatch(r"(\[[^\]]*\]|[^:]*):(\d+):(\d+)(?::(\d+))?", rest)
            if ports:       # a name, an IPv4 address or a bracketed IPv6 one; maybe a monitoring port
                host, port, cport, mport = ports.groups()
            else:           # an unbracketed IPv6 address: the last two fields are the ports
                (host, port, cport), mport = rest.rsplit(":", 2), None
            out.append(Member(name, host.strip("[]"), int(port), int(cport), int(mport or 0)))
        except ValueError:
            raise ValueError("--member %r: use NAME=HOST:CLIENT_PORT:CLUSTER_PORT[:MONITOR_PORT]" % text) from None
    return out


def run_init(args) -> int:
    from ..fleet.bootstrap import FleetSpec, init_fleet, load_spec, merge
    from ..fleet.pki import PkiError
    from ..fleet.subjects import BadNodeName
    try:
        spec = FleetSpec(args.dir, nodes=args.node, server_names=args.server_name, server_ips=args.server_ip,
                         members=parse_members(args.member), store_dir=args.store_dir, urls=args.url,
                         max_store=args.max_store, monitor_port=args.monitor_port)
        spec = merge(load_spec(args.dir), spec)
        result = init_fleet(spec, progress=lambda t: print("nsgraph fleet: %s" % t, file=sys.stderr))
    except (ValueError, BadNodeName) as exc:
        return _fail(str(exc), EXIT_USAGE)
    except (PkiError, OSError) as exc:
        return _fail(str(exc))
    print("fleet directory: %s" % args.dir)
    print("nats-server configuration: %s" % " ".join(result["configs"]))
    print("clients dial: %s" % ",".join(result["urls"]))
    print("nodes: %s" % (", ".join(spec.nodes) or "none yet (add with --node NAME)"))
    for node in spec.nodes:
        print("  copy %s/agent-%s/ to node %s, then run there: nsgraph agent --creds DIR" % (args.dir, node, node))
    return EXIT_OK


def run_add_node(args) -> int:
    args.node, args.server_name, args.server_ip, args.member, args.url = args.nodes, [], [], [], []
    args.store_dir, args.max_store, args.monitor_port = "/var/lib/nats/nsgraph", "20G", 0
    code = run_init(args)
    if code == EXIT_OK:
        print("reload the NATS servers to admit the new nodes: systemctl reload nsgraph-nats "
              "(or kill -HUP the nats-server)")
    return code


def _connect_args(args):
    from ..fleet.natsconn import Credentials, parse_servers, require_client
    require_client()
    creds = Credentials.load(args.creds)
    return creds, parse_servers(args.nats, creds.servers)


async def _with_js(creds, servers, work):
    import nats

    from ..fleet.natsconn import connect_options
    nc = await nats.connect(**connect_options(creds, servers, "nsgraph fleet", max_reconnect_attempts=2))
    try:
        return await work(nc.jetstream(timeout=10))
    finally:
        await nc.close()


def run_streams(args) -> int:
    from ..fleet.natsconn import CredentialsError, explain_error
    from ..fleet.subjects import STREAM
    from ..fleet.streams import Retention, parse_duration, parse_size
    try:
        creds, servers = _connect_args(args)
        retention = Retention(parse_duration(args.max_age), parse_size(args.max_bytes), args.replicas)
    except (CredentialsError, ValueError) as exc:
        return _fail(str(exc), EXIT_USAGE)
    if creds.role != "admin":
        return _fail("creating streams needs the admin bundle (--creds /etc/nsgraph/fleet/admin); the %s "
                     "may not change streams" % creds.role, EXIT_USAGE)
    try:
        done = asyncio.run(_with_js(creds, servers, lambda js: _ensure_with_retry(js, retention)))
    except Exception as exc:
        return _fail(explain_error(exc))
    print("stream %s %s: subjects nsgraph.*.*, max age %d s, max bytes %d, replicas %d"
          % (STREAM, done, int(retention.max_age_s), retention.max_bytes, retention.replicas))
    return EXIT_OK


async def _ensure_with_retry(js, retention, attempts: int = 30):
    """A cluster that just started may not have elected its JetStream leader yet."""
    from ..fleet.streams import ensure_stream
    for attempt in range(attempts):
        try:
            return await ensure_stream(js, retention)
        except Exception as exc:
            if attempt == attempts - 1 or "insufficient resources" in str(exc).lower():
                raise
            await asyncio.sleep(1.0)


def run_status(args) -> int:
    from ..fleet.natsconn import CredentialsError, explain_error
    try:
        creds, servers = _connect_args(args)
    except CredentialsError as exc:
        return _fail(str(exc), EXIT_USAGE)
    try:
        rows = asyncio.run(_with_js(creds, servers, _last_heartbeats))
    except Exception as exc:
        return _fail(explain_error(exc))
    from ..fleet.health import assess
    now = time.time()
    if args.json:
        for node, body, received in rows:
            print(json.dumps({"node": node, "received": received, "health": assess(now, body, received, None),
                              "status": body}, default=str))
        return EXIT_OK
    print("%-20s %-8s %-10s %-10s %-10s %s" % ("NODE", "STATE", "HEARTBEAT", "EVENTS", "LOST", "DETAIL"))
    for node, body, received in rows:
        h = assess(now, body, received, None)
        kernel = body.get("kernel") or {}
        lost = sum(h["losses"].values())
        print("%-20s %-8s %-10s %-10s %-10s %s" % (node, h["state"], "%.0fs ago" % (now - received),
                                                   kernel.get("events", "-"), lost, h.get("reason") or ""))
    if not rows:
        print("(no node has sent a heartbeat yet)")
    return EXIT_OK


async def _last_heartbeats(js):
    from nats.js.errors import NotFoundError

    from ..fleet.subjects import PREFIX, STREAM, parse_subject
    from ..fleet.wire import WireError, decode
    try:
        info = await js.stream_info(STREAM, subjects_filter="%s.*.status" % PREFIX)
    except NotFoundError:
        raise RuntimeError("no %s stream yet: run `nsgraph fleet streams` with the admin bundle" % STREAM)
    rows = []
    for subj in sorted(info.state.subjects or {}):
        parsed = parse_subject(subj)
        if parsed is None:
            continue
        msg = await js.get_last_msg(STREAM, subj)
        try:
            status = decode(subj, msg.headers, msg.data)
        except WireError:
            continue
        rows.append((parsed[0], status.body, msg.time.timestamp() if msg.time else status.ts))
    return rows
