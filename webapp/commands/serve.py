"""`nsgraph serve`: the tracer, the graph and the dashboard in one process.

Order matters for the people waiting on us: the HTTP server listens and the
URL (token included) is printed on stdout FIRST; the slow part (compiling the
probes, the first /proc snapshot) follows with progress lines on stderr and a
"starting" state at /api/status, so the page shows progress, never an error.

The HTTP server is waitress with nsgraph's connection policy (webapp/server.py):
request deadlines, idle and stalled connections closed, a connection cap that
sheds unserved sockets first, a cap on event streams; the access log
(webapp/accesslog.py) never shows the token.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import stat
import sys
import threading
import time

from tracer.commands import argcheck
from tracer.exitcodes import EXIT_FAILURE, EXIT_NO_PRIVILEGES, EXIT_OK, EXIT_USAGE

from ..server import ServerLimits

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
  nsgraph serve --fleet tls://nats.example:4222 --fleet-creds /etc/nsgraph/fleet/dashboard
      (fleet mode: every node's graph from NATS JetStream; no tracing here, no root needed)
"""


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "serve", help="run the live dashboard (tracer + graph + web UI)",
        description="Trace namespace events and serve the live dashboard.", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    from ..fleet_options import add_fleet_arguments
    add_fleet_arguments(p)
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
    limits = ServerLimits()
    p.add_argument("--max-connections", type=int, default=limits.max_connections,
                   metavar="N", help="open connections before idle ones are shed (default %d; lowered to "
                   "fit the descriptor limit)" % limits.max_connections)
    p.add_argument("--max-streams", type=int, default=limits.max_streams, metavar="N",
                   help="concurrent live-update streams (/stream; one per open tab); more get 503 "
                   "(default %d)" % limits.max_streams)
    p.add_argument("--no-access-log", action="store_true", help="do not log every request on stderr")
    p.add_argument("--history-max-mb", type=float, default=HISTORY_MAX_MB, metavar="MB",
                   help="keep the history database under this size, oldest history first (default %d)"
                   % HISTORY_MAX_MB)
    p.add_argument("--history-days", type=float, default=HISTORY_DAYS, metavar="DAYS",
                   help="delete history older than this (default %d)" % HISTORY_DAYS)
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


def _check_token_place(path: str) -> None:
    """Refuse a token file that someone else could have written or could replace."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        st = os.stat(directory)
    except OSError as exc:
        raise UsageError("cannot use the token file %s: its directory %s: %s" % (path, directory, exc.strerror))
    if st.st_mode & 0o022:
        raise UsageError("refusing the token file %s: its directory %s is writable by %s (mode %o), so "
                         "another user could replace it; keep it in a directory only you can write to "
                         "(e.g. /var/lib/nsgraph)" % (path, directory,
                                                      "everyone" if st.st_mode & 0o002 else "its group",
                                                      st.st_mode & 0o7777))


def _read_token_file(path: str) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd) as f:
        st = os.fstat(f.fileno())
        if st.st_uid != os.geteuid():
            raise UsageError("refusing the token file %s: it belongs to uid %d, not to the user nsgraph "
                             "runs as (uid %d); chown it or delete it to have a new one generated"
                             % (path, st.st_uid, os.geteuid()))
        if not stat.S_ISREG(st.st_mode):
            raise UsageError("the token file %s is not a regular file" % path)
        return f.read(4096).strip()


def load_token(path):
    """The token from path (created, mode 0600, when missing), or a fresh random one."""
    from ..config import new_token
    if not path:
        return new_token()
    _check_token_place(path)
    try:
        token = _read_token_file(path)
    except UnicodeDecodeError:
        raise UsageError("the token file %s is not text; delete it to have a new one generated" % path)
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
        if exc.errno == errno.ELOOP:
            raise UsageError("refusing the token file %s: it is a symbolic link" % path)
        raise UsageError("cannot read the token file %s (%s)" % (path, exc.strerror))
    if len(token) < 16 or any(c.isspace() for c in token):
        raise UsageError("the token file %s must hold one token of at least 16 characters without "
                         "spaces; delete it to have a new one generated" % path)
    mode = os.stat(path).st_mode & 0o777
    if mode & 0o077:
        print("nsgraph: warning: %s is readable by others (mode %o); chmod 600 %s" % (path, mode, path),
              file=sys.stderr)
    return token


# How long a thread may keep the GIL while another waits for it (Python's default: 5 ms).
# A request is a chain of short steps (accept, read, parse, handle, send), each of which
# waits for the GIL again behind the tracer's busy threads (decoding, the graph, the
# history writer): 1 ms keeps that chain short under an event storm.
SWITCH_INTERVAL_S = 0.001
TRIM_EVERY_S = 60.0          # a full garbage collection, then malloc_trim: freed pages back to the system
HISTORY_MAX_MB = 400         # with its write-ahead log, the database stays under ~500 MB
HISTORY_DAYS = 7

# Descriptors the tracer needs besides client connections (see webapp/server.py).
RESERVED_FDS_FOR_LIMIT = 1024


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


def run(args) -> int:
    try:
        return _run(args)
    except UsageError as exc:
        print("nsgraph serve: %s" % exc, file=sys.stderr)
        return EXIT_USAGE


def _run(args) -> int:
    from tracer import malloc
    from tracer.service import NsgraphService, ServiceConfig

    from .. import create_app
    from ..accesslog import AccessLog
    from ..config import WebConfig
    from ..server import NsgraphHTTPServer, fit_connections, raise_fd_limit

    problem = argcheck.first_problem(args, (
        ("port", "--port", argcheck.int_range(0, 65535)),
        ("max_connections", "--max-connections", argcheck.int_range(16, 1_000_000)),
        ("max_streams", "--max-streams", argcheck.int_range(1, 10_000)),
        ("history_max_mb", "--history-max-mb", argcheck.size_mb),
        ("history_days", "--history-days", argcheck.days)))
    if problem:
        raise UsageError(problem)
    check_address(args.host, args.allow_remote)
    from ..fleet_options import FleetSetupError, prepare_fleet
    try:
        fleet = prepare_fleet(args)     # None in single-host mode
    except FleetSetupError as exc:
        raise UsageError(str(exc))
    from tracer.kernel.probes import missing_privileges
    problem = None if fleet else missing_privileges()
    if problem:
        print("nsgraph serve: %s" % problem, file=sys.stderr)
        return EXIT_NO_PRIVILEGES
    token = load_token(args.token_file)

    def progress(message: str) -> None:
        print("nsgraph: %s" % message, file=sys.stderr, flush=True)

    malloc.tune()             # before any thread starts: see tracer/malloc.py
    malloc.trace_from_env()   # $NSGRAPH_TRACEMALLOC: snapshots on SIGUSR2 (diagnosis only)
    malloc.tune_gc()          # full garbage collections only from the loop below
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    limits = ServerLimits(max_connections=args.max_connections, max_streams=args.max_streams)
    fd_soft, _fd_hard = raise_fd_limit(limits.max_connections + RESERVED_FDS_FOR_LIMIT)
    fitted = fit_connections(limits, fd_soft)
    if fitted.max_connections < limits.max_connections:
        progress("warning: the descriptor limit (%d) allows only %d connections, not %d; raise it "
                 "(systemd: LimitNOFILE=, shell: ulimit -n)" % (fd_soft, fitted.max_connections,
                                                             limits.max_connections))
    limits = fitted
    try:
        # Bind first (with a placeholder app) so that --port 0 resolves to the
        # real port before the config, whose cookie name carries it, is made.
        server = NsgraphHTTPServer(lambda e, s: [], args.host, args.port, limits)
    except OSError as exc:
        print("nsgraph serve: cannot listen on %s:%d (%s); choose another --port or stop what "
              "uses it (ss -ltnp 'sport = :%d')" % (args.host, args.port, exc.strerror or exc,
                                                   args.port), file=sys.stderr)
        return EXIT_FAILURE
    port = server.port
    config = WebConfig(host=args.host, port=port, token=token, read_only=args.read_only,
                       allowed_hosts=tuple(args.allowed_host), db=args.db,
                       public_metrics=args.public_metrics, sse_max_streams=limits.max_streams)

    if fleet:
        service, app = fleet(config, _machine_addresses())
    else:
        # Nothing starts at construction: the page answers "starting" until start() is done.
        service = NsgraphService(ServiceConfig(db=args.db, retention_s=args.history_days * 86400,
                                               history_max_bytes=int(args.history_max_mb * 2**20)))
        app = create_app(config, service=service, machine_addresses=_machine_addresses())
    state = app.extensions["nsgraph"]
    state.set_server_stats(server.stats)
    if not args.no_access_log:
        app.wsgi_app = AccessLog(app.wsgi_app, secrets=(token,))
    server.application = app

    stop = threading.Event()
    server_thread = threading.Thread(target=server.serve, name="nsgraph-http", daemon=True)
    server_thread.start()
    started = time.monotonic()
    print(url_for(args.host, port, token), flush=True)
    progress("dashboard listening on %s:%d (the URL above carries the access token); up to %d "
             "connections, %d live streams" % (args.host, port, limits.max_connections, limits.max_streams))

    def on_signal(signum, _frame):
        stop.set()
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    state.start()
    try:
        # start() explains a failure in service.status (the page shows it) and returns False.
        if service.start(progress):
            progress("running: %s started in %.1f s"
                     % ("the fleet consumer" if fleet else "tracing", time.monotonic() - started))
        else:
            progress("tracing failed to start: %s (the dashboard stays up and shows this "
                     "error; fix it and restart nsgraph serve)" % service.status.error)
        malloc.freeze_startup()
        trimmed = time.monotonic()
        while not stop.wait(0.5):
            if time.monotonic() - trimmed >= TRIM_EVERY_S:
                malloc.collect_fully()
                malloc.trim()
                trimmed = time.monotonic()
    finally:
        progress("shutting down")
        for s, handler in previous.items():
            signal.signal(s, handler)
        state.stop()
        server.stop()
        try:
            service.stop()
        except Exception as exc:
            progress("stopping the tracer failed: %s" % exc)
    return EXIT_OK
