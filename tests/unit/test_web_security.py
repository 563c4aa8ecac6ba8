"""Hostile HTTP against the dashboard: tokens, Host headers, origins, bodies, caps.

Launching demo containers is root-equivalent, so every refusal is checked here,
on the real app and model (tests/web_fixtures.py); that a refused request
starts nothing is asked of Docker itself in tests/docker/test_web_refusals_docker.py.
"""

from __future__ import annotations

import threading
import time

import pytest

from webapp import create_app
from webapp.auth import CSP
from webapp.config import WebConfig, host_header_name
from webapp.demos import DemoManager
from web_fixtures import TOKEN, World, authed, make_client, serving

SAME = {"Sec-Fetch-Site": "same-origin"}

GETS = ["/api/status", "/api/graph", "/api/graph/diff?since=1", "/api/events",
        "/api/namespace/net:4:4026531840:0", "/api/process/1", "/api/container/myapp", "/api/join/1",
        "/api/history/graph?at=1000", "/api/export.json", "/api/export.dot", "/api/demos",
        "/api/demos/runs", "/api/demos/runs/abc", "/stream", "/metrics"]
POSTS = ["/api/demos/ls-ns", "/api/demos/exec-myapp", "/api/demos/cleanup"]


@pytest.fixture(scope="module")
def shared_app():
    """One app for the many refusals below (each gets a fresh client: no cookies carried over)."""
    app, _ = make_client(serving(World()))
    return app


@pytest.mark.parametrize("path", GETS + POSTS)
@pytest.mark.parametrize("credential", ["none", "wrong-query", "wrong-cookie", "wrong-bearer", "empty-bearer"])
def test_every_endpoint_needs_the_token(shared_app, path, credential):
    app, client = shared_app, shared_app.test_client()
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


def test_the_same_endpoints_answer_with_the_token(shared_app):
    """The refusals above are about the token, not about paths that do not exist."""
    client = shared_app.test_client()
    expected = {"/api/history/graph?at=1000": 503, "/api/demos/runs/abc": 404}   # no --db; no such run
    for path in GETS:
        if path == "/stream":
            continue                     # an endless response: tests/unit/test_web_sse.py
        r = client.get(path, headers={"Authorization": "Bearer " + TOKEN})
        assert r.status_code == expected.get(path, 200), (path, r.status_code)


def test_token_exchange_sets_a_strict_httponly_cookie_and_drops_the_token():
    _, client = make_client(serving(World()))
    r = client.get("/?token=" + TOKEN)
    assert r.status_code == 303 and r.headers["Location"] == "/"
    cookie = r.headers["Set-Cookie"]
    assert cookie.startswith("nsgraph_token_5000=")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert client.get("/api/status").status_code == 200
    assert client.get("/").status_code == 200


def test_index_without_or_with_a_wrong_token_explains_itself():
    _, client = make_client(serving(World()))
    for path in ("/", "/?token=wrong"):
        r = client.get(path)
        assert r.status_code == 401 and b"nsgraph serve" in r.data and b"<script" not in r.data
        assert "Set-Cookie" not in r.headers


def test_bearer_and_query_tokens_work_for_scripts():
    _, client = make_client(serving(World()))
    assert client.get("/api/status", headers={"Authorization": "Bearer " + TOKEN}).status_code == 200
    assert client.get("/api/status?token=" + TOKEN).status_code == 200


def test_a_cookie_for_another_port_is_not_ours():
    _, client = make_client(serving(World()))
    client.set_cookie("nsgraph_token_5001", TOKEN, domain="localhost")
    assert client.get("/api/status").status_code == 401


def test_public_metrics_is_an_explicit_opt_in():
    _, client = make_client(serving(World()), public_metrics=True)
    assert client.get("/metrics").status_code == 200
    assert client.get("/api/status").status_code == 401


# -- Host header (DNS rebinding) ------------------------------------------------------------

@pytest.mark.parametrize("host", ["localhost:5000", "127.0.0.1:5000", "[::1]:5000", "localhost",
                                  "127.0.0.1:5001", "LOCALHOST:5000"])
def test_loopback_hosts_are_accepted(host):
    # Bearer: the test client's cookie jar is keyed by the Host it was set for.
    _, client = make_client(serving(World()))
    r = client.get("/api/status", headers={"Host": host, "Authorization": "Bearer " + TOKEN})
    assert r.status_code == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:5000", "127.0.0.1.evil.example:5000",
                                  "localhost.evil.example", "10.0.0.5:5000", "", "a b:5000",
                                  "127.0.0.1:50x0", "[::1", "::1:5000", "user@127.0.0.1:5000"])
def test_other_hosts_are_refused(host):
    app, client = authed(serving(World()))
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
    assert host_header_name("[fe80::1]:80") == "fe80::1"


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
    app, client = authed(serving(World()))
    for path in POSTS:
        r = client.post(path, headers=headers)
        assert r.status_code == 403, (path, headers)
        assert "cross-origin" in r.get_json()["error"]
    assert app.extensions["nsgraph"].demos.stats()["started"] == 0


def test_same_origin_markers_are_accepted():
    _, client = authed(serving(World()))
    for headers in ({"Sec-Fetch-Site": "same-origin"}, {"Sec-Fetch-Site": "none"},
                    {"Origin": "http://localhost"}):
        # Unknown id: past the origin check, refused by the allow-list.
        assert client.post("/api/demos/not-a-scenario", headers=headers).status_code == 400
    _, client = make_client(serving(World()))
    r = client.post("/api/demos/not-a-scenario", headers={"Authorization": "Bearer " + TOKEN})
    assert r.status_code == 400


# -- bodies -------------------------------------------------------------------------------------

def test_oversized_body_is_413():
    app, client = authed(serving(World()))
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
    app, client = authed(serving(World()))
    r = client.post("/api/demos/ls-ns", headers=SAME, data=data, content_type=ctype)
    assert r.status_code == status
    assert app.extensions["nsgraph"].demos.stats()["started"] == 0


def test_security_headers_on_every_response():
    _, client = authed(serving(World()))
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
    app = create_app(cfg, service=serving(World()), demos=demos)
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
