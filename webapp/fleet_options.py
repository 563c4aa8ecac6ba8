"""`nsgraph serve`'s fleet mode options (README: Fleet), kept beside serve so that
webapp/commands/serve.py only calls two functions: add_fleet_arguments at parser
time, prepare_fleet before it listens.  The fleet code itself (webapp/fleet.py,
tracer/fleet/, nats-py) is imported only when --fleet is given."""

from __future__ import annotations


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
    """None without --fleet; else make(config, machine_addresses) -> (service, app),
    checked before the dashboard listens (FleetSetupError for a bad bundle or no nats-py)."""
    if getattr(args, "fleet", None) is None:
        return None
    from .fleet import prepare_fleet as prepare
    return prepare(args)
