"""A refused request launches nothing: asked of Docker itself, and of the process table.

Every way the dashboard refuses a launch (no token, a cross-origin request, a
foreign Host header, an oversized or malformed body, an unknown scenario,
--read-only) is tried against the real app and model (tests/web_fixtures.py);
then Docker lists no container with this server's launcher label, and no child
process appeared.  The refusals themselves are checked in tests/unit/test_web_security.py.
"""

from __future__ import annotations

import time

import psutil

from webapp import create_app
from webapp.config import WebConfig
from webapp.demos import LAUNCHER_LABEL
from web_fixtures import TOKEN, World, serving

SAME = {"Sec-Fetch-Site": "same-origin"}


def test_rejected_requests_launch_nothing(docker_client):
    cfg = WebConfig(token=TOKEN)
    app = create_app(cfg, service=serving(World()))
    demos = app.extensions["nsgraph"].demos
    ro_app = create_app(WebConfig(token=TOKEN, read_only=True), service=serving(World()))
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
