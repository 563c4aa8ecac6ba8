"""The access log of `nsgraph serve`: one line per response, the token never in it.

    127.0.0.1 - [03/Dec/2026:02:50:00 +0000] "GET /api/status?token=REDACTED HTTP/1.1" 200 512 0.003s

The token can reach a request target in several spellings: `?token=`, a
percent-encoded key (`?%74oken=`, which the app decodes to the same thing), or
anywhere else in the target.  Every query parameter whose *decoded* name is
`token` is redacted, and a target that still contains the token (raw or
decoded) is not logged at all.  Requests the server refuses before the app sees
them (a malformed request line: 400, an unknown HTTP version: 505) are not
logged by anyone: waitress answers them without logging.  Control characters
are escaped, so a request cannot forge log lines.  A stream is logged when it
ends, with its duration.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Callable, Iterable, Optional
from urllib.parse import unquote, unquote_plus

from tracer.text import printable

REDACTED = "REDACTED"


def redact_target(target: str, secrets: Iterable[str] = ()) -> str:
    """The request target (path?query) with every token redacted."""
    path, sep, query = target.partition("?")
    if sep:
        parts = []
        for part in query.replace(";", "&").split("&"):
            key, eq, _value = part.partition("=")
            if unquote_plus(key).strip().lower() == "token":
                part = key + "=" + REDACTED
            parts.append(part)
        target = path + "?" + "&".join(parts)
    for secret in secrets:
        if secret and (secret in target or secret in unquote(target) or secret in unquote_plus(target)):
            return "[target withheld: it contains the access token]"
    return target


class AccessLog:
    """WSGI middleware writing one line per finished response to `write` (stderr by default)."""

    def __init__(self, app, secrets: Iterable[str] = (), write: Optional[Callable[[str], None]] = None):
        self.app = app
        self.secrets = tuple(s for s in secrets if s)
        self._write = write or _stderr_line
        self._lock = threading.Lock()

    def __call__(self, environ, start_response):
        started = time.monotonic()
        seen = {"status": "-"}

        def _start(status, headers, exc_info=None):
            seen["status"] = status.split(" ", 1)[0]
            return start_response(status, headers, exc_info)

        body = self.app(environ, _start)
        return _Logged(body, lambda size: self._log(environ, seen["status"], size, started))

    def _log(self, environ, status: str, size: int, started: float) -> None:
        target = environ.get("REQUEST_URI") or (environ.get("PATH_INFO", "") + (
            "?" + environ["QUERY_STRING"] if environ.get("QUERY_STRING") else ""))
        line = '%s - [%s] "%s %s %s" %s %d %.3fs' % (
            environ.get("REMOTE_ADDR", "-"), time.strftime("%d/%b/%Y:%H:%M:%S %z"),
            printable(environ.get("REQUEST_METHOD", "-")), printable(redact_target(target, self.secrets)),
            printable(environ.get("SERVER_PROTOCOL", "-")), status, size, time.monotonic() - started)
        with self._lock:
            try:
                self._write(line)
            except (OSError, ValueError):
                pass                     # a closed or full stderr must not break a response


class _Logged:
    """The response body, counted; the log line is written when the server closes it."""

    def __init__(self, body, done):
        self._body = body
        self._done = done
        self.size = 0

    def __iter__(self):
        for chunk in self._body:
            self.size += len(chunk)
            yield chunk

    def close(self):
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._done(self.size)


def _stderr_line(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
