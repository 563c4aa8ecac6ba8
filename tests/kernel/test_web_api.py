"""The JSON API through Flask's test client.

These are unit tests of the web layer: the graph comes from FakeGraph, a small
stand-in with the NamespaceGraph interface (to_json, version, diff_since) so that
every endpoint and error path can be reached with known content.  The
end-to-end checks against the real tracer service are in test_web_sse.py
(test_real_service_*).
"""

from __future__ import annotations

import copy
import json
import time

import pytest

from tracer.events.event import Event
from webapp import create_app
from webapp.config import WebConfig

# Not in the VM leg: the VM image has no Flask.
pytestmark = pytest.mark.host_only

TOKEN = "test-token-0123456789abcdef"
HOST_NS = {"net": "net:4:4026531840:0", "pid": "pid:4:4026531836:0", "uts": "uts:4:4026531838:0"}


def base_graph() -> dict:
    return {
        "version": 1, "time": time.time(), "node": "host", "host_ns": dict(HOST_NS),
        "namespaces": [
            {"id": HOST_NS["net"], "type": "net", "inode": 4026531840, "dev": 4, "alive": True,
             "container": None, "owner_id": "user:4:4026531837:0", "parent_id": None, "pids": [1]},
            {"id": HOST_NS["pid"], "type": "pid", "inode": 4026531836, "dev": 4, "alive": True,
             "container": None, "owner_id": None, "parent_id": None, "pids": [1]},
            {"id": HOST_NS["uts"], "type": "uts", "inode": 4026531838, "dev": 4, "alive": True,
             "container": None, "owner_id": None, "parent_id": None, "pids": [1]},
            {"id": "net:4:4026532177:0", "type": "net", "inode": 4026532177, "dev": 4, "alive": True,
             "container": "myapp", "owner_id": None, "parent_id": None, "pids": [7052],
             "creator": {"pid": 7050, "comm": "runc:[1:CHILD]", "syscall": "clone3"}},
        ],
        "processes": [
            {"pid": 1, "ppid": 0, "comm": "init", "cmdline": "init", "uid": 0, "ns": dict(HOST_NS),
             "container": None},
            {"pid": 7052, "ppid": 7040, "comm": "sleep", "cmdline": "sleep 600", "uid": 0,
             "ns": {"net": "net:4:4026532177:0", "pid": HOST_NS["pid"], "uts": HOST_NS["uts"]},
             "container": "myapp"},
        ],
        "containers": [{"id": "a" * 64, "name": "myapp", "image": "nsgraph-demo:latest",
                        "runtime": "docker", "pid": 7052, "labels": {}, "state": "running"}],
        "joins": [{"id": 3, "pid": 8100, "comm": "runc:[1:CHILD]", "tool": "runc", "container": "myapp",
                   "types": ["net"], "target": {"net": "net:4:4026532177:0"}, "command": "ps aux",
                   "start": time.time(), "end": time.time(),
                   "summary": "joined container myapp's net namespace and ran `ps aux`"}],
        "counters": {"events": 10, "lost": 0, "repaired": 1, "rejected": 2,
                     "namespaces_alive": 4, "namespaces_by_type": {"net": 2, "pid": 1, "uts": 1}},
    }


class FakeGraph:
    """The NamespaceGraph interface over a dict; keeps `history` versions of diffs."""

    def __init__(self, history: int = 50):
        self._data = base_graph()
        self.version = 1
        self._changes = []       # (version, change)
        self.history = history

    def to_json(self) -> dict:
        data = copy.deepcopy(self._data)
        data["version"] = self.version
        return data

    def diff_since(self, version: int):
        oldest = self.version - self.history
        if version < oldest or version > self.version:
            return None
        changes = {}
        for v, change in self._changes:
            if v > version:
                changes[(change["entity"], change["id"])] = change
        return {"version": self.version, "since": version, "changes": list(changes.values())}

    def add_namespace(self, ns_type: str, inode: int, container=None) -> str:
        ns_id = "%s:4:%d:0" % (ns_type, inode)
        ns = {"id": ns_id, "type": ns_type, "inode": inode, "dev": 4, "alive": True,
              "container": container, "owner_id": None, "parent_id": None, "pids": []}
        self._data["namespaces"].append(ns)
        self.version += 1
        self._changes.append((self.version, {"op": "add", "entity": "namespace", "id": ns_id, "data": ns}))
        by_type = self._data["counters"]["namespaces_by_type"]
        by_type[ns_type] = by_type.get(ns_type, 0) + 1
        return ns_id


class FakeCollector:
    def __init__(self):
        self.subscribers = []
        self.seq = 0

    def subscribe(self, callback):
        self.subscribers.append(callback)

    def emit(self, **fields) -> Event:
        self.seq += 1
        event = Event(kind=fields.pop("kind", "unshare"), seq=self.seq, ts=time.time(), pid=100,
                      tid=100, ppid=1, uid=0, vpid=100, comm="unshare", syscall="unshare",
                      raw_flags=0x40000000, **fields)
        for callback in self.subscribers:
            callback(event)
        return event

    def stats(self):
        return {"events": self.seq, "lost": 0, "rejected": 0}


class FakeService:
    def __init__(self, state="running"):
        self.graph = FakeGraph()
        self.collector = FakeCollector()
        self.store = None
        self.status = {"state": state, "progress": "ok"}
        self.version_subscribers = []

    def subscribe(self, callback):
        self.version_subscribers.append(callback)


def make_client(service=None, **config):
    cfg = WebConfig(token=TOKEN, port=5000, **config)
    app = create_app(cfg, service=service)
    client = app.test_client()
    return app, client


def authed(service=None, **config):
    app, client = make_client(service, **config)
    r = client.get("/?token=" + TOKEN)
    assert r.status_code == 303
    return app, client


@pytest.fixture
def service():
    return FakeService()


@pytest.fixture
def client(service):
    return authed(service)[1]


# -- status and graph -----------------------------------------------------------------

def test_status_reports_service_state_and_graph_counters(client, service):
    body = client.get("/api/status").get_json()
    assert body["state"] == "running"
    assert body["version"] == service.graph.version
    assert body["counters"]["repaired"] == 1
    assert body["counters"]["namespaces_by_type"] == {"net": 2, "pid": 1, "uts": 1}


def test_status_while_starting_is_not_an_error():
    _, client = authed(None)
    r = client.get("/api/status")
    assert r.status_code == 200 and r.get_json()["state"] == "starting"
    r = client.get("/api/graph")
    assert r.status_code == 503 and r.headers["Retry-After"] == "1"
    assert "starting" in r.get_json()["error"]


def test_graph_is_the_graph_json(client, service):
    body = client.get("/api/graph").get_json()
    assert body == service.graph.to_json()


def test_graph_diff_and_409_when_too_old(client, service):
    old = service.graph.version
    ns_id = service.graph.add_namespace("uts", 4026532300)
    body = client.get("/api/graph/diff?since=%d" % old).get_json()
    assert body["version"] == service.graph.version
    assert [c["id"] for c in body["changes"]] == [ns_id]
    for _ in range(60):
        service.graph.add_namespace("ipc", 4026532400)
    r = client.get("/api/graph/diff?since=%d" % old)
    assert r.status_code == 409 and r.get_json()["version"] == service.graph.version
    assert client.get("/api/graph/diff?since=%d" % (service.graph.version + 5)).status_code == 409


@pytest.mark.parametrize("query", ["", "?since=", "?since=abc", "?since=-1", "?since=1e3"])
def test_graph_diff_rejects_bad_since(client, query):
    r = client.get("/api/graph/diff" + query)
    assert r.status_code == 400 and "since" in r.get_json()["error"]


def test_events_since_seq_and_limit(client, service):
    app = client.application
    hub = app.extensions["nsgraph"].hub
    hub.pump()  # subscribes to the collector
    for _ in range(5):
        service.collector.emit()
    hub.pump()
    body = client.get("/api/events?since_seq=2&limit=2").get_json()
    assert [e["seq"] for e in body["events"]] == [4, 5]
    assert body["events"][0]["kind"] == "unshare" and body["events"][0]["flags"] == ["CLONE_NEWNET"]
    assert client.get("/api/events?limit=x").status_code == 400
    assert client.get("/api/events?since_seq=-4").status_code == 400
    assert len(client.get("/api/events?limit=99999").get_json()["events"]) == 5


# -- details --------------------------------------------------------------------------------

def test_namespace_details(client):
    body = client.get("/api/namespace/net:4:4026532177:0").get_json()
    assert body["namespace"]["container"] == "myapp"
    assert [p["pid"] for p in body["members"]] == [7052]
    assert [j["id"] for j in body["joins"]] == [3]
    assert body["is_host"] is False
    assert client.get("/api/namespace/" + HOST_NS["net"]).get_json()["is_host"] is True
    assert client.get("/api/namespace/net:4:1:0").status_code == 404


def test_process_details_against_host(client):
    body = client.get("/api/process/7052").get_json()
    assert body["same_as_host"] == {"net": False, "pid": True, "uts": True}
    assert body["namespaces"]["net"]["inode"] == 4026532177
    assert client.get("/api/process/99999").status_code == 404
    assert client.get("/api/process/abc").status_code == 404


def test_container_details_by_name_and_id(client):
    body = client.get("/api/container/myapp").get_json()
    assert body["container"]["name"] == "myapp"
    assert [p["pid"] for p in body["processes"]] == [7052]
    assert "net:4:4026532177:0" in [n["id"] for n in body["namespaces"]]
    assert client.get("/api/container/" + "a" * 12).get_json()["container"]["name"] == "myapp"
    assert client.get("/api/container/nosuch").status_code == 404


def test_join_details(client):
    body = client.get("/api/join/3").get_json()
    assert body["join"]["tool"] == "runc"
    assert body["namespaces"]["net"]["id"] == "net:4:4026532177:0"
    assert client.get("/api/join/4").status_code == 404


def test_history_needs_a_store_and_a_time(client, service):
    assert client.get("/api/history/graph").status_code == 400
    assert client.get("/api/history/graph?at=nan").status_code == 400
    assert client.get("/api/history/graph?at=1e20").status_code == 400
    r = client.get("/api/history/graph?at=%f" % time.time())
    assert r.status_code == 503 and "--db" in r.get_json()["error"]

    class Store:
        def graph_at(self, t):
            return {"version": 1, "time": t} if t > 100 else None
    service.store = Store()
    assert client.get("/api/history/graph?at=1000").get_json() == {"version": 1, "time": 1000.0}
    assert client.get("/api/history/graph?at=5").status_code == 404


def test_exports(client, service):
    r = client.get("/api/export.json")
    assert r.status_code == 200 and "attachment" in r.headers["Content-Disposition"]
    assert json.loads(r.data) == service.graph.to_json()
    r = client.get("/api/export.dot")
    text = r.data.decode()
    assert r.status_code == 200 and text.startswith("digraph nsgraph {")
    assert '"pid:7052" -> "net:4:4026532177:0";' in text


# -- demos (validation only here; real runs are in test_demos_docker.py) -------------------

def test_demos_list_has_ids_commands_and_no_request_inputs(client):
    body = client.get("/api/demos").get_json()
    ids = [s["id"] for s in body["scenarios"]]
    assert ids == ["ls-ns", "hostname-ip-ps", "exec-myapp", "shared-net", "host-pid",
                   "unshare-uts-net-pid", "nsenter-join"]
    for s in body["scenarios"]:
        assert s["command"] and s["title"] and s["description"]
        assert "{" not in s["command"] + s["description"], s  # placeholders filled in
    assert body["limits"]["concurrent"] >= 1


def test_unknown_scenario_is_400_and_nothing_recorded(client):
    r = client.post("/api/demos/rm-rf", headers={"Sec-Fetch-Site": "same-origin"})
    assert r.status_code == 400 and "ls-ns" in r.get_json()["error"]
    r = client.post("/api/demos/..%2F..%2Fetc", headers={"Sec-Fetch-Site": "same-origin"})
    assert r.status_code in (400, 404)
    assert client.application.extensions["nsgraph"].demos.stats()["started"] == 0


def test_demo_run_unknown_is_404(client):
    assert client.get("/api/demos/runs/nope").status_code == 404
    assert client.get("/api/demos/runs").get_json() == {"runs": []}


def test_read_only_refuses_launch_and_cleanup():
    _, client = authed(FakeService(), read_only=True)
    body = client.get("/api/demos").get_json()
    assert body["read_only"] is True and not any(s["available"] for s in body["scenarios"])
    for path in ("/api/demos/ls-ns", "/api/demos/cleanup"):
        r = client.post(path, headers={"Sec-Fetch-Site": "same-origin"})
        assert r.status_code == 403 and "read-only" in r.get_json()["error"]


def test_unknown_api_path_is_json_404(client):
    r = client.get("/api/nothing")
    assert r.status_code == 404 and r.is_json


def test_method_not_allowed_is_json(client):
    r = client.delete("/api/graph", headers={"Sec-Fetch-Site": "same-origin"})
    assert r.status_code == 405 and r.is_json


# -- index and static -------------------------------------------------------------------

def test_index_and_plotly_are_served(client):
    r = client.get("/")
    assert r.status_code == 200
    assert b"<script>" not in r.data.replace(b" ", b"")  # no inline scripts
    r = client.get("/static/vendor/plotly.min.js")
    assert r.status_code == 200 and r.mimetype == "text/javascript"
    head = r.data[:2000]
    r.close()
    assert b"plotly" in head.lower()


def test_metrics_prometheus_text(client, service):
    text = client.get("/metrics").data.decode()
    assert "nsgraph_up 1" in text
    assert "nsgraph_events_total 10" in text
    assert "nsgraph_repaired_total 1" in text
    assert "nsgraph_rejected_total 2" in text
    assert 'nsgraph_namespaces{type="net"} 2' in text
    assert "nsgraph_demos_started_total 0" in text
    assert "nsgraph_sse_clients 0" in text
    for line in text.splitlines():
        assert line.startswith("#") or len(line.split(" ")) == 2, line


# -- nsgraph serve ----------------------------------------------------------------------------------

import os as _os
import re as _re
import signal as _signal
import subprocess as _subprocess
import sys as _sys
import urllib.request as _urlreq

from webapp.commands import serve as cmd_serve


def _parse(argv):
    import argparse
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    cmd_serve.add_parser(sub)
    return parser.parse_args(["serve"] + argv)


def test_serve_defaults_are_loopback_5000():
    args = _parse([])
    assert (args.host, args.port, args.allow_remote, args.read_only) == ("127.0.0.1", 5000, False, False)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "example.org"])
def test_serve_refuses_remote_addresses_without_the_flag(host, capsys):
    assert cmd_serve.run(_parse(["--host", host])) == 2
    err = capsys.readouterr().err
    assert "--allow-remote" in err and host in err


def test_token_file_is_created_0600_and_then_reused(tmp_path):
    path = tmp_path / "token"
    token = cmd_serve.load_token(str(path))
    assert _os.stat(path).st_mode & 0o777 == 0o600
    assert path.read_text().strip() == token and len(token) >= 32
    assert cmd_serve.load_token(str(path)) == token
    assert cmd_serve.load_token(None) != cmd_serve.load_token(None)


@pytest.mark.parametrize("content", ["", "short", "has space in the middle of it"])
def test_bad_token_files_are_usage_errors(tmp_path, content):
    path = tmp_path / "token"
    path.write_text(content)
    with pytest.raises(cmd_serve.UsageError, match="token file"):
        cmd_serve.load_token(str(path))


def test_url_for_brackets_ipv6():
    assert cmd_serve.url_for("::1", 5000, "t") == "http://[::1]:5000/?token=t"
    assert cmd_serve.url_for("127.0.0.1", 80, "t") == "http://127.0.0.1:80/?token=t"


def test_serve_prints_the_url_first_and_answers_status_at_once(root, tmp_path):
    """The contract the Vagrant provisioner relies on: URL line on stdout as soon as
    the server listens, /api/status answering (starting/running/error, never a
    refusal) and a clean exit on SIGTERM."""
    token_file = tmp_path / "token"
    repo = _os.path.dirname(_os.path.dirname(_os.path.dirname(_os.path.abspath(__file__))))
    proc = _subprocess.Popen([_sys.executable, "-m", "tracer.cli", "serve", "--port", "0", "--read-only",
                              "--token-file", str(token_file)], cwd=repo,
                             stdout=_subprocess.PIPE, stderr=_subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().rstrip("\n")
        m = _re.fullmatch(r"http://127\.0\.0\.1:(\d+)/\?token=(\S+)", line)
        assert m, (line, proc.stderr.read() if proc.poll() is not None else "")
        port, token = m.groups()
        assert token == token_file.read_text().strip()
        req = _urlreq.Request("http://127.0.0.1:%s/api/status" % port,
                              headers={"Authorization": "Bearer " + token})
        with _urlreq.urlopen(req, timeout=5) as r:
            assert json.load(r)["state"] in ("starting", "running", "error")
        with _urlreq.urlopen("http://127.0.0.1:%s/api/status?token=%s" % (port, token), timeout=5) as r:
            assert r.status == 200
        proc.send_signal(_signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        err = proc.stderr.read()
        assert "nsgraph: " in err and "token=REDACTED" in err
        assert token not in err  # the access log must not leak it
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
