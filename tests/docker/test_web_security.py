"""Hostile HTTP against the dashboard: tokens, Host headers, origins, bodies, caps.

Launching demo containers is root-equivalent, so every refusal is checked, and
test_rejected_requests_launch_nothing asks Docker itself that no container with
this server's launcher label appeared.
"""

from __future__ import annotations

import threading
import time

import psutil
import pytest

from tests.kernel.test_web_api import TOKEN, FakeService, authed, make_client
from webapp import create_app
from webapp.auth import CSP
from webapp.config import WebConfig, _host_name
from webapp.demos import LAUNCHER_LABEL, DemoManager

SAME = {"Sec-Fetch-Site": "same-origin"}

GETS = ["/api/status", "/api/graph", "/api/graph/diff?since=1", "/api/events",
        "/api/namespace/net:4:4026531840:0", "/api/process/1", "/api/container/myapp", "/api/join/3",
        "/api/history/graph?at=1000", "/api/export.json", "/api/export.dot", "/api/demos",
        "/api/demos/runs", "/api/demos/runs/abc", "/stream", "/metrics"]
POSTS = ["/api/demos/ls-ns", "/api/demos/exec-myapp", "/api/demos/cleanup"]


@pytest.mark.parametrize("path", GETS + POSTS)
@pytest.mark.parametrize("credential", ["none", "wrong-query", "wrong-cookie", "wrong-bearer", "empty-bearer"])
def test_every_endpoint_needs_the_token(path, credential):
    app, client = make_client(FakeService())
    headers = dict(SAME)
    if credential == "wrong-query":
        path += ("&" if "?" in path else "?") + "token=nope"
    elif credential == "wrong-cookie":
        client.set_cookie("nsgraph_token_5000", "nope", domain="localhost")
    elif credential == "wrong-bearer":
        headers["Authorization"] = "Bearer nope"
    elif credential == "empty-bearer":
        headers["Authorization"] = "Bearer "
    method = client.post if path.split("?")[0] in POSTS else client.get
    r = method(path, headers=headers)
    assert r.status_code == 401, (path, r.status_code)
    assert r.is_json and "token" in r.get_json()["error"]
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert app.extensions["nsgraph"].demos.stats()["started"] == 0


def test_token_exchange_sets_a_strict_httponly_cookie_and_drops_the_token():
    _, client = make_client(FakeService())
    r = client.get("/?token=" + TOKEN)
    assert r.status_code == 303 and r.headers["Location"] == "/"
    cookie = r.headers["Set-Cookie"]
    assert cookie.startswith("nsgraph_token_5000=")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert client.get("/api/status").status_code == 200
    assert client.get("/").status_code == 200


def test_index_without_or_with_a_wrong_token_explains_itself():
    _, client = make_client(FakeService())
    for path in ("/", "/?token=wrong"):
        r = client.get(path)
        assert r.status_code == 401 and b"nsgraph serve" in r.data and b"<script" not in r.data
        assert "Set-Cookie" not in r.headers


def test_bearer_and_query_tokens_work_for_scripts():
    _, client = make_client(FakeService())
    assert client.get("/api/status", headers={"Authorization": "Bearer " + TOKEN}).status_code == 200
    assert client.get("/api/status?token=" + TOKEN).status_code == 200


def test_a_cookie_for_another_port_is_not_ours():
    _, client = make_client(FakeService())
    client.set_cookie("nsgraph_token_5001", TOKEN, domain="localhost")
    assert client.get("/api/status").status_code == 401


def test_public_metrics_is_an_explicit_opt_in():
    _, client = make_client(FakeService(), public_metrics=True)
    assert client.get("/metrics").status_code == 200
    assert client.get("/api/status").status_code == 401


# -- Host header (DNS rebinding) ------------------------------------------------------------

@pytest.mark.parametrize("host", ["localhost:5000", "127.0.0.1:5000", "[::1]:5000", "localhost",
                                  "127.0.0.1:5001", "LOCALHOST:5000"])
def test_loopback_hosts_are_accepted(host):
    # Bearer: the test client's cookie jar is keyed by the Host it was set for.
    _, client = make_client(FakeService())
    r = client.get("/api/status", headers={"Host": host, "Authorization": "Bearer " + TOKEN})
    assert r.status_code == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:5000", "127.0.0.1.evil.example:5000",
                                  "localhost.evil.example", "10.0.0.5:5000", "", "a b:5000",
                                  "127.0.0.1:50x0", "[::1", "::1:5000", "user@127.0.0.1:5000"])
def test_other_hosts_are_refused(host):
    app, client = authed(FakeService())
    r = client.get("/api/status", headers={"Host": host})
    assert r.status_code == 400, host
    # The refusal comes before authentication and before anything else.
    r = client.post("/api/demos/ls-ns", headers={"Host": host, **SAME})
    assert r.status_code == 400
    assert app.extensions["nsgraph"].demos.stats()["started"] == 0


def test_wildcard_bind_accepts_named_hosts_and_own_addresses_only():
    cfg = WebConfig(host="0.0.0.0", token=TOKEN, allowed_hosts=("vm.example",))
    assert cfg.host_allowed("vm.example:5000")
    assert cfg.host_allowed("0.0.0.0:5000")
    assert cfg.host_allowed("192.168.56.10:5000", machine_addresses=["192.168.56.10"])
    assert not cfg.host_allowed("192.168.56.11:5000", machine_addresses=["192.168.56.10"])
    assert not cfg.host_allowed("evil.example:5000", machine_addresses=["192.168.56.10"])
    assert _host_name("[fe80::1]:80") == "fe80::1"


# -- same origin ------------------------------------------------------------------------------

@pytest.mark.parametrize("headers", [
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},
    {"Origin": "http://evil.example"},
    {"Origin": "http://localhost:5001"},
    {"Origin": "null"},
    {},  # a cookie alone proves nothing about where the request came from
    {"Sec-Fetch-Site": "cross-site", "Origin": "http://localhost:5000"},
])
def test_cross_origin_posts_are_refused(headers):
    app, client = authed(FakeService())
    for path in POSTS:
        r = client.post(path, headers=headers)
        assert r.status_code == 403, (path, headers)
        assert "cross-origin" in r.get_json()["error"]
    assert app.extensions["nsgraph"].demos.stats()["started"] == 0


def test_same_origin_markers_are_accepted():
    _, client = authed(FakeService())
    for headers in ({"Sec-Fetch-Site": "same-origin"}, {"Sec-Fetch-Site": "none"},
                    {"Origin": "http://localhost"}):
        # Unknown id: past the origin check, refused by the allow-list.
        assert client.post("/api/demos/not-a-scenario", headers=headers).status_code == 400
    _, client = make_client(FakeService())
    r = client.post("/api/demos/not-a-scenario", headers={"Authorization": "Bearer " + TOKEN})
    assert r.status_code == 400


# -- bodies -------------------------------------------------------------------------------------

def test_oversized_body_is_413():
    app, client = authed(FakeService())
    r = client.post("/api/demos/ls-ns", headers=SAME, data=b"{" + b" " * 20000 + b"}",
                    content_type="application/json")
    assert r.status_code == 413
    assert app.extensions["nsgraph"].demos.stats()["started"] == 0


@pytest.mark.parametrize("data,ctype,status", [
    (b"{not json", "application/json", 400),
    (b"[1, 2]", "application/json", 400),
    (b"\xff\xfe\x00", "application/json", 400),
    (b"image=alpine&cmd=sh", "application/x-www-form-urlencoded", 415),
    (b"hello", "text/plain", 415),
])
def test_malformed_bodies_are_4xx(data, ctype, status):
    app, client = authed(FakeService())
    r = client.post("/api/demos/ls-ns", headers=SAME, data=data, content_type=ctype)
    assert r.status_code == status
    assert app.extensions["nsgraph"].demos.stats()["started"] == 0


def test_security_headers_on_every_response():
    _, client = authed(FakeService())
    responses = [client.get("/"), client.get("/api/status"), client.get("/api/nothing"),
                 client.get("/api/status", headers={"Host": "evil.example"}),
                 client.post("/api/demos/x", headers={"Origin": "http://evil.example"})]
    r = client.get("/static/vendor/plotly.min.js")
    responses.append(r)
    for response in responses:
        h = response.headers
        assert h["Content-Security-Policy"] == CSP
        assert "script-src 'self';" in CSP and "object-src 'none'" in CSP and "frame-ancestors 'none'" in CSP
        assert "unsafe-eval" not in CSP and "'unsafe-inline'" not in CSP.split("script-src")[1].split(";")[0]
        assert h["X-Content-Type-Options"] == "nosniff"
        assert h["Referrer-Policy"] == "no-referrer"
        assert h["X-Frame-Options"] == "DENY"
    r.close()


# -- caps: concurrency and rate -------------------------------------------------------------------

class GatedDocker:
    """Docker that answers only when the test says so (holds runs 'running')."""

    def __init__(self):
        self.gate = threading.Event()

    def __call__(self):
        self.gate.wait(10)
        raise RuntimeError("Docker unreachable in this test")


def test_concurrency_cap_and_rate_limit():
    gated = GatedDocker()
    cfg = WebConfig(token=TOKEN, max_concurrent_demos=2, demo_rate=3, demo_rate_window_s=60)
    demos = DemoManager(cfg, docker_factory=gated)
    app = create_app(cfg, service=FakeService(), demos=demos)
    client = app.test_client()
    client.get("/?token=" + TOKEN)
    assert client.post("/api/demos/ls-ns", headers=SAME).status_code == 202
    assert client.post("/api/demos/ls-ns", headers=SAME).status_code == 202
    r = client.post("/api/demos/ls-ns", headers=SAME)
    assert r.status_code == 429 and "cap is 2" in r.get_json()["error"] and r.headers["Retry-After"]
    gated.gate.set()
    deadline = time.time() + 10
    while demos.stats()["running"] and time.time() < deadline:
        time.sleep(0.05)
    assert demos.stats()["failed"] == 2
    run = client.get("/api/demos/runs").get_json()["runs"][0]
    assert run["status"] == "failed" and "Docker is not reachable" in run["error"]
    assert client.post("/api/demos/ls-ns", headers=SAME).status_code == 202
    r = client.post("/api/demos/ls-ns", headers=SAME)
    assert r.status_code == 429 and "rate limit" in r.get_json()["error"]
    assert int(r.headers["Retry-After"]) > 0
    text = client.get("/metrics").data.decode()
    assert 'nsgraph_demos_refused_total{reason="busy"} 1' in text
    assert 'nsgraph_demos_refused_total{reason="rate"} 1' in text
    assert "nsgraph_demos_failed_total" in text
    demos.stop()


# -- with Docker: nothing is launched by a rejected request ---------------------------------------

def test_rejected_requests_launch_nothing(docker_client):
    cfg = WebConfig(token=TOKEN)
    app = create_app(cfg, service=FakeService())
    demos = app.extensions["nsgraph"].demos
    ro_app = create_app(WebConfig(token=TOKEN, read_only=True), service=FakeService())
    before_children = {p.pid for p in psutil.Process().children(recursive=True)}
    attempts = 0
    for application in (app, ro_app):
        client = application.test_client()
        for scenario in ("ls-ns", "exec-myapp", "unshare-uts-net-pid", "nsenter-join"):
            path = "/api/demos/" + scenario
            # no token
            assert client.post(path, headers=SAME).status_code == 401
            client.get("/?token=" + TOKEN)
            responses = [
                client.post(path, headers={"Origin": "http://evil.example"}),
                client.post(path, headers={"Sec-Fetch-Site": "cross-site"}),
                client.post(path, headers={"Host": "rebind.example:5000", **SAME}),
                client.post(path, headers=SAME, data=b"x" * 100000, content_type="application/json"),
                client.post(path, headers=SAME, data=b'{"image": "alpine", "cmd": [',
                            content_type="application/json"),
                client.post(path + "-x", headers=SAME),
            ]
            if application is ro_app:
                responses.append(client.post(path, headers=SAME))
            for r in responses:
                assert 400 <= r.status_code < 500, r.status_code
                attempts += 1
            client.delete_cookie("nsgraph_token_5000", domain="localhost")
    assert attempts > 40
    time.sleep(1.0)
    leaked = docker_client.containers.list(all=True, filters={"label": "%s=%s" % (LAUNCHER_LABEL, demos.instance)})
    assert leaked == []
    leaked = docker_client.containers.list(
        all=True, filters={"label": "%s=%s" % (LAUNCHER_LABEL, ro_app.extensions["nsgraph"].demos.instance)})
    assert leaked == []
    new_children = [p for p in psutil.Process().children(recursive=True) if p.pid not in before_children]
    assert [p.name() for p in new_children] == []
    assert demos.stats()["started"] == 0
