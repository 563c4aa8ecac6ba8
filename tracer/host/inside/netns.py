"""net: interfaces (name, state, MAC, addresses), default routes, listening sockets.

Read by the helper after it joined the namespace: links and addresses from
rtnetlink (tracer/host/inside/netlink.py, what `ip -j addr` shows), the
default routes from /proc/self/net/route and ipv6_route, and the listening
sockets from /proc/self/net/{tcp,tcp6,udp,udp6} (what `ss -H -ltun` counts:
TCP sockets in LISTEN, UDP sockets not connected).  /proc/self/net follows the
reading task's network namespace, so the helper sees the joined one.
"""

from __future__ import annotations

import socket
import struct

from . import netlink
from .procread import optional_text_at

JOIN = True

RTF_UP, RTF_GATEWAY, RTF_REJECT = 0x1, 0x2, 0x200
TCP_LISTEN, TCP_CLOSE = "0A", "07"          # st column of /proc/net/tcp and udp
SOCKET_FILES = (("tcp", TCP_LISTEN), ("tcp6", TCP_LISTEN), ("udp", TCP_CLOSE), ("udp6", TCP_CLOSE))


def parse_route(text: str) -> list:
    """IPv4 default routes of /proc/net/route: [{"gateway", "dev", "metric"}], lowest metric first."""
    out = []
    for line in text.splitlines()[1:]:
        cols = line.split()
        if len(cols) < 8:
            continue
        try:
            dest, gateway, flags = int(cols[1], 16), int(cols[2], 16), int(cols[3], 16)
            metric, mask = int(cols[6]), int(cols[7], 16)
        except ValueError:
            continue
        if dest or mask or not flags & RTF_UP or flags & RTF_REJECT:
            continue
        # The addresses are the kernel's u32 in host byte order, printed in hex.
        via = socket.inet_ntoa(struct.pack("=I", gateway)) if flags & RTF_GATEWAY else None
        out.append({"gateway": via, "dev": cols[0], "metric": metric})
    return sorted(out, key=lambda r: r["metric"])


def parse_ipv6_route(text: str) -> list:
    """IPv6 default routes (::/0, not reject) of /proc/net/ipv6_route, lowest metric first."""
    out = []
    for line in text.splitlines():
        cols = line.split()
        if len(cols) < 10 or len(cols[0]) != 32 or len(cols[4]) != 32:
            continue
        try:
            dest_len, metric, flags = int(cols[1], 16), int(cols[5], 16), int(cols[8], 16)
            dest, nexthop = bytes.fromhex(cols[0]), bytes.fromhex(cols[4])
        except ValueError:
            continue
        if any(dest) or dest_len or not flags & RTF_UP or flags & RTF_REJECT:
            continue
        via = socket.inet_ntop(socket.AF_INET6, nexthop) if any(nexthop) else None
        out.append({"gateway": via, "dev": cols[9], "metric": metric})
    return sorted(out, key=lambda r: r["metric"])


def count_sockets(text: str, state: str) -> int:
    """Rows of /proc/net/{tcp,udp}[6] whose st column is `state`."""
    n = 0
    for line in text.splitlines()[1:]:
        cols = line.split(None, 4)
        if len(cols) >= 4 and cols[3] == state:
            n += 1
    return n


def collect(ctx) -> dict:
    """In the helper, inside the namespace."""
    listening = {}
    for name, state in SOCKET_FILES:
        text = optional_text_at(ctx.proc, "self/net/" + name)
        listening[name] = count_sockets(text, state) if text is not None else 0
    listening["total"] = sum(listening.values())
    v4 = optional_text_at(ctx.proc, "self/net/route")
    v6 = optional_text_at(ctx.proc, "self/net/ipv6_route")
    return {
        "interfaces": netlink.read_interfaces(),
        "default_route": {"ipv4": parse_route(v4) if v4 else [],
                          "ipv6": parse_ipv6_route(v6) if v6 else []},
        "listening": listening,
    }


def _route_text(routes: list) -> str:
    if not routes:
        return "none"
    return "; ".join(("via %s dev %s" % (r["gateway"], r["dev"])) if r["gateway"]
                     else "dev %s" % r["dev"] for r in routes)


def fields(view: dict) -> list:
    """(label, value) rows: one per interface, like `ip -brief addr`, then routes and sockets."""
    interfaces = view.get("interfaces") or []
    rows = [("interfaces", str(len(interfaces)))]
    for link in interfaces:
        addresses = " ".join("%s/%d" % (a["address"], a["prefixlen"]) for a in link.get("addresses", []))
        mac = link.get("mac")
        rows.append(("  " + link["name"], "%s%s%s" % (link["state"], (" " + mac) if mac else "",
                                                      (" " + addresses) if addresses else "")))
    routes = view.get("default_route") or {}
    rows.append(("default route", _route_text(routes.get("ipv4") or [])))
    if routes.get("ipv6"):
        rows.append(("default route (v6)", _route_text(routes["ipv6"])))
    listening = view.get("listening") or {}
    rows.append(("listening sockets", "%d (tcp %d, tcp6 %d, udp %d, udp6 %d)" % tuple(
        listening.get(k, 0) for k in ("total", "tcp", "tcp6", "udp", "udp6"))))
    return rows
