"""The web layer on the real tracer: `nsgraph serve` as a subprocess, and the SSE stream
of a real NsgraphService (probes, /proc snapshot, collector) over a real socket.

Root: the probes load.  Everything that needs no root (API, SSE logic, security)
is in tests/unit/test_web_*.py, on a real graph built from a synthetic snapshot.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tracer.service import NsgraphService, ServiceConfig
from webapp import create_app
from webapp.config import WebConfig
from web_fixtures import TOKEN, LoopbackServer, parse_sse, wait_for

# Not in the VM leg: the VM image has no Flask.
pytestmark = pytest.mark.host_only

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_serve_prints_the_url_first_and_answers_status_at_once(root, tmp_path):
    """The contract the Vagrant provisioner relies on: URL line on stdout as soon as
    the server listens, /api/status answering (starting/running/error, never a
    refusal) and a clean exit on SIGTERM."""
    token_file = tmp_path / "token"
    proc = subprocess.Popen([sys.executable, "-m", "tracer.cli", "serve", "--port", "0", "--read-only",
                             "--token-file", str(token_file)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().rstrip("\n")
        m = re.fullmatch(r"http://127\.0\.0\.1:(\d+)/\?token=(\S+)", line)
        assert m, (line, proc.stderr.read() if proc.poll() is not None else "")
        port, token = m.groups()
        assert token == token_file.read_text().strip()
        req = urllib.request.Request("http://127.0.0.1:%s/api/status" % port,
                                     headers={"Authorization": "Bearer " + token})
        with urllib.request.urlopen(req, timeout=5) as r:
            assert json.load(r)["state"] in ("starting", "running", "error")
        with urllib.request.urlopen("http://127.0.0.1:%s/api/status?token=%s" % (port, token), timeout=5) as r:
            assert r.status == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        err = proc.stderr.read()
        assert "nsgraph: " in err and "token=REDACTED" in err
        assert token not in err  # the access log must not leak it
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# -- the SSE stream of the real service --------------------------------------------------------

class SSEReader:
    """Incremental SSE over a raw HTTP/1.0 socket: each byte is parsed once, so a
    busy stream (one `event: event` per fork/exec/exit on the machine) is read
    as fast as it comes and the client never falls behind the hub's ring."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = b""
        self.headers_done = False
        self.closed = False

    def messages(self, limit_s: float):
        """Yield (event, id, data) for complete messages until limit_s passes."""
        deadline = time.time() + limit_s
        while time.time() < deadline and not self.closed:
            self.sock.settimeout(max(0.05, min(1.0, deadline - time.time())))
            try:
                chunk = self.sock.recv(262144)
            except socket.timeout:
                continue
            if not chunk:
                self.closed = True
            self.buf += chunk
            if not self.headers_done:
                if b"\r\n\r\n" not in self.buf:
                    continue
                self.buf = self.buf.split(b"\r\n\r\n", 1)[1]
                self.headers_done = True
            end = self.buf.rfind(b"\n\n")
            if end < 0:
                continue
            complete, self.buf = self.buf[:end + 2], self.buf[end + 2:]
            yield from parse_sse(complete.decode(errors="replace"))


def _ns_inode(pid: int, ns_type: str) -> int:
    return int(os.readlink("/proc/%d/ns/%s" % (pid, ns_type)).split("[")[1][:-1])


def test_real_service_streams_a_new_namespace_and_its_event(root, tmp_path):
    """A namespace created after the stream is in sync must arrive in a diff, and the
    unshare that made it as an `event` (collector -> hub, the real wiring).

    The hub's baseline is its first sight of the graph (the "graph is ready"
    resync); anything before it reaches pages through GET /api/graph, not a diff.
    So the namespace is made only after that resync, and any later resync fails
    the test: it would deliver the namespace without a diff carrying it."""
    # Never the machine-wide default history database: other runs share it.
    service = NsgraphService(ServiceConfig(db=str(tmp_path / "history.db")))
    app = create_app(WebConfig(token=TOKEN, sse_heartbeat_s=1), service=service)
    state = app.extensions["nsgraph"]
    state.start()
    server = LoopbackServer(app)
    sleeper = None
    try:
        reader = SSEReader(server.open_stream())
        assert service.start(lambda m: None), service.status.to_json()
        assert state.status()["state"] == "running", state.status()
        baseline = None
        for kind, _, payload in reader.messages(10):
            if kind == "resync" and json.loads(payload)["version"] is not None:
                baseline = json.loads(payload)["version"]
                break
        assert baseline is not None, "the stream never announced the ready graph (resync with a version)"

        sleeper = subprocess.Popen(["unshare", "--uts", "sleep", "30"])
        # Ground truth from /proc, not from the code under test.
        assert wait_for(lambda: _ns_inode(sleeper.pid, "uts") != _ns_inode(os.getpid(), "uts"), 5)
        inode = _ns_inode(sleeper.pid, "uts")
        carried, event, seen = None, None, []
        for kind, ident, payload in reader.messages(15):
            if kind == "resync":
                pytest.fail("resync after the baseline (%s): the namespace would come from "
                            "/api/graph, not from a diff" % payload)
            if kind == "event":
                data = json.loads(payload)
                if data["kind"] == "unshare" and data["pid"] == sleeper.pid:
                    event = data
            if kind == "diff":
                diff = json.loads(payload)
                assert int(ident) == diff["version"] > baseline
                seen.append(diff["version"])
                for c in diff["changes"]:
                    data = c.get("data") or {}
                    # The inode may be a recycled one: the end of its previous namespace can
                    # come first, in a diff of its own.
                    if c["entity"] == "namespace" and data.get("inode") == inode \
                            and data.get("type") == "uts" and data.get("alive"):
                        carried = c
            if carried is not None and sleeper.pid in carried["data"]["pids"] and event is not None:
                break

        assert carried is not None, "no diff carried the uts namespace %d (diffs seen: %s)" % (inode, seen[-20:])
        assert carried["op"] in ("add", "update") and carried["data"]["alive"], carried
        assert carried["id"].startswith("uts:%d:%d:" % (os.stat("/proc/self/ns/uts").st_dev, inode))
        assert sleeper.pid in carried["data"]["pids"], carried
        assert event is not None, "the stream carried no unshare event of pid %d" % sleeper.pid
        assert event["flags"] == ["CLONE_NEWUTS"] and event["ns"]["uts"] == inode, event
        reader.sock.close()
    finally:
        if sleeper is not None:
            sleeper.kill()
            sleeper.wait()
        server.close()
        state.stop()
        service.stop()
