"""`nsgraph serve`'s fleet mode options (README: Fleet), kept beside serve so that
webapp/commands/serve.py only calls two functions: add_fleet_arguments at parser
time, prepare_fleet before it listens.  The fleet code itself (webapp/fleet.py,
tracer/fleet/, nats-py) is imported only when --fleet is given."""

from __future__ import annotations

import os


def add_fleet_arguments(parser) -> None:
    fleet = parser.add_argument_group("fleet mode (README: Fleet)")
    fleet.add_argument("--fleet", metavar="URL[,URL...]", nargs="?", const="",
                       help="show the fleet: consume every node's stream from these NATS servers "
                            "(default: the bundle's list) instead of tracing this host")
    fleet.add_argument("--fleet-creds", metavar="DIR", default="/etc/nsgraph/fleet/dashboard",
                       help="the dashboard's credentials bundle (read-only; default %(default)s)")
    fleet.add_argument("--fleet-name", metavar="NAME", default="dashboard",
                       help="this dashboard's consumer names (two dashboards on one fleet need two names)")
    fleet.add_argument("--fleet-monitor-creds", metavar="DIR",
                       help="the monitor bundle, to count clients the NATS servers refuse (default: the "
                            "'monitor' folder beside --fleet-creds, when there is one)")
    fleet.add_argument("--offline-after", type=float, metavar="S",
                       help="a node without a heartbeat for S seconds is offline (default 3 heartbeats, >= 6 s)")


class FleetSetupError(Exception):
    """serve --fleet cannot start (bad bundle, no nats-py): the message says how to fix it."""


def prepare_fleet(args):
    """None without --fleet; else make(config, machine_addresses) -> (FleetService, the
    fleet app), the bundles checked before the dashboard listens (FleetSetupError)."""
    if getattr(args, "fleet", None) is None:
        return None
    from tracer.fleet.central import FleetService
    from tracer.fleet.natsconn import Credentials, CredentialsError, parse_servers, require_client
    from tracer.fleet.subjects import NODE_RE
    try:
        require_client()
        creds = Credentials.load(args.fleet_creds)
        if creds.role not in ("dashboard", "admin"):
            raise CredentialsError("%s is an %s bundle; the dashboard reads with the dashboard bundle "
                                   "(/etc/nsgraph/fleet/dashboard)" % (args.fleet_creds, creds.role))
        servers = parse_servers(args.fleet, creds.servers)
    except CredentialsError as exc:
        raise FleetSetupError(str(exc)) from None
    if not NODE_RE.match(args.fleet_name or ""):
        raise FleetSetupError("--fleet-name must be letters, digits, '-' or '_'")
    monitor = None
    sibling = os.path.join(os.path.dirname(os.path.abspath(args.fleet_creds)), "monitor")
    monitor_dir = getattr(args, "fleet_monitor_creds", None) or (sibling if os.path.isdir(sibling) else None)
    if monitor_dir:
        try:
            monitor = Credentials.load(monitor_dir)
        except CredentialsError as exc:
            raise FleetSetupError("the monitor bundle: %s" % exc) from None

    def make(config, machine_addresses=()):
        from .fleet import create_fleet_app
        service = FleetService(creds, servers, dashboard=args.fleet_name, offline_after=args.offline_after,
                               monitor_creds=monitor)
        return service, create_fleet_app(config, service, machine_addresses)
    return make
