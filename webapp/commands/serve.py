"""`nsgraph serve`: the tracer, the graph and the dashboard in one process.

Order matters for the people waiting on us: the HTTP server listens and the
URL (token included) is printed on stdout FIRST; the slow part (compiling the
probes, the first /proc snapshot) follows with progress lines on stderr and a
"starting" state at /api/status, so the page shows progress, never an error.

The WSGI server is werkzeug's threaded server (make_server(threaded=True)): a
thread per connection is what Server-Sent Events need (each open /stream holds
its connection for as long as the tab is open), werkzeug ships with Flask, and
a dashboard serves a handful of tabs, not thousands.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time

from tracer.exitcodes import EXIT_FAILURE, EXIT_NO_PRIVILEGES, EXIT_OK, EXIT_USAGE

EPILOG = """\
security: the dashboard launches containers, which is root-equivalent, so it
listens on 127.0.0.1 only and needs the token printed in its URL. Another
address needs --allow-remote (and then prefer an SSH tunnel or a port forward
bound to the client's loopback). --read-only disables the demo launcher.

examples:
  sudo nsgraph serve                              # http://127.0.0.1:5000/?token=...
  sudo nsgraph serve --port 8080 --read-only
  sudo nsgraph serve --token-file /var/lib/nsgraph/token --db /var/lib/nsgraph/events.db
  sudo nsgraph serve --host 0.0.0.0 --allow-remote --token-file /var/lib/nsgraph/token
"""


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "serve", help="run the live dashboard (tracer + graph + web UI)",
        description="Trace namespace events and serve the live dashboard.", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=5000, help="TCP port (default 5000; 0 picks a free one)")
    p.add_argument("--allow-remote", action="store_true",
                   help="allow a --host other than loopback (anyone who can reach it and has the token "
                        "can launch containers)")
    p.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                   help="another Host header name to accept (a DNS name for this machine); repeatable")
    p.add_argument("--token-file", metavar="PATH",
                   help="read the access token from PATH; if PATH does not exist, write a new one there (mode 0600)")
    p.add_argument("--read-only", action="store_true", help="disable the demo launcher")
    p.add_argument("--db", metavar="PATH", help="SQLite event store for history (the time scrubber)")
    p.add_argument("--public-metrics", action="store_true",
                   help="serve /metrics without the token (it reveals host activity)")
    p.set_defaults(func=run)


class UsageError(Exception):
    pass


def check_address(host: str, allow_remote: bool) -> None:
    from ..config import is_loopback
    if not is_loopback(host) and not allow_remote:
        raise UsageError(
            "refusing to listen on %s: the dashboard can launch containers (root-equivalent), so it "
            "listens on loopback only unless you add --allow-remote (prefer an SSH tunnel: "
            "ssh -L 5000:127.0.0.1:5000 HOST)" % host)


def load_token(path):
    """The token from path (created, mode 0600, when missing), or a fresh random one."""
    from ..config import new_token
    if not path:
        return new_token()
    try:
        with open(path) as f:
            token = f.read().strip()
    except FileNotFoundError:
        token = new_token()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # someone else wrote it meanwhile: use theirs
            return load_token(path)
        except OSError as exc:
            raise UsageError("cannot create the token file %s (%s): check the directory exists and "
                             "is writable" % (path, exc.strerror))
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        return token
    except OSError as exc:
        raise UsageError("cannot read the token file %s (%s)" % (path, exc.strerror))
    if len(token) < 16 or any(c.isspace() for c in token):
        raise UsageError("the token file %s must hold one token of at least 16 characters without "
                         "spaces; delete it to have a new one generated" % path)
    mode = os.stat(path).st_mode & 0o777
    if mode & 0o077:
        print("nsgraph: warning: %s is readable by others (mode %o); chmod 600 %s" % (path, mode, path),
              file=sys.stderr)
    return token


def url_for(host: str, port: int, token: str) -> str:
    shown = "[%s]" % host if ":" in host and not host.startswith("[") else host
    return "http://%s:%d/?token=%s" % (shown, port, token)


def _machine_addresses():
    try:
        import psutil
        return [a.address.split("%")[0] for addrs in psutil.net_if_addrs().values() for a in addrs
                if a.family.name in ("AF_INET", "AF_INET6")]
    except Exception:
        return []


def _quiet_handler():
    """werkzeug's request handler, minus the token in its access log."""
    import re

    from werkzeug.serving import WSGIRequestHandler

    class Handler(WSGIRequestHandler):
        def log_request(self, code="-", size="-"):
            path = getattr(self, "path", None)
            if path is not None and "token=" in path:
                self.path = re.sub(r"token=[^&]*", "token=REDACTED", path)
                try:
                    return super().log_request(code, size)
                finally:
                    self.path = path
            return super().log_request(code, size)
    return Handler


def run(args) -> int:
    try:
        return _run(args)
    except UsageError as exc:
        print("nsgraph serve: %s" % exc, file=sys.stderr)
        return EXIT_USAGE


def _run(args) -> int:
    from werkzeug.serving import make_server

    from tracer.service import NsgraphService, ServiceConfig

    from .. import create_app
    from ..config import WebConfig

    if not (0 <= args.port <= 65535):
        raise UsageError("--port must be between 0 and 65535")
    check_address(args.host, args.allow_remote)
    from tracer.kernel.probes import missing_privileges
    problem = missing_privileges()
    if problem:
        print("nsgraph serve: %s" % problem, file=sys.stderr)
        return EXIT_NO_PRIVILEGES
    token = load_token(args.token_file)

    def progress(message: str) -> None:
        print("nsgraph: %s" % message, file=sys.stderr, flush=True)

    try:
        # Bind first (with a placeholder app) so that --port 0 resolves to the
        # real port before the config, whose cookie name carries it, is made.
        server = make_server(args.host, args.port, lambda e, s: [], threaded=True,
                             request_handler=_quiet_handler())
    except OSError as exc:
        print("nsgraph serve: cannot listen on %s:%d (%s); choose another --port or stop what "
              "uses it (ss -ltnp 'sport = :%d')" % (args.host, args.port, exc.strerror or exc,
                                                   args.port), file=sys.stderr)
        return EXIT_FAILURE
    port = server.server_port
    config = WebConfig(host=args.host, port=port, token=token, read_only=args.read_only,
                       allowed_hosts=tuple(args.allowed_host), db=args.db,
                       public_metrics=args.public_metrics)

    # Nothing starts at construction: the page answers "starting" until start() is done.
    service = NsgraphService(ServiceConfig(db=args.db))
    app = create_app(config, service=service, machine_addresses=_machine_addresses())
    state = app.extensions["nsgraph"]
    server.app = app

    stop = threading.Event()
    server_thread = threading.Thread(target=server.serve_forever, name="nsgraph-http", daemon=True)
    server_thread.start()
    started = time.monotonic()
    print(url_for(args.host, port, token), flush=True)
    progress("dashboard listening on %s:%d (the URL above carries the access token)" % (args.host, port))

    def on_signal(signum, _frame):
        stop.set()
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    state.start()
    try:
        # start() explains a failure in service.status (the page shows it) and returns False.
        if service.start(progress):
            progress("running: tracing started in %.1f s" % (time.monotonic() - started))
        else:
            progress("tracing failed to start: %s (the dashboard stays up and shows this "
                     "error; fix it and restart nsgraph serve)" % service.status.error)
        while not stop.wait(0.5):
            pass
    finally:
        progress("shutting down")
        for s, handler in previous.items():
            signal.signal(s, handler)
        server.shutdown()
        state.stop()
        try:
            service.stop()
        except Exception as exc:
            progress("stopping the tracer failed: %s" % exc)
    return EXIT_OK
