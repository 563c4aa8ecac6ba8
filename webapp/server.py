"""The HTTP server of `nsgraph serve`: waitress, with the limits a long-running service needs.

Why waitress (bench/bench_http_servers.py has the numbers): it reads every
request in ONE event loop (epoll here: eventloop.py; no FD_SETSIZE ceiling) and hands only
complete requests to its worker threads.  A connection that sends nothing, or
a header a byte at a time, costs a socket and a small parser, never a thread,
so the dashboard's own requests keep their threads whatever a local user opens.
It is pure Python, one process (the tracer lives in this process), well kept
(Pylons), and on PyPI and in Debian.

What waitress leaves to us, and this module adds (`NsgraphHTTPServer.maintenance`,
run by the loop once a second):
  * a request deadline: a connection that has begun a request gets
    `request_timeout_s` (counted from when it started waiting) to deliver all of
    it, headers and body, so a client trickling a byte every few seconds is cut
    off (waitress only knows inactivity);
  * connections with nothing under way (nothing sent yet, or idle between
    keep-alive requests) are closed after `idle_timeout_s`;
  * a response that has not drained for `stall_timeout_s` (a stream to a tab
    that stopped reading) is closed, which frees its thread and stream slot;
  * shedding: past `max_connections`, the connections that are not being served
    are closed, those that never sent a complete request first, oldest first,
    so a flood of idle sockets cannot keep a real client out (a plain cap would
    stop accepting, and the dashboard's own requests would wait behind it).
Threads: `request_threads` for ordinary requests plus one per allowed event
stream (`max_streams`, enforced by webapp/stream.py with 503 + Retry-After), so
the streams can never take the threads the API needs.
"""

from __future__ import annotations

import collections
import heapq
import resource
import threading
import time
from dataclasses import dataclass

from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer
from waitress.task import ThreadedTaskDispatcher

from .eventloop import EpollLoop

# Descriptors kept for everything but client sockets: BPF maps and programs,
# perf/ring buffers, SQLite, the Docker socket, /proc reads during a reconcile.
RESERVED_FDS = 256
# Connections taken from the listen queue per event-loop pass.
ACCEPT_BATCH = 64


@dataclass(frozen=True)
class ServerLimits:
    max_connections: int = 4096      # beyond this, unserved connections are shed
    request_timeout_s: float = 10.0  # to deliver a complete request
    idle_timeout_s: float = 30.0     # a keep-alive connection between requests
    stall_timeout_s: float = 60.0    # a response the client stopped reading
    request_threads: int = 8         # threads for everything but event streams
    max_streams: int = 256           # concurrent /stream responses (each holds a thread)
    max_request_body: int = 1 << 20  # waitress refuses bigger bodies (chunked too) with 413
    max_request_header: int = 32 * 1024
    # Per connection: a slow reader blocks its writer here.  64 KB (one SSE chunk) rather than
    # 256 KB: 200 streams, half stalled, added 98 MB of RSS instead of 139 MB (one pair, shared
    # machine); the kernel's socket buffer still holds megabytes in flight.
    outbuf_high_watermark: int = 64 * 1024

    def check(self) -> None:
        for name in ("max_connections", "request_threads", "max_streams"):
            if getattr(self, name) < 1:
                raise ValueError("%s must be at least 1" % name)
        for name in ("request_timeout_s", "idle_timeout_s", "stall_timeout_s"):
            value = getattr(self, name)
            if not (value == value and 0 < value < 1e6):
                raise ValueError("%s must be a positive number of seconds" % name)


def raise_fd_limit(wanted: int) -> tuple:
    """Raise the soft RLIMIT_NOFILE towards `wanted` (up to the hard limit); (soft, hard) after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft, hard


def fit_connections(limits: ServerLimits, fd_soft_limit: int) -> ServerLimits:
    """The limits with max_connections lowered to what the descriptor limit allows."""
    room = max(16, fd_soft_limit - RESERVED_FDS)
    if limits.max_connections <= room:
        return limits
    return ServerLimits(**dict(limits.__dict__, max_connections=room))


class _Channel(HTTPChannel):
    """A waitress channel that remembers since when it waits for a request, and how many it had."""

    def __init__(self, server, sock, addr, adj, map=None):
        super().__init__(server, sock, addr, adj, map=map)
        self.waiting_since = self.creation_time
        self.completed_requests = 0

    def received(self, data):
        before = len(self.requests)
        result = super().received(data)
        if len(self.requests) > before:
            self.completed_requests += len(self.requests) - before
        return result

    def service(self):
        try:
            super().service()
        finally:
            self.waiting_since = time.time()
            self.server.changed_elsewhere(self)      # the request is done: read the next one

    def write_soon(self, data):
        try:
            return super().write_soon(data)
        finally:
            # Sent at once (a client that keeps up): nothing for the loop to do.  Otherwise the
            # loop must watch for the socket to drain, or see the connection closed.
            if self.total_outbufs_len or not self.connected:
                self.server.changed_elsewhere(self)


class NsgraphHTTPServer(TcpWSGIServer):
    channel_class = _Channel

    def __init__(self, application, host: str, port: int, limits: ServerLimits):
        limits.check()
        self.limits = limits
        self.socket_map = {}
        self.closed = collections.Counter()     # connections we closed, by reason
        self.accepted = 0
        adj = Adjustments(
            host=host, port=port, threads=limits.request_threads + limits.max_streams,
            connection_limit=limits.max_connections + 64, cleanup_interval=1,
            channel_timeout=int(max(limits.idle_timeout_s, limits.request_timeout_s)) + 1,
            asyncore_use_poll=True,              # select() stops at 1 024 descriptors
            max_request_body_size=limits.max_request_body,
            max_request_header_size=limits.max_request_header,
            outbuf_high_watermark=limits.outbuf_high_watermark,
            outbuf_overflow=limits.outbuf_high_watermark * 2,
            backlog=1024, ident="nsgraph", expose_tracebacks=False,
            log_socket_errors=False)             # resets by clients are normal, not tracebacks
        dispatcher = ThreadedTaskDispatcher()
        dispatcher.set_thread_count(adj.threads)
        super().__init__(application, map=self.socket_map, dispatcher=dispatcher, adj=adj,
                         sockinfo=adj.listen[0])
        self._stopped = threading.Event()
        # The loop (eventloop.py): epoll, asking only connections that may have changed.
        self.loop = EpollLoop(self.socket_map)

    def _touch(self, channel) -> None:
        """The loop must look at this channel again (its state changed outside an event)."""
        try:
            self.loop.touch(channel.socket.fileno())
        except (AttributeError, OSError):
            pass

    def changed_elsewhere(self, channel) -> None:
        """A worker thread changed this channel: the loop looks at it in its next pass."""
        try:
            self.loop.changed(channel.socket.fileno())
        except (AttributeError, OSError):
            return
        self.trigger.pull_trigger()

    # -- connection policy (runs in the event loop thread) ------------------------------------

    def handle_accept(self):
        # Drain the listen queue (up to ACCEPT_BATCH) per readiness event: waitress takes one
        # connection per loop pass, and a pass costs a poll over every open connection, so a
        # flood of connects would queue a real client's behind them in the kernel's backlog.
        for _ in range(ACCEPT_BATCH):
            try:
                accepted = self.accept()
            except OSError:                  # the peer is gone already, or out of descriptors
                self.closed["accept_errors"] += 1
                break
            if accepted is None:             # the queue is empty
                break
            conn, addr = accepted
            try:
                self.set_socket_options(conn)
            except OSError:
                conn.close()
                continue
            channel = self.channel_class(self, conn, self.fix_addr(addr), self.adj, map=self.socket_map)
            self._touch(channel)
            self.accepted += 1
        if len(self.active_channels) > self.limits.max_connections:
            self._shed()

    def _shed(self) -> None:
        """Close unserved connections until 5 % below the cap (so not every accept scans)."""
        open_now = [c for c in self.active_channels.values() if not c.will_close]
        excess = len(open_now) - int(self.limits.max_connections * 0.95)
        if excess <= 0:
            return
        candidates = [c for c in open_now if not c.requests]
        # Never-served connections first, then the longest waiting.
        for channel in heapq.nsmallest(excess, candidates,
                                       key=lambda c: (c.completed_requests > 0, c.waiting_since)):
            channel.will_close = True
            self._touch(channel)
            self.closed["shed"] += 1

    def maintenance(self, now):
        limits = self.limits
        for channel in list(self.active_channels.values()):
            if channel.will_close:
                continue
            if channel.requests:
                # Being served.  Only a response the client stopped reading is cut.
                if channel.total_outbufs_len and now - channel.last_activity > limits.stall_timeout_s:
                    # Closed here, not by will_close: waitress acts on will_close in handle_write,
                    # which poll(2) never calls for a socket whose peer stopped reading.  Closing
                    # wakes the blocked writer thread (ClientDisconnected), freeing its slot.
                    channel.handle_close()
                    self.closed["stalled"] += 1
                continue
            waiting = now - channel.waiting_since
            if channel.request is not None:      # a request is arriving, maybe a byte at a time
                if waiting > limits.request_timeout_s:
                    channel.will_close = True
                    self._touch(channel)
                    self.closed["request_timeout"] += 1
            elif waiting > limits.idle_timeout_s:   # nothing sent yet, or between requests
                channel.will_close = True
                self._touch(channel)
                self.closed["idle"] += 1

    # -- life cycle -----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self.effective_port)

    def serve(self) -> None:
        """Run the event loop until stop() (call from a thread of its own)."""
        try:
            self.loop.run(timeout=1.0)
        finally:
            self._stopped.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Close every connection (from the loop's own thread), then end the worker threads."""
        def close_everything():
            wasyncore.close_all(self.socket_map)
        self.trigger.pull_trigger(close_everything)
        self._stopped.wait(timeout)
        self.task_dispatcher.shutdown(cancel_pending=True, timeout=timeout)

    def stats(self) -> dict:
        channels = list(self.active_channels.values())
        busy = sum(1 for c in channels if c.requests)
        backlogged = sum(1 for c in channels if c.total_outbufs_len)
        return {"connections": len(channels), "connections_busy": busy,
                "connections_backlogged": backlogged,
                "connections_max": self.limits.max_connections, "accepted": self.accepted,
                "closed": dict(self.closed), "threads": self.adj.threads,
                "queued_requests": self.task_dispatcher.queue.__len__(),
                "loop_passes": self.loop.passes}
