"""Counting the clients the NATS servers turned away, from the servers' own advisories.

A client that cannot authenticate (a certificate from the fleet's CA whose name is no
user, say) makes a server publish `$SYS.SERVER.<id>.CLIENT.AUTH.ERR` in the system
account.  The `monitor` identity (`nsgraph fleet init` makes it: a system-account user
that may only subscribe to those advisories) lets the dashboard count them per fleet
and show the last ones.  A client without any certificate from the fleet's CA fails
the TLS handshake before authentication; servers log those, but publish no advisory.
"""

from __future__ import annotations

import json
import time

AUTH_ERRORS = "$SYS.SERVER.*.CLIENT.AUTH.ERR"


class AuthMonitor:
    def __init__(self, fleet):
        self.fleet = fleet

    async def subscribe(self, nc) -> None:
        await nc.subscribe(AUTH_ERRORS, cb=self._on_advisory)

    async def _on_advisory(self, msg) -> None:
        try:
            body = json.loads(msg.data)
        except ValueError:
            body = {}
        client = body.get("client") or {}
        server = (body.get("server") or {}).get("name")
        self.fleet.counters["auth_errors"] += 1
        self.fleet.refused_clients.append({"time": time.time(), "server": server, "host": client.get("host"),
                            "port": client.get("port"), "name": client.get("name"),
                            "reason": body.get("reason")})


def permissions() -> dict:
    """The monitor user: subscribe to authentication failures, publish nothing."""
    return {"publish": {"deny": [">"]}, "subscribe": {"allow": [AUTH_ERRORS]}}
