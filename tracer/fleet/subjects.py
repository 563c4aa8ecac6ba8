"""Names on the wire: subjects, streams, consumers, and what a node name may be.

A node name becomes one token of a NATS subject (`nsgraph.<node>.events`) and part of
a consumer name, so it is restricted to letters, digits, '-' and '_' (no '.', '*',
'>' or spaces, which NATS gives meaning to).
"""

from __future__ import annotations

import re
import socket

PREFIX = "nsgraph"
# One stream holds all three kinds (subjects nsgraph.*.*), so that one consumer filtered
# on nsgraph.<node>.* reads a node's messages in the order the agent published them
# (nats-server 2.9 accepts a consumer filter only inside one of the stream's subjects).
STREAM = "NSGRAPH"
KINDS = ("events", "checkpoints", "status")

NODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")


class BadNodeName(ValueError):
    pass


def check_node(name: str) -> str:
    if not isinstance(name, str) or not NODE_RE.match(name):
        raise BadNodeName(
            "node name %r is not usable: use 1-63 letters, digits, '-' or '_', starting with a letter "
            "or digit (it becomes a NATS subject token, where '.', '*' and '>' have meaning)" % (name,))
    return name


def default_node() -> str:
    """This host's short name, made subject-safe (dots and other characters become '-')."""
    short = socket.gethostname().split(".")[0]
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "-", short).strip("-_")[:63]
    return cleaned or "node"


def subject(node: str, kind: str) -> str:
    assert kind in KINDS, kind
    return "%s.%s.%s" % (PREFIX, node, kind)


def node_filter(node: str) -> str:
    """The consumer filter for one node's messages, in publish order."""
    return "%s.%s.*" % (PREFIX, node)


def parse_subject(subj: str):
    """(node, kind) of a fleet subject, or None."""
    parts = subj.split(".")
    if len(parts) != 3 or parts[0] != PREFIX or parts[2] not in KINDS or not NODE_RE.match(parts[1]):
        return None
    return parts[1], parts[2]


def inbox_prefix(identity: str) -> str:
    """Each identity gets its own reply inbox, so no node can read another's replies."""
    return "_INBOX_%s" % identity


def consumer_name(dashboard: str, node: str) -> str:
    return "fleet_%s_%s" % (dashboard, node)


def status_consumer_name(dashboard: str) -> str:
    return "fleet_%s_status" % dashboard
