#!/usr/bin/env python3
"""Abusive and legitimate HTTP clients for the serve benchmarks (loopback only, bounded in time).

As a program, the attacker: one process, one selector, holding
  --idle N     connections that never send a byte (reopened when the server closes them),
  --slow N     connections that send a request header one byte every --slow-every seconds,
  --sse N      authenticated /stream clients; --stalled F of them never read after connecting,
for --seconds, reopening what the server closes (at most --reopen-rate per second), then
prints one JSON line of counts.  As a module: `probe()`, the authenticated user's
requests with their latencies, and `percentile()`.

    python bench/loadgen.py --port 5000 --token T --idle 1100 --slow 500 --sse 200 --seconds 60
"""

from __future__ import annotations

import argparse
import errno
import http.client
import json
import os
import resource
import selectors
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tracer.exitcodes import EXIT_OK  # noqa: E402

HOST = "127.0.0.1"


def percentile(values, q):
    """Nearest-rank percentile (None for no values)."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(q / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def probe(port: int, token: str, seconds: float, interval: float = 0.2, timeout: float = 5.0,
          path: str = "/api/status", stop=None) -> dict:
    """GET `path` with the token on a new connection every `interval` s; latencies in ms.
    A request that fails or takes over `timeout` counts as a failure (its latency: timeout)."""
    latencies, failures, errors = [], 0, {}
    end = time.monotonic() + seconds
    while time.monotonic() < end and not (stop is not None and stop.is_set()):
        t0 = time.monotonic()
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
            conn.request("GET", path, headers={"Authorization": "Bearer " + token})
            response = conn.getresponse()
            response.read()
            conn.close()
            if response.status != 200:
                raise OSError("HTTP %d" % response.status)
            latencies.append((time.monotonic() - t0) * 1000)
        except (OSError, http.client.HTTPException) as exc:
            failures += 1
            key = type(exc).__name__ if not str(exc).startswith("HTTP") else str(exc)
            errors[key] = errors.get(key, 0) + 1
            latencies.append(timeout * 1000)
        time.sleep(max(0.0, interval - (time.monotonic() - t0)))
    return {"requests": len(latencies), "failures": failures, "errors": errors,
            "p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99),
            "max_ms": max(latencies) if latencies else None}


class Attack:
    def __init__(self, port, token, idle, slow, sse, stalled, slow_every, reopen_rate):
        self.port = port
        self.token = token
        self.want = {"idle": idle, "slow": slow, "sse": sse}
        self.stalled_quota = int(sse * stalled)
        self.slow_every = slow_every
        self.reopen_rate = reopen_rate
        self.sel = selectors.DefaultSelector()
        self.open = {"idle": 0, "slow": 0, "sse": 0, "sse_stalled": 0}
        self.counts = {"opened": 0, "closed_by_server": 0, "connect_errors": 0, "sse_bytes": 0,
                       "sse_503": 0, "sse_ok": 0}
        self.slow_conns = {}      # sock -> next send time

    def _connect(self, role):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect((HOST, self.port))
        except BlockingIOError:
            pass
        except OSError:
            self.counts["connect_errors"] += 1
            s.close()
            return False
        stalled = role == "sse" and self.open["sse_stalled"] < self.stalled_quota
        data = {"role": role, "stalled": stalled, "sent": False, "head": b""}
        self.sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE, data)
        self.open[role] += 1
        if stalled:
            self.open["sse_stalled"] += 1
        if role == "slow":
            self.slow_conns[s] = time.monotonic() + self.slow_every
        self.counts["opened"] += 1
        return True

    def _close(self, s, data, by_server=True):
        try:
            self.sel.unregister(s)
        except (KeyError, ValueError):
            pass
        s.close()
        self.open[data["role"]] -= 1
        if data["stalled"]:
            self.open["sse_stalled"] -= 1
        self.slow_conns.pop(s, None)
        if by_server:
            self.counts["closed_by_server"] += 1

    def _on_ready(self, key, mask):
        s, data = key.fileobj, key.data
        if mask & selectors.EVENT_WRITE and not data["sent"]:
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self.counts["connect_errors"] += 1
                self._close(s, data, by_server=False)
                return
            data["sent"] = True
            try:
                if data["role"] == "sse":
                    s.send(("GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
                            "Accept: text/event-stream\r\n\r\n" % self.token).encode())
                elif data["role"] == "slow":
                    s.send(b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            except OSError:
                self._close(s, data)
                return
            # Stalled SSE clients read only the response head (see below), then stop.
            self.sel.modify(s, selectors.EVENT_READ, data)
            return
        if mask & selectors.EVENT_READ:
            try:
                chunk = s.recv(65536)
            except BlockingIOError:
                return
            except OSError:
                self._close(s, data)
                return
            if not chunk:
                self._close(s, data)
                return
            if data["role"] == "sse":
                if not data["head"]:
                    data["head"] = chunk[:12]
                    self.counts["sse_503" if b" 503" in chunk[:13] else "sse_ok"] += 1
                    if data["stalled"]:
                        # Stop reading: the server's buffers for this client fill up.
                        self.sel.unregister(s)
                        self.stalled_socks.append((s, data))
                        return
                self.counts["sse_bytes"] += len(chunk)

    def run(self, seconds: float) -> dict:
        self.stalled_socks = []
        end = time.monotonic() + seconds
        budget_at = time.monotonic()
        budget = 0.0
        while time.monotonic() < end:
            now = time.monotonic()
            budget = min(self.reopen_rate, budget + (now - budget_at) * self.reopen_rate)
            budget_at = now
            for role in ("sse", "idle", "slow"):
                # At first open everything at once (the flood); later reopen within the rate.
                while self.open[role] < self.want[role] and (budget >= 1 or self.counts["opened"] <
                                                             sum(self.want.values())):
                    if not self._connect(role):
                        break
                    budget -= 1
            for s, next_at in list(self.slow_conns.items()):
                if now >= next_at:
                    key = self.sel.get_key(s)
                    if key.data["sent"]:
                        try:
                            s.send(b"X")
                        except OSError:
                            self._close(s, key.data)
                            continue
                    self.slow_conns[s] = now + self.slow_every
            for key, mask in self.sel.select(timeout=0.05):
                self._on_ready(key, mask)
            # Stalled SSE sockets closed by the server are noticed only by a peek.
            if self.stalled_socks and int(now * 2) % 20 == 0:
                self._check_stalled()
        out = dict(self.counts, open=dict(self.open))
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()
        for s, _ in self.stalled_socks:
            s.close()
        return out

    def _check_stalled(self):
        alive = []
        for s, data in self.stalled_socks:
            try:
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                closed = err != 0
                if not closed:
                    # Not reading (so the server's sends stay blocked): ask TCP for the state.
                    closed = _peer_closed(s)
            except OSError:
                closed = True
            if closed:
                s.close()
                self.open["sse"] -= 1
                self.open["sse_stalled"] -= 1
                self.counts["closed_by_server"] += 1
            else:
                alive.append((s, data))
        self.stalled_socks = alive


def _peer_closed(s) -> bool:
    """True once the server has closed a stalled connection (RST, or FIN after all data)."""
    try:
        tcp_info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)
        return tcp_info[0] not in (1,)        # TCP_ESTABLISHED == 1
    except OSError as exc:
        return exc.errno != errno.EAGAIN


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--idle", type=int, default=1100)
    ap.add_argument("--slow", type=int, default=500)
    ap.add_argument("--sse", type=int, default=200)
    ap.add_argument("--stalled", type=float, default=0.5, help="fraction of SSE clients that stop reading")
    ap.add_argument("--slow-every", type=float, default=5.0)
    ap.add_argument("--reopen-rate", type=float, default=200.0, help="reconnections per second, at most")
    ap.add_argument("--seconds", type=float, default=60.0)
    args = ap.parse_args()
    if args.seconds > 4000:
        ap.error("--seconds is bounded to 4000")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = args.idle + args.slow + args.sse + 256
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(need, soft), hard), hard))
    attack = Attack(args.port, args.token, args.idle, args.slow, args.sse, args.stalled,
                    args.slow_every, args.reopen_rate)
    print(json.dumps(attack.run(args.seconds)), flush=True)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
