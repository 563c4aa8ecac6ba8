"""The nats-server configuration of a fleet: TLS everywhere, one NATS user per identity.

Every client must present a certificate from the fleet CA (`verify_and_map`: the
certificate's e-mail SAN is its user name), so a client without one fails the TLS
handshake and one with an unknown name fails authentication.  Permissions:

  agent.<node>   publish only nsgraph.<node>.{events,checkpoints,status} (its own);
                 subscribe only its own reply inbox _INBOX_<node>.>
  dashboard      read only: JetStream info, message gets, its consumers and their acks on
                 the fleet's stream; no publish on nsgraph.>, no stream changes
  admin          everything in the account (creates the streams)
  monitor        a user of the system account that may only subscribe to the servers'
                 authentication-failure advisories (monitor.py): the dashboard counts them

Servers route to each other over TLS too (mutual, same CA).  The account has
JetStream with file storage.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import List

from .monitor import permissions as monitor_permissions
from .pki import user_for
from .subjects import KINDS, PREFIX, STREAM, inbox_prefix

ACCOUNT = "NSGRAPH"


@dataclass
class Member:
    name: str
    host: str = "0.0.0.0"
    client_port: int = 4222
    cluster_port: int = 6222
    monitor_port: int = 0           # its own monitoring port (several members on one host); 0: the fleet's


def permissions(role: str, node: str = None) -> dict:
    if role == "agent":
        return {"publish": {"allow": ["%s.%s.%s" % (PREFIX, node, kind) for kind in KINDS]},
                "subscribe": {"allow": ["%s.>" % inbox_prefix(node)]}}
    if role == "dashboard":
        allow = ["$JS.API.INFO"]
        for stream in (STREAM,):
            allow += ["$JS.API.STREAM.INFO.%s" % stream, "$JS.API.STREAM.MSG.GET.%s" % stream,
                      "$JS.API.DIRECT.GET.%s" % stream, "$JS.API.DIRECT.GET.%s.>" % stream,
                      "$JS.API.CONSUMER.CREATE.%s" % stream, "$JS.API.CONSUMER.CREATE.%s.>" % stream,
                      "$JS.API.CONSUMER.DURABLE.CREATE.%s.*" % stream,
                      "$JS.API.CONSUMER.DELETE.%s.*" % stream, "$JS.API.CONSUMER.INFO.%s.*" % stream,
                      "$JS.API.CONSUMER.MSG.NEXT.%s.*" % stream, "$JS.API.CONSUMER.NAMES.%s" % stream,
                      "$JS.ACK.%s.>" % stream]
        return {"publish": {"allow": allow,
                            "deny": ["%s.>" % PREFIX, "$JS.API.STREAM.CREATE.>", "$JS.API.STREAM.UPDATE.>",
                                     "$JS.API.STREAM.DELETE.>", "$JS.API.STREAM.PURGE.>",
                                     "$JS.API.STREAM.MSG.DELETE.>"]},
                "subscribe": {"allow": ["%s.>" % inbox_prefix("dashboard")]}}
    if role == "admin":
        return {}
    raise ValueError("unknown role %r" % role)


def _q(value) -> str:
    """A quoted string in nats-server's config syntax (JSON strings are valid there)."""
    return json.dumps(str(value))


def _perm_block(perms: dict, indent: str) -> str:
    if not perms:
        return ""
    parts = []
    for direction in ("publish", "subscribe"):
        rules = perms.get(direction)
        if not rules:
            continue
        inner = ", ".join("%s: [%s]" % (k, ", ".join(_q(s) for s in v)) for k, v in rules.items())
        parts.append("%s%s: { %s }" % (indent + "  ", direction, inner))
    return ", permissions: {\n%s\n%s}" % ("\n".join(parts), indent)


def render(member: Member, members: List[Member], *, tls_dir: str, store_dir: str, nodes: List[str],
           max_store: str = "20G", max_payload: int = 8 << 20, monitor_port: int = 0,
           cluster_name: str = "nsgraph") -> str:
    """nats-server.conf for one member of the fleet's servers."""
    users = [(user_for("admin"), permissions("admin")), (user_for("dashboard"), permissions("dashboard"))]
    users += [(user_for("agent", n), permissions("agent", n)) for n in nodes]
    tls = ('cert_file: %s, key_file: %s, ca_file: %s'
           % (_q(tls_dir + "/server.crt"), _q(tls_dir + "/server.key"), _q(tls_dir + "/ca.crt")))
    lines = [
        "# nats-server configuration for the nsgraph fleet, written by `nsgraph fleet init`.",
        "# Edit the fleet with `nsgraph fleet init` (or `nsgraph fleet add-node`), not here.",
        "server_name: %s" % _q(member.name),
        "listen: %s" % _q("%s:%d" % (member.host, member.client_port)),
        "max_payload: %d" % max_payload,
        "jetstream { store_dir: %s, max_file_store: %s, max_memory_store: 256M }"
        % (_q(store_dir), _q(max_store)),
        "tls { %s, verify_and_map: true, timeout: 3 }" % tls,
    ]
    if member.monitor_port or monitor_port:
        lines.append("http: %s" % _q("127.0.0.1:%d" % (member.monitor_port or monitor_port)))
    if len(members) > 1:
        routes = ", ".join(_q("nats://%s:%d" % (_route_host(m), m.cluster_port)) for m in members)
        lines += [
            "cluster {",
            "  name: %s" % _q(cluster_name),
            "  listen: %s" % _q("%s:%d" % (member.host, member.cluster_port)),
            "  no_advertise: true",
            "  tls { %s, verify: true, timeout: 3 }" % tls,
            "  routes: [ %s ]" % routes,
            "}",
        ]
    lines += ["system_account: SYS", "accounts {", "  %s {" % ACCOUNT, "    jetstream: enabled", "    users: ["]
    for user, perms in users:
        lines.append("      { user: %s%s }" % (_q(user), _perm_block(perms, "      ")))
    lines += ["    ]", "  }", "  SYS {", "    users: ["]
    lines.append("      { user: %s%s }" % (_q(user_for("monitor")), _perm_block(monitor_permissions(), "      ")))
    lines += ["    ]", "  }", "}", ""]
    return "\n".join(lines)


def _route_host(member: Member) -> str:
    return "127.0.0.1" if member.host in ("0.0.0.0", "::", "") else member.host
