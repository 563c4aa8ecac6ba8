"""Settings of the web layer (`nsgraph serve`), gathered in one immutable object.

Everything security-relevant has a safe default: loopback only, a random token,
small request bodies, few concurrent demos.  create_app() takes one of these.
"""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass, field
from typing import Optional, Tuple

def is_loopback(host: str) -> bool:
    """True for names and addresses that only this machine can reach."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_wildcard(host: str) -> bool:
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def new_token() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class WebConfig:
    host: str = "127.0.0.1"
    port: int = 5000
    token: str = field(default_factory=new_token)
    read_only: bool = False
    # Extra Host header names to accept (a DNS name the user reaches the VM by).
    allowed_hosts: Tuple[str, ...] = ()
    # Request bodies: the API takes none worth more than a few bytes.
    max_body_bytes: int = 16 * 1024
    # Demo launcher limits.
    max_concurrent_demos: int = 2
    demo_rate: int = 10            # launches ...
    demo_rate_window_s: float = 60.0   # ... per this many seconds
    demo_ttl_s: float = 600.0      # demo containers and processes are removed after this
    demo_output_cap: int = 64 * 1024
    # Server-Sent Events.
    sse_heartbeat_s: float = 15.0
    sse_ring_size: int = 50_000    # shared backlog; a client further behind is resynced
    sse_min_interval_s: float = 0.03   # diffs are coalesced to at most ~30 per second
    sse_streams_at_min_interval: int = 16   # beyond this many open streams, steps space out ...
    sse_max_interval_s: float = 0.1    # ... up to this (every step wakes every stream's thread)
    sse_ring_bytes: int = 16 * 1024 * 1024   # ... and at most this much text
    sse_chunk_bytes: int = 64 * 1024   # what one client takes from the ring per write
    sse_pending_events: int = 20_000  # events waiting to be encoded; the oldest beyond are dropped
    sse_max_streams: int = 256     # concurrent /stream clients; more get 503 + Retry-After
    events_ring_size: int = 10_000  # recent events served by /api/events
    # /metrics needs the token like every other endpoint unless this is set.
    public_metrics: bool = False
    db: Optional[str] = None

    def host_allowed(self, host_header: Optional[str], machine_addresses=()) -> bool:
        """The DNS-rebinding defence: is this Host header one of ours?

        Only the name matters: a rebinding attack needs a name the attacker
        controls that resolves to us, whatever the port.  The port is not
        compared because a port forward (Vagrant: host 5001 -> guest 5000)
        legitimately changes it.
        """
        if not host_header:
            return False
        name = host_header_name(host_header)
        if name is None:
            return False
        if is_loopback(name):
            return True
        allowed = {h.lower().strip("[]") for h in (self.host,) + tuple(self.allowed_hosts)}
        if name in allowed:
            return True
        # Bound to 0.0.0.0/::: the machine's own addresses are how others reach it.
        # An IP literal cannot be rebound, so accepting ours is safe.
        if is_wildcard(self.host) and name in {a.lower() for a in machine_addresses}:
            return True
        return False


def host_header_name(host_header: str) -> Optional[str]:
    """The name part of a Host header, lower-cased, or None when malformed."""
    value = host_header.strip().lower()
    if not value or any(c.isspace() for c in value) or "/" in value or "@" in value:
        return None
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        rest = value[end + 1:]
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            return None
        return value[1:end]
    if value.count(":") == 1:
        name, port = value.split(":")
        if not port.isdigit():
            return None
        return name
    if value.count(":") > 1:
        return None  # a bare IPv6 address must be bracketed in a Host header
    return value
