"""Server-Sent Events: framing, reconnects with Last-Event-ID, slow and vanished clients.

Disconnects are tested over a real socket against werkzeug's threaded server
(the one `nsgraph serve` uses): the server only learns that a tab closed when
its next write fails, and must then free the stream (open count back to 0).
The last tests run the real tracer service when tracer/service.py exists.
"""

from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import threading
import time

import pytest
from werkzeug.serving import make_server

from test_web_api import TOKEN, FakeService, authed
from webapp import create_app
from webapp.config import WebConfig

# Not in the VM leg: the VM image has no Flask.
pytestmark = pytest.mark.host_only


def parse_sse(text: str) -> list:
    """[(event, id, data)] from SSE text; comments come back as ("comment", None, text)."""
    out = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        event, ident, data = "message", None, []
        for line in block.split("\n"):
            if line.startswith(":"):
                out.append(("comment", None, line[1:].strip()))
            elif line.startswith("event: "):
                event = line[7:]
            elif line.startswith("id: "):
                ident = line[4:]
            elif line.startswith("data: "):
                data.append(line[6:])
            elif line.startswith("retry: "):
                event = "retry"
        if data or event != "message":
            out.append((event, ident, "\n".join(data)))
    return out


def _next(it) -> str:
    chunk = next(it)
    return chunk.decode() if isinstance(chunk, bytes) else chunk


def apply_diff(graph: dict, diff: dict) -> dict:
    """The browser's upsert semantics (webapp/static/js/model.js), for namespaces."""
    spaces = {n["id"]: n for n in graph["namespaces"]}
    for change in diff["changes"]:
        if change["entity"] != "namespace":
            continue
        if change["op"] == "remove":
            spaces.pop(change["id"], None)
        else:
            spaces[change["id"]] = change["data"]
    graph = dict(graph, namespaces=list(spaces.values()), version=diff["version"])
    return graph


# -- framing and content, through the test client -------------------------------------------

def test_stream_sends_status_then_diffs_events_and_demo_runs():
    service = FakeService()
    app, client = authed(service)
    hub = app.extensions["nsgraph"].hub
    hub.pump()  # attach; first sight of the graph (a resync for pages that got 503)
    r = client.get("/stream")
    assert r.status_code == 200 and r.mimetype == "text/event-stream"
    assert r.headers["Cache-Control"] == "no-store"
    it = iter(r.response)
    first = "".join(_next(it) for _ in range(3))
    kinds = [k for k, _, _ in parse_sse(first)]
    assert kinds[:2] == ["retry", "status"] and kinds[2] == "comment"
    ns_id = service.graph.add_namespace("uts", 4026532999)
    service.collector.emit()
    hub.pump()
    hub.publish("demo", {"id": "r1", "status": "running"})
    msgs = parse_sse(_next(it))
    kinds = [k for k, _, _ in msgs]
    assert "diff" in kinds and "event" in kinds and kinds[-1] == "demo"
    diff_msg = next(m for m in msgs if m[0] == "diff")
    assert diff_msg[1] == str(service.graph.version)
    diff = json.loads(diff_msg[2])
    assert [c["id"] for c in diff["changes"]] == [ns_id]
    event = json.loads(next(m for m in msgs if m[0] == "event")[2])
    assert event["kind"] == "unshare" and event["seq"] == 1
    r.close()
    assert hub.open_streams == 0


def test_heartbeat_when_idle():
    _, client = authed(FakeService(), sse_heartbeat_s=0.05)
    r = client.get("/stream")
    it = iter(r.response)
    for _ in range(3):
        _next(it)
    assert _next(it).startswith(": heartbeat")
    r.close()


def test_closing_the_response_frees_the_stream():
    app, client = authed(FakeService())
    hub = app.extensions["nsgraph"].hub
    responses = [client.get("/stream") for _ in range(3)]
    for r in responses:
        next(iter(r.response))
    assert hub.open_streams == 3
    assert "nsgraph_sse_clients 3" in client.get("/metrics").data.decode()
    for r in responses:
        r.close()
    assert hub.open_streams == 0
    assert "nsgraph_sse_clients 0" in client.get("/metrics").data.decode()


# -- reconnects ----------------------------------------------------------------------------------

def test_reconnect_with_last_event_id_gets_a_consistent_state():
    service = FakeService()
    app, client = authed(service)
    hub = app.extensions["nsgraph"].hub
    hub.pump()
    browser = client.get("/api/graph").get_json()
    r = client.get("/stream")
    it = iter(r.response)
    for _ in range(3):
        _next(it)
    service.graph.add_namespace("uts", 4026533001)
    hub.pump()
    msgs = [m for m in parse_sse(_next(it)) if m[0] == "diff"]
    last_id = msgs[-1][1]
    for k, _, data in msgs:
        browser = apply_diff(browser, json.loads(data))
    r.close()  # the tab loses its connection ...
    service.graph.add_namespace("net", 4026533002)   # ... while the graph moves on
    service.graph.add_namespace("ipc", 4026533003)
    r = client.get("/stream", headers={"Last-Event-ID": last_id})
    it = iter(r.response)
    msgs = parse_sse("".join(_next(it) for _ in range(3)))
    diffs = [m for m in msgs if m[0] == "diff"]
    assert len(diffs) == 1 and diffs[0][1] == str(service.graph.version)
    browser = apply_diff(browser, json.loads(diffs[0][2]))
    truth = service.graph.to_json()
    assert sorted(n["id"] for n in browser["namespaces"]) == sorted(n["id"] for n in truth["namespaces"])
    assert browser["version"] == truth["version"]
    r.close()


@pytest.mark.parametrize("last_id", ["0", "garbage", "-5", "999999"])
def test_reconnect_too_old_or_unreadable_gets_resync(last_id):
    service = FakeService()
    for i in range(80):  # longer than FakeGraph's 50-version history
        service.graph.add_namespace("uts", 4026534000 + i)
    _, client = authed(service)
    r = client.get("/stream", headers={"Last-Event-ID": last_id})
    it = iter(r.response)
    msgs = parse_sse("".join(_next(it) for _ in range(3)))
    assert msgs[-1][0] == "resync"
    assert json.loads(msgs[-1][2])["version"] == service.graph.version
    r.close()


def test_reconnect_at_current_version_gets_nothing_to_apply():
    service = FakeService()
    _, client = authed(service)
    r = client.get("/stream?since=%d" % service.graph.version)
    it = iter(r.response)
    msgs = parse_sse("".join(_next(it) for _ in range(3)))
    assert msgs[-1][0] == "comment" and "up to date" in msgs[-1][2]
    r.close()


def test_a_page_that_connected_while_starting_converges_after_the_ready_resync():
    """Changes made before the hub first sees the graph are in no diff: the
    "graph is ready" resync sends the page to /api/graph, and diffs continue from there."""
    service = FakeService(state="starting")
    graph, service.graph = service.graph, None
    app, client = authed(service)
    hub = app.extensions["nsgraph"].hub
    hub.pump()
    assert client.get("/api/graph").status_code == 503
    r = client.get("/stream")
    it = iter(r.response)
    msgs = parse_sse("".join(_next(it) for _ in range(3)))
    assert msgs[-1][0] == "resync" and json.loads(msgs[-1][2])["version"] is None
    service.graph, service.status = graph, {"state": "running", "progress": "running"}
    early = graph.add_namespace("uts", 4026536001)      # before the hub's first sight
    hub.pump()
    msgs = parse_sse(_next(it))
    assert [m[0] for m in msgs if m[0] in ("diff", "resync")] == ["resync"]
    assert json.loads([m for m in msgs if m[0] == "resync"][0][2])["version"] == graph.version
    browser = client.get("/api/graph").get_json()       # what the page does on resync
    late = graph.add_namespace("net", 4026536002)
    hub.pump()
    diffs = [m for m in parse_sse(_next(it)) if m[0] == "diff"]
    assert len(diffs) == 1 and [c["id"] for c in json.loads(diffs[0][2])["changes"]] == [late]
    browser = apply_diff(browser, json.loads(diffs[0][2]))
    ids = sorted(n["id"] for n in browser["namespaces"])
    assert early in ids and late in ids
    assert ids == sorted(n["id"] for n in graph.to_json()["namespaces"])
    r.close()


# -- slow clients ----------------------------------------------------------------------------------

def test_a_stalled_client_is_resynced_and_memory_stays_bounded():
    service = FakeService()
    app, client = authed(service, sse_ring_size=16)
    hub = app.extensions["nsgraph"].hub
    hub.pump()
    r = client.get("/stream")
    it = iter(r.response)
    for _ in range(3):
        _next(it)
    for i in range(200):  # the client reads nothing meanwhile
        hub.publish("demo", {"i": i})
    assert len(hub._ring) == 16
    msgs = parse_sse(_next(it))
    assert [m[0] for m in msgs] == ["resync"]
    assert "fell behind" in json.loads(msgs[0][2])["reason"]
    hub.publish("demo", {"i": "after"})
    msgs = parse_sse(_next(it))
    assert [json.loads(m[2])["i"] for m in msgs] == ["after"]
    assert hub.resyncs_sent == 1
    r.close()


# -- a real server, real sockets ---------------------------------------------------------------------

class Server:
    def __init__(self, app):
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def open_stream(self, headers=()) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        # HTTP/1.0: no chunked framing to strip from the raw bytes.
        lines = ["GET /stream HTTP/1.0", "Host: 127.0.0.1:%d" % self.port,
                 "Authorization: Bearer " + TOKEN, "Accept: text/event-stream"] + list(headers)
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        return sock

    def close(self):
        self.server.shutdown()


def read_until(sock, marker: bytes, limit_s: float = 5) -> bytes:
    data = b""
    deadline = time.time() + limit_s
    while marker not in data and time.time() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def wait_for(predicate, limit_s: float = 5) -> bool:
    deadline = time.time() + limit_s
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_closed_tabs_are_cleaned_up_over_real_sockets():
    service = FakeService()
    app = create_app(WebConfig(token=TOKEN, sse_heartbeat_s=0.2), service=service)
    state = app.extensions["nsgraph"]
    state.start()
    server = Server(app)
    try:
        socks = [server.open_stream() for _ in range(5)]
        for s in socks:
            head = read_until(s, b"event: status")
            assert b"200 OK" in head and b"text/event-stream" in head
        assert wait_for(lambda: state.hub.open_streams == 5)
        for s in socks[:3]:
            s.close()
        # Noticed at the next write (a heartbeat within 0.2 s), freed in `finally`.
        assert wait_for(lambda: state.hub.open_streams == 2), state.hub.open_streams
        service.graph.add_namespace("uts", 4026535000)
        state.hub.on_version()
        for s in socks[3:]:
            assert b"event: diff" in read_until(s, b"event: diff")
            s.close()
        assert wait_for(lambda: state.hub.open_streams == 0)
    finally:
        server.close()
        state.stop()


# -- the real tracer service -----------------------------------------------------------------------

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


def _real_service_module():
    try:
        from tracer import service
    except ImportError as exc:
        return None, exc
    return service, None


def _make_real_service(tmp_path):
    module, exc = _real_service_module()
    assert module is not None, "tracer/service.py is missing (%s)" % exc
    # Never the machine-wide default history database: other runs share it.
    return module.NsgraphService(module.ServiceConfig(db=str(tmp_path / "history.db")))


def _ns_inode(pid: int, ns_type: str) -> int:
    return int(os.readlink("/proc/%d/ns/%s" % (pid, ns_type)).split("[")[1][:-1])


def test_real_service_streams_a_new_namespace(root, tmp_path):
    """A namespace created after the stream is in sync must arrive in a diff.

    The hub's baseline is its first sight of the graph (the "graph is ready"
    resync); anything before it reaches pages through GET /api/graph, not a diff.
    So the namespace is made only after that resync, and any later resync fails
    the test: it would deliver the namespace without a diff carrying it."""
    module, _ = _real_service_module()
    if module is None:
        pytest.fail("tracer/service.py does not exist yet: the end-to-end SSE check needs it")
    service = _make_real_service(tmp_path)
    app = create_app(WebConfig(token=TOKEN, sse_heartbeat_s=1), service=service)
    state = app.extensions["nsgraph"]
    state.start()
    server = Server(app)
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
        carried, seen = None, []
        for kind, ident, payload in reader.messages(15):
            if kind == "resync":
                pytest.fail("resync after the baseline (%s): the namespace would come from "
                            "/api/graph, not from a diff" % payload)
            if kind != "diff":
                continue
            diff = json.loads(payload)
            assert int(ident) == diff["version"] > baseline
            seen.append(diff["version"])
            for c in diff["changes"]:
                data = c.get("data") or {}
                if c["entity"] == "namespace" and data.get("inode") == inode and data.get("type") == "uts":
                    carried = c
            if carried is not None:
                break
        assert carried is not None, "no diff carried the uts namespace %d (diffs seen: %s)" % (inode, seen[-20:])
        assert carried["op"] in ("add", "update") and carried["data"]["alive"], carried
        assert carried["id"].startswith("uts:%d:%d:" % (os.stat("/proc/self/ns/uts").st_dev, inode))
        assert sleeper.pid in carried["data"]["pids"], carried
        reader.sock.close()
    finally:
        if sleeper is not None:
            sleeper.kill()
            sleeper.wait()
        server.close()
        state.stop()
        service.stop()
