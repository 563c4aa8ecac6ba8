"""nsgraph serve's HTTP server (webapp/server.py) under the abuse of issue 11, on real sockets.

The app is the real Flask app around a real NsgraphService (no probes), served by the
same NsgraphHTTPServer `nsgraph serve` runs, on 127.0.0.1.  Limits are scaled down
(dozens of connections, one-second deadlines) so that each test takes seconds; the
full-size numbers are in bench/bench_serve.py.  On Werkzeug's development server
(the old `serve`) the first three tests time out and the others fail.
"""

from __future__ import annotations

import http.client
import io
import json
import socket
import time

import pytest

from web_fixtures import TOKEN, LoopbackServer, World, read_until, serving, wait_for
from webapp import create_app
from webapp.accesslog import AccessLog, redact_target
from webapp.config import WebConfig
from webapp.server import ServerLimits

SMALL = ServerLimits(max_connections=40, request_timeout_s=1.0, idle_timeout_s=2.0, stall_timeout_s=2.0,
                     request_threads=4, max_streams=3, outbuf_high_watermark=64 * 1024)


@pytest.fixture
def served():
    """(server, state, log lines): the dashboard on its real server, with the access log on."""
    lines = []
    app = create_app(WebConfig(token=TOKEN, sse_heartbeat_s=0.2, sse_max_streams=SMALL.max_streams),
                     service=serving(World()))
    app.wsgi_app = AccessLog(app.wsgi_app, secrets=(TOKEN,), write=lines.append)
    state = app.extensions["nsgraph"]
    state.start()
    server = LoopbackServer(app, SMALL)
    state.set_server_stats(server.server.stats)
    yield server, state, lines
    server.close()
    state.stop()


def _get(port, path, headers=None, timeout=5.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request("GET", path, headers=dict({"Authorization": "Bearer " + TOKEN}, **(headers or {})))
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response, body


def _raw(port, data: bytes, limit_s=3.0) -> bytes:
    sock = socket.create_connection(("127.0.0.1", port), timeout=limit_s)
    sock.sendall(data)
    out = b""
    deadline = time.time() + limit_s
    try:
        while time.time() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            out += chunk
    except socket.timeout:
        pass
    sock.close()
    return out


def _closed_by_peer(sock, limit_s: float) -> bool:
    sock.settimeout(limit_s)
    try:
        while True:
            if not sock.recv(4096):
                return True
    except (socket.timeout, TimeoutError):
        return False
    except OSError:
        return True


def test_idle_connections_beyond_the_cap_do_not_lock_out_the_user(served):
    server, _state, _lines = served
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(SMALL.max_connections + 30)]
    try:
        time.sleep(0.3)
        for _ in range(5):
            t = time.monotonic()
            response, body = _get(server.port, "/api/status")
            assert response.status == 200 and json.loads(body)["state"] == "running"
            assert time.monotonic() - t < 2.0
        stats = server.server.stats()
        assert stats["connections"] <= SMALL.max_connections + 1
        assert stats["closed"].get("shed", 0) >= 30
        # The flood shows in /metrics too.
        response, body = _get(server.port, "/metrics")
        assert 'nsgraph_http_closed_total{reason="shed"}' in body.decode()
    finally:
        for s in idle:
            s.close()


def test_a_slow_header_is_cut_at_the_request_deadline(served):
    server, _state, _lines = served
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    t = time.monotonic()
    closed = False
    while time.monotonic() - t < 6:
        try:
            sock.sendall(b"X")                # a byte every 0.2 s resets an inactivity timer
        except OSError:
            closed = True
            break
        if _closed_by_peer(sock, 0.2):
            closed = True
            break
    elapsed = time.monotonic() - t
    sock.close()
    assert closed and elapsed < SMALL.request_timeout_s + 2.5, elapsed
    assert server.server.stats()["closed"].get("request_timeout", 0) >= 1


def test_idle_keep_alive_connections_are_closed(served):
    server, _state, _lines = served
    sock = socket.create_connection(("127.0.0.1", server.port))
    assert _closed_by_peer(sock, SMALL.idle_timeout_s + 2.5)
    sock.close()


def test_streams_over_the_cap_get_503_with_retry_after(served):
    server, state, _lines = served
    streams = [server.open_stream() for _ in range(SMALL.max_streams)]
    try:
        for s in streams:
            assert b"200 OK" in read_until(s, b"event: status")
        response, body = _get(server.port, "/stream")
        assert response.status == 503 and response.getheader("Retry-After") == "10"
        assert "--max-streams" in json.loads(body)["error"]
        assert state.hub.streams_refused == 1
        response, _ = _get(server.port, "/api/status")       # the API still has its threads
        assert response.status == 200
    finally:
        for s in streams:
            s.close()
    assert wait_for(lambda: state.hub.open_streams == 0)
    response, _ = _get(server.port, "/api/status")
    assert response.status == 200


def test_a_stream_that_stops_reading_is_closed_and_its_slot_freed(served):
    server, state, _lines = served
    sock = server.open_stream(rcvbuf=4096)
    assert b"200 OK" in read_until(sock, b"event: status")
    # Fill the kernel's socket buffers (loopback send buffers grow to 4 MB) and then the
    # server's own, while the client reads nothing: 12 MB of messages, within the ring.
    for i in range(1500):
        state.hub.publish("demo", {"i": i, "pad": "x" * 8000})
    assert wait_for(lambda: server.server.stats()["connections_backlogged"] == 1)
    assert wait_for(lambda: state.hub.open_streams == 0, SMALL.stall_timeout_s + 6), state.hub.open_streams
    assert server.server.stats()["closed"].get("stalled", 0) == 1
    sock.close()


def test_a_chunked_body_over_the_limit_is_refused_whole(served):
    server, _state, _lines = served
    chunk = b"x" * 8192
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(4)) + b"0\r\n\r\n"
    reply = _raw(server.port, b"POST /api/demos/cleanup HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
                 + TOKEN.encode() + b"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                 + body)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]


def test_a_deeply_nested_json_body_is_a_400_not_a_500(served):
    server, _state, _lines = served
    body = b"[" * 8000 + b"]" * 8000
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.request("POST", "/api/demos/cleanup", body=body, headers={
        "Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"})
    response = conn.getresponse()
    data = json.loads(response.read())
    assert response.status == 400 and "nested too deeply" in data["error"]


def test_metrics_content_type_has_one_charset(served):
    server, _state, _lines = served
    response, _ = _get(server.port, "/metrics")
    assert response.getheader("Content-Type") == "text/plain; version=0.0.4; charset=utf-8"


def test_the_token_never_reaches_the_access_log(served):
    server, _state, lines = served
    for path in ("/api/status?token=" + TOKEN, "/api/status?%74oken=" + TOKEN, "/api/status?TOKEN=" + TOKEN,
                 "/api/status?a=1;token=" + TOKEN, "/x/" + TOKEN, "/?to%6Ben=" + TOKEN):
        _get(server.port, path, headers={"Authorization": ""})
    # Malformed request lines and unknown versions: answered by the server itself.
    for line in (b"GET /?token=%s HTTP/9.9\r\n\r\n", b"GET /?token=%s\r\n\r\n", b"BAD LINE token=%s\r\n\r\n",
                 b"GET /?token=%s HTTP/1.1\r\nHost: 127.0.0.1\r\nBad header\r\n\r\n"):
        reply = _raw(server.port, line % TOKEN.encode(), limit_s=1.0)
        assert reply.startswith(b"HTTP/1.")
    assert wait_for(lambda: len(lines) >= 6)
    text = "\n".join(lines)
    assert TOKEN not in text and "REDACTED" in text
    assert "%74oken=REDACTED" in text and "[target withheld" in text


def test_redaction_is_on_the_decoded_name():
    assert redact_target("/a?%74oken=s3cret&b=1") == "/a?%74oken=REDACTED&b=1"
    assert redact_target("/a?b=1&Token=s3cret") == "/a?b=1&Token=REDACTED"
    assert redact_target("/a?t%6fken+=s3cret") == "/a?t%6fken+=REDACTED"
    assert "s3cret" not in redact_target("/s%33cret", secrets=("s3cret",))


def test_access_log_escapes_control_characters():
    lines = []

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]
    logged = AccessLog(app, write=lines.append)
    body = logged({"REQUEST_METHOD": "GET", "REQUEST_URI": "/x\n127.0.0.1 - fake", "SERVER_PROTOCOL": "HTTP/1.1",
                   "REMOTE_ADDR": "127.0.0.1", "wsgi.input": io.BytesIO()}, lambda *a: None)
    list(body)
    body.close()
    assert len(lines) == 1 and "\n" not in lines[0] and "\\n127.0.0.1 - fake" in lines[0]
