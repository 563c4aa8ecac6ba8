"""rtnetlink, just enough for `ip addr`: the links and addresses of the caller's network namespace.

/proc/<pid>/net has interface names and counters (net/dev) and IPv6 addresses
(net/if_inet6) per namespace, but no IPv4 addresses, MAC addresses or link
states; those come from a netlink socket, and a netlink socket belongs to the
network namespace of the process that made it.  So the inside-view helper
opens one after joining the namespace (tracer/host/inside/helper.py) and asks
for an RTM_GETLINK and an RTM_GETADDR dump, as `ip -j addr` does.

The parsers take bytes and are pure; malformed input raises NetlinkError
(never an IndexError or struct.error).  Stdlib only: the helper imports this.
"""

from __future__ import annotations

import os
import socket
import struct

NETLINK_ROUTE = 0
RTM_NEWLINK, RTM_GETLINK = 16, 18
RTM_NEWADDR, RTM_GETADDR = 20, 22
NLMSG_NOOP, NLMSG_ERROR, NLMSG_DONE = 1, 2, 3
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_DUMP = 0x1, 0x2, 0x300
NLA_TYPE_MASK = 0x3FFF

IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINK = 1, 3, 4, 5
IFLA_MASTER, IFLA_OPERSTATE, IFLA_LINKINFO, IFLA_LINK_NETNSID = 10, 16, 18, 37
IFLA_INFO_KIND = 1
IFA_ADDRESS, IFA_LOCAL, IFA_LABEL = 1, 2, 3

_NLMSGHDR = struct.Struct("=IHHII")      # len, type, flags, seq, pid
_IFINFOMSG = struct.Struct("=BxHiII")    # family, type, index, flags, change
_IFADDRMSG = struct.Struct("=BBBBI")     # family, prefixlen, flags, scope, index
_RTATTR = struct.Struct("=HH")           # len, type
_U32 = struct.Struct("=I")
_S32 = struct.Struct("=i")

OPERSTATES = ("UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN", "TESTING", "DORMANT", "UP")

# Interface flags in the order `ip` prints them (iproute2 print_link_flags).
LINK_FLAGS = (
    ("LOOPBACK", 0x8), ("BROADCAST", 0x2), ("POINTOPOINT", 0x10), ("MULTICAST", 0x1000),
    ("NOARP", 0x80), ("ALLMULTI", 0x200), ("PROMISC", 0x100), ("MASTER", 0x400),
    ("SLAVE", 0x800), ("DEBUG", 0x4), ("DYNAMIC", 0x8000), ("AUTOMEDIA", 0x4000),
    ("PORTSEL", 0x2000), ("NOTRAILERS", 0x20), ("UP", 0x1), ("LOWER_UP", 0x10000),
    ("DORMANT", 0x20000), ("ECHO", 0x40000),
)
IFF_UP, IFF_RUNNING = 0x1, 0x40

# ARPHRD_* -> the name `ip` shows as link/<name>.
LINK_TYPES = {1: "ether", 772: "loopback", 0xFFFE: "none", 0xFFFF: "void", 768: "ipip",
              769: "tunnel6", 776: "sit", 778: "gre", 823: "ip6gre", 801: "ieee802.11"}

SCOPES = {0: "global", 200: "site", 253: "link", 254: "host", 255: "nowhere"}
FAMILIES = {socket.AF_INET: "inet", socket.AF_INET6: "inet6"}

# A dump answer larger than this is refused (100 000 interfaces are about 100 MiB).
MAX_DUMP_BYTES = 64 << 20


class NetlinkError(Exception):
    """A netlink answer that is malformed, an error reply, or too large."""


def _align(n: int) -> int:
    return (n + 3) & ~3


def messages(data: bytes):
    """(type, flags, seq, body) of every message in one datagram."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, msg_type, flags, seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > len(data):
            raise NetlinkError("malformed netlink message (length %d at offset %d of %d)"
                               % (length, offset, len(data)))
        yield msg_type, flags, seq, data[offset + _NLMSGHDR.size:offset + length]
        offset += _align(length)


def attributes(data: bytes, offset: int = 0) -> dict:
    """rtattr type -> payload (the last one of a type wins; nested bit masked off)."""
    out = {}
    while offset + _RTATTR.size <= len(data):
        length, attr_type = _RTATTR.unpack_from(data, offset)
        if length < _RTATTR.size or offset + length > len(data):
            raise NetlinkError("malformed netlink attribute (length %d at offset %d of %d)"
                               % (length, offset, len(data)))
        out[attr_type & NLA_TYPE_MASK] = data[offset + _RTATTR.size:offset + length]
        offset += _align(length)
    return out


def _string(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def _u32(raw: bytes):
    return _U32.unpack_from(raw)[0] if len(raw) >= 4 else None


def link_flag_names(flags: int) -> list:
    """The flags as `ip -j link` lists them, NO-CARRIER included."""
    names = [name for name, bit in LINK_FLAGS if flags & bit]
    if flags & IFF_UP and not flags & IFF_RUNNING:
        names.insert(0, "NO-CARRIER")
    return names


def mac_text(raw: bytes) -> str:
    return ":".join("%02x" % b for b in raw)


def parse_link(body: bytes) -> dict:
    """An RTM_NEWLINK body -> one interface (no addresses yet)."""
    if len(body) < _IFINFOMSG.size:
        raise NetlinkError("RTM_NEWLINK body of %d bytes is too short" % len(body))
    _family, link_type, index, flags, _change = _IFINFOMSG.unpack_from(body)
    attrs = attributes(body, _IFINFOMSG.size)
    state = attrs.get(IFLA_OPERSTATE)
    kind = None
    if IFLA_LINKINFO in attrs:
        info = attributes(attrs[IFLA_LINKINFO])
        if IFLA_INFO_KIND in info:
            kind = _string(info[IFLA_INFO_KIND])
    link = _u32(attrs.get(IFLA_LINK, b""))
    netnsid = attrs.get(IFLA_LINK_NETNSID)
    return {
        "index": index,
        "name": _string(attrs.get(IFLA_IFNAME, b"")),
        "state": OPERSTATES[state[0]] if state and state[0] < len(OPERSTATES) else "UNKNOWN",
        "flags": link_flag_names(flags),
        "mtu": _u32(attrs.get(IFLA_MTU, b"")),
        "link_type": LINK_TYPES.get(link_type, str(link_type)),
        "mac": mac_text(attrs[IFLA_ADDRESS]) if IFLA_ADDRESS in attrs else None,
        "kind": kind,
        # The peer of a veth pair ("eth0@if12"), possibly in another namespace.
        "link_index": link if link and link != index else None,
        "link_netnsid": _S32.unpack_from(netnsid)[0] if netnsid and len(netnsid) >= 4 else None,
        "master_index": _u32(attrs.get(IFLA_MASTER, b"")),
        "addresses": [],
    }


def parse_addr(body: bytes):
    """An RTM_NEWADDR body -> (interface index, address dict); None for other families."""
    if len(body) < _IFADDRMSG.size:
        raise NetlinkError("RTM_NEWADDR body of %d bytes is too short" % len(body))
    family, prefixlen, _flags, scope, index = _IFADDRMSG.unpack_from(body)
    if family not in FAMILIES:
        return None
    attrs = attributes(body, _IFADDRMSG.size)
    # IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer on
    # point-to-point links and the same as IFA_LOCAL otherwise (`ip` shows local).
    raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
    want = 4 if family == socket.AF_INET else 16
    if raw is None or len(raw) != want:
        raise NetlinkError("address of %d bytes for family %d" % (len(raw or b""), family))
    out = {"family": FAMILIES[family], "address": socket.inet_ntop(family, raw),
           "prefixlen": prefixlen, "scope": SCOPES.get(scope, str(scope))}
    if IFA_LABEL in attrs:
        out["label"] = _string(attrs[IFA_LABEL])
    return index, out


def _request(msg_type: int, payload: bytes, seq: int) -> bytes:
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(payload), msg_type,
                          NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + payload


def dump(sock, msg_type: int, payload: bytes, seq: int, max_bytes: int = MAX_DUMP_BYTES) -> list:
    """The bodies of every answer to one dump request, until NLMSG_DONE."""
    sock.send(_request(msg_type, payload, seq))
    bodies, total = [], 0
    while True:
        data = sock.recv(1 << 20)
        if not data:
            raise NetlinkError("the netlink socket closed during a dump")
        total += len(data)
        if total > max_bytes:
            raise NetlinkError("netlink dump larger than %d bytes" % max_bytes)
        for kind, _flags, reply_seq, body in messages(data):
            if reply_seq != seq or kind == NLMSG_NOOP:
                continue
            if kind == NLMSG_DONE:
                return bodies
            if kind == NLMSG_ERROR:
                code = _S32.unpack_from(body)[0] if len(body) >= 4 else 0
                if code == 0:
                    continue
                raise NetlinkError("netlink error %d (%s)" % (-code, os.strerror(-code)))
            bodies.append((kind, body))


def read_interfaces(timeout: float = 2.0) -> list:
    """Every interface of the caller's network namespace, with its addresses, by index."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
    try:
        sock.settimeout(timeout)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.bind((0, 0))
        links = {}
        for kind, body in dump(sock, RTM_GETLINK, _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0), 1):
            if kind == RTM_NEWLINK:
                link = parse_link(body)
                links[link["index"]] = link
        for kind, body in dump(sock, RTM_GETADDR, _IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0), 2):
            if kind != RTM_NEWADDR:
                continue
            parsed = parse_addr(body)
            if parsed is not None and parsed[0] in links:
                links[parsed[0]]["addresses"].append(parsed[1])
        return [links[i] for i in sorted(links)]
    finally:
        sock.close()
