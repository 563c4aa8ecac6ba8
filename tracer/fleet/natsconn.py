"""Connecting to the fleet's NATS servers: a credentials bundle, TLS, and the options
every fleet connection shares.

A bundle is a directory `nsgraph fleet init` writes for one identity (an agent, the
dashboard, the administrator):

  ca.crt          the fleet CA: the only issuer whose server certificates are trusted
  client.crt/key  this identity's client certificate (the server maps it to a NATS user
                  with its own permissions: verify_and_map)
  identity.json   {"role": "agent"|"dashboard"|"admin"|"monitor", "node": NAME or null,
                   "user": the NATS user, "servers": ["tls://HOST:4222", ...]}

The connection runs in an asyncio loop of its own thread (runner.LoopThread); nothing
here blocks a tracer thread.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import stat
from dataclasses import dataclass, field
from typing import Callable, List, Optional

from .subjects import inbox_prefix

DEFAULT_PORT = 4222


class CredentialsError(Exception):
    """A bundle that cannot be used; the message says how to fix it."""


@dataclass
class Credentials:
    directory: str
    role: str
    user: str
    node: Optional[str] = None
    servers: List[str] = field(default_factory=list)
    server_name: Optional[str] = None       # the name to check the server certificate for

    @property
    def ca(self) -> str:
        return os.path.join(self.directory, "ca.crt")

    @property
    def cert(self) -> str:
        return os.path.join(self.directory, "client.crt")

    @property
    def key(self) -> str:
        return os.path.join(self.directory, "client.key")

    @property
    def identity(self) -> str:
        """A subject-safe name for this identity's reply inbox."""
        return self.node if self.role == "agent" else self.role

    @classmethod
    def load(cls, directory: str) -> "Credentials":
        directory = os.path.abspath(directory)
        path = os.path.join(directory, "identity.json")
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            raise CredentialsError(
                "%s has no identity.json: use a bundle that `nsgraph fleet init` made (an agent: "
                "/etc/nsgraph/fleet/agent-NODE copied to the node; serve --fleet: /etc/nsgraph/fleet/dashboard)"
                % directory) from None
        except (OSError, ValueError) as exc:
            raise CredentialsError("cannot read %s (%s)" % (path, exc)) from None
        if not isinstance(data, dict) or data.get("role") not in ("agent", "dashboard", "admin", "monitor"):
            raise CredentialsError("%s: role must be agent, dashboard, admin or monitor" % path)
        creds = cls(directory, data["role"], str(data.get("user", "")), data.get("node"),
                    [str(s) for s in data.get("servers") or []], data.get("server_name"))
        for needed in (creds.ca, creds.cert, creds.key):
            if not os.path.isfile(needed):
                raise CredentialsError("%s is missing from the bundle %s; copy the whole directory "
                                       "`nsgraph fleet init` made" % (os.path.basename(needed), directory))
        mode = os.stat(creds.key).st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise CredentialsError("%s is readable by others (mode %o): chmod 600 %s"
                                   % (creds.key, mode & 0o777, creds.key))
        return creds

    def ssl_context(self) -> ssl.SSLContext:
        try:
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_cert_chain(self.cert, self.key)
        except (ssl.SSLError, OSError) as exc:
            raise CredentialsError("the bundle %s does not load (%s); make it again with "
                                   "`nsgraph fleet init`" % (self.directory, exc)) from None
        return ctx


def require_client() -> None:
    """CredentialsError (with what to install) when nats-py is missing."""
    try:
        import nats  # noqa: F401
    except ImportError:
        raise CredentialsError("the fleet needs the nats-py package, which is not installed: "
                               "sudo scripts/setup.sh fleet-agent|fleet-server|fleet-dashboard installs it "
                               "(or pip install 'nsgraph[fleet]' in nsgraph's venv)") from None


def parse_servers(text: Optional[str], fallback: List[str] = ()) -> List[str]:
    """'tls://a:4222,b' -> ['tls://a:4222', 'tls://b:4222']; TLS is always used."""
    items = [s.strip() for s in (text or "").split(",") if s.strip()] or list(fallback)
    if not items:
        raise CredentialsError("no NATS server given: pass --nats tls://HOST:4222 (several: comma-separated)")
    out = []
    for item in items:
        if "://" not in item:
            item = "tls://" + item
        scheme, rest = item.split("://", 1)
        if scheme not in ("tls", "nats"):
            raise CredentialsError("%r: use tls://HOST:PORT (the fleet always uses TLS)" % item)
        if not rest or rest.startswith(":"):
            raise CredentialsError("%r has no host" % item)
        if ":" not in rest.rsplit("]", 1)[-1]:
            rest += ":%d" % DEFAULT_PORT
        out.append("tls://" + rest)
    return out


async def connect_until(options: dict, stopping: Callable[[], bool], on_error: Callable[[BaseException], None]):
    """nats.connect(**options), tried again (0.2 s, doubling to 2 s) until it works or
    stopping(); None if stopped.  nats-py reconnects by itself once a first connection
    was made, but not the first one: an agent must start while NATS is down."""
    import asyncio

    import nats
    delay = 0.2
    while not stopping():
        try:
            return await nats.connect(**options)
        except Exception as exc:
            on_error(exc)
            await asyncio.sleep(delay)
            delay = min(2 * delay, 2.0)
    return None


class _SslEofNoise(logging.Filter):
    """asyncio warns "returning true from eof_received() has no effect when using ssl" at
    every close of a TLS connection nats-py made: harmless, and it would fill the logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "eof_received" not in record.getMessage()


logging.getLogger("asyncio").addFilter(_SslEofNoise())


def connect_options(creds: Credentials, servers: List[str], name: str, **callbacks) -> dict:
    """Keyword arguments for nats.connect() shared by the agent and the dashboard."""
    options = dict(
        servers=servers, name=name, tls=creds.ssl_context(),
        inbox_prefix=inbox_prefix(creds.identity).encode(),
        allow_reconnect=True, max_reconnect_attempts=-1, reconnect_time_wait=0.5,
        connect_timeout=3, ping_interval=5, max_outstanding_pings=2,
        dont_randomize=False, verbose=False,
    )
    if creds.server_name:
        options["tls_hostname"] = creds.server_name
    options.update({k: v for k, v in callbacks.items() if v is not None})
    return options


class ErrorNotes:
    """The last error as one line, logged once per kind of trouble per 30 s."""

    def __init__(self, logger: logging.Logger, every_s: float = 30.0):
        self.logger = logger
        self.every_s = every_s
        self.last: Optional[str] = None
        self.count = 0
        self._logged: dict = {}

    def note(self, exc: BaseException, what: str = "") -> str:
        import time
        self.count += 1
        message = (what + ": " if what else "") + explain_error(exc)
        key = (what, type(exc).__name__)
        now = time.monotonic()
        if now - self._logged.get(key, -1e9) >= self.every_s:
            self._logged[key] = now
            self.logger.warning("fleet: %s", message)
        self.last = message
        return message


def explain_error(exc: BaseException) -> str:
    """One line about a NATS failure, with what to do about it."""
    text = str(exc) or type(exc).__name__
    low = text.lower()
    if isinstance(exc, ssl.SSLError) or "certificate" in low or "ssl" in low:
        return ("TLS failed (%s): the server's certificate must come from the bundle's ca.crt and "
                "name the host in the URL; the server must know this client certificate" % text)
    if "authorization" in low or "authentication" in low:
        return "the server refused these credentials (%s): is this identity in its configuration?" % text
    if "permissions violation" in low:
        return "the server refused a publish (%s): an agent may publish only to its own node's subjects" % text
    if "no servers available" in low or "connection refused" in low or isinstance(exc, ConnectionError):
        return "no NATS server reachable (%s); retrying" % text
    return "%s: %s" % (type(exc).__name__, text)
