"""The JSON API through Flask's test client, on the real app and the real model.

The graph is a real NamespaceGraph built from a synthetic snapshot plus real
events (tests/web_fixtures.py), served by a real NsgraphService: every answer
here is what `nsgraph serve` would give for that host.  Expected values come
from how the world was built (who was put in which namespace), not from the
code under test.
"""

from __future__ import annotations

import json
import time

import pytest

from tracer import nstypes
from tracer.graph.schema import (ContainerDetail, GraphDiff, GraphJSON, JoinJSON, NamespaceDetail,
                                 ProcessJSON, check_shape)
from tracer.history.store import HistoryStore
from tracer.service import NsgraphService
from web_fixtures import (EXEC_CHILD, EXEC_PID, HOST_NS, HOST_SLOTS as HOST_NS_SLOTS, MYAPP_ID, MYAPP_INODES,
                          MYAPP_NS, MYAPP_PID, TOKEN, World, authed, serving)

SAME = {"Sec-Fetch-Site": "same-origin"}


@pytest.fixture
def world():
    return World()


@pytest.fixture
def client(world):
    return authed(serving(world))[1]


def without_time(data: dict) -> dict:
    """Graph JSON minus its "time" stamp (the moment it was serialised)."""
    return {k: v for k, v in data.items() if k != "time"}


# -- status and graph -----------------------------------------------------------------

def test_status_reports_service_state_and_graph_counters(client, world):
    body = client.get("/api/status").get_json()
    assert body["state"] == "running" and body["error"] is None and body["warnings"] == []
    assert body["version"] == world.graph.version
    counters = body["counters"]
    # Host: one of each of 8 types; myapp: its own mnt, uts, ipc, pid, net.
    assert counters["namespaces_by_type"] == {"user": 1, "pid": 2, "mnt": 2, "net": 2, "uts": 2,
                                              "ipc": 2, "cgroup": 1, "time": 1}
    assert counters["events"] == 7          # five setns, a clone, an exec
    assert counters["joins"] == 1
    assert counters["demos_running"] == 0 and counters["sse_clients"] == 0
    assert body["read_only"] is False


@pytest.mark.parametrize("service", [None, NsgraphService()], ids=["no-service", "not-started"])
def test_status_while_starting_is_not_an_error(service):
    _, client = authed(service)
    r = client.get("/api/status")
    assert r.status_code == 200 and r.get_json()["state"] == "starting"
    for path in ("/api/graph", "/api/graph/diff?since=1", "/api/namespace/net:4:1:0", "/api/export.dot"):
        r = client.get(path)
        assert r.status_code == 503 and r.headers["Retry-After"] == "1", path
        assert "starting" in r.get_json()["error"]


def test_graph_is_the_graph_json(client, world):
    body = client.get("/api/graph").get_json()
    assert check_shape(body, GraphJSON) == []
    assert without_time(body) == without_time(world.graph.to_json())
    assert body["host_ns"]["net"] == HOST_NS["net"]
    assert {n["id"] for n in body["namespaces"] if n["container"] == "myapp"} == set(MYAPP_NS.values())


def test_housekeeping_joins_only_on_request(client, world):
    # dockerd enters myapp's net namespace and returns (its own switch, not a join).
    into = dict(HOST_NS_SLOTS, net=MYAPP_INODES["net"])
    world.graph.apply_batch([world.event("setns", 700, comm="dockerd", tid=712, syscall="setns",
                                         raw_flags=nstypes.CLONE_NEWNET, fd=9, ns=into, ns_before=HOST_NS_SLOTS),
                             world.event("setns", 700, comm="dockerd", tid=712, syscall="setns",
                                         raw_flags=nstypes.CLONE_NEWNET, fd=8, ns=HOST_NS_SLOTS, ns_before=into)])
    world.graph.apply_ops([{"op": "joins_flush", "now": time.time() + 10}])     # the quiet gap closes it
    default = client.get("/api/graph").get_json()
    assert [j["comm"] for j in default["joins"]] == ["runc:[1:CHILD]"]
    body = client.get("/api/graph?housekeeping=1").get_json()
    assert check_shape(body, GraphJSON) == []
    (hk,) = [j for j in body["joins"] if j["housekeeping"]]
    assert (hk["comm"], hk["housekeeping"], hk["container"]) == ("dockerd", "engine", "myapp")
    assert client.get("/api/join/%d" % hk["id"]).get_json()["housekeeping"] == "engine"
    assert client.get("/api/status").get_json()["counters"]["housekeeping_joins"] == 1


def test_graph_diff_and_409_when_too_old():
    world = World(changelog_size=64)
    _, client = authed(serving(world))
    old = world.graph.version
    ns_id = world.new_namespace("uts")
    body = client.get("/api/graph/diff?since=%d" % old).get_json()
    assert check_shape(body, GraphDiff) == []
    assert body["version"] == world.graph.version and body["since"] == old
    added = [c for c in body["changes"] if c["entity"] == "namespace"]
    assert [(c["op"], c["id"], c["data"]["type"]) for c in added] == [("add", ns_id, "uts")]
    for _ in range(40):                      # more changes than the change log keeps
        world.new_namespace("ipc")
    r = client.get("/api/graph/diff?since=%d" % old)
    assert r.status_code == 409 and r.get_json()["version"] == world.graph.version
    assert "GET /api/graph" in r.get_json()["error"]
    assert client.get("/api/graph/diff?since=%d" % (world.graph.version + 5)).status_code == 409
    assert client.get("/api/graph/diff?since=%d" % world.graph.version).get_json()["changes"] == []


@pytest.mark.parametrize("query", ["", "?since=", "?since=abc", "?since=-1", "?since=1e3"])
def test_graph_diff_rejects_bad_since(client, query):
    r = client.get("/api/graph/diff" + query)
    assert r.status_code == 400 and "since" in r.get_json()["error"]


def test_events_since_seq_and_limit(client, world):
    hub = client.application.extensions["nsgraph"].hub
    events = [world.unshare_event() for _ in range(5)]
    for event in events:
        hub.on_event(event)                  # what the collector calls, in its thread
    hub.pump()
    body = client.get("/api/events?since_seq=%d&limit=2" % events[1].seq).get_json()
    assert [e["seq"] for e in body["events"]] == [events[3].seq, events[4].seq]
    assert body["last_seq"] == events[4].seq
    assert body["events"][0]["kind"] == "unshare" and body["events"][0]["flags"] == ["CLONE_NEWNET"]
    assert client.get("/api/events?limit=x").status_code == 400
    assert client.get("/api/events?since_seq=-4").status_code == 400
    assert len(client.get("/api/events?limit=99999").get_json()["events"]) == 5


# -- details: the graph's own lookups -----------------------------------------------------------

def test_namespace_details(client):
    r = client.get("/api/namespace/" + MYAPP_NS["net"])
    body = r.get_json()
    assert check_shape(body, NamespaceDetail) == []
    assert body["id"] == MYAPP_NS["net"] and body["container"] == "myapp"
    # myapp's sleep, and runc's exec: the setns caller and the child it cloned.
    assert body["pids"] == [MYAPP_PID, EXEC_PID, EXEC_CHILD]
    assert [p["pid"] for p in body["processes"]] == [MYAPP_PID, EXEC_PID, EXEC_CHILD]
    assert body["owner_id"] == HOST_NS["user"]
    # "type:inode" names the live namespace of that inode.
    assert client.get("/api/namespace/net:4026532177").get_json()["id"] == MYAPP_NS["net"]
    assert client.get("/api/namespace/pid:4026532173").get_json()["parent_id"] == HOST_NS["pid"]
    r = client.get("/api/namespace/net:4:1:0")
    assert r.status_code == 404 and "net:4:4026531840:0" in r.get_json()["error"]


def test_process_details(client):
    body = client.get("/api/process/%d" % MYAPP_PID).get_json()
    assert check_shape(body, ProcessJSON) == []
    assert body["comm"] == "sleep" and body["container"] == "myapp" and body["container_id"] == MYAPP_ID
    assert {t: body["ns"][t] for t in MYAPP_NS} == MYAPP_NS
    assert body["ns"]["user"] == HOST_NS["user"]
    assert client.get("/api/process/99999").status_code == 404
    assert client.get("/api/process/abc").status_code == 404


def test_container_details_by_name_and_id(client):
    body = client.get("/api/container/myapp").get_json()
    assert check_shape(body, ContainerDetail) == []
    assert body["container"]["name"] == "myapp" and body["container"]["image"] == "nsgraph-demo:latest"
    assert [p["pid"] for p in body["processes"]] == [MYAPP_PID]
    assert {n["id"] for n in body["namespaces"]} == set(MYAPP_NS.values())
    assert client.get("/api/container/" + MYAPP_ID[:12]).get_json()["container"]["name"] == "myapp"
    assert client.get("/api/container/" + MYAPP_ID).get_json()["container"]["name"] == "myapp"
    assert client.get("/api/container/nosuch").status_code == 404


def test_join_details(client):
    body = client.get("/api/join/1").get_json()
    assert check_shape(body, JoinJSON) == []
    assert body["tool"] == "runc" and body["container"] == "myapp"
    assert body["types"] == ["ipc", "uts", "net", "pid", "mnt"]      # runc's order of setns calls
    assert body["target"] == MYAPP_NS
    assert (body["pid"], body["exec_pid"], body["open"]) == (EXEC_PID, EXEC_CHILD, False)
    assert client.get("/api/join/2").status_code == 404
    assert client.get("/api/join/x").status_code == 404


def test_history_needs_a_store_and_a_time(client):
    assert client.get("/api/history/graph").status_code == 400
    assert client.get("/api/history/graph?at=nan").status_code == 400
    assert client.get("/api/history/graph?at=1e20").status_code == 400
    r = client.get("/api/history/graph?at=%f" % time.time())
    assert r.status_code == 503 and "--db" in r.get_json()["error"]


def test_history_rebuilds_the_past_from_the_store(tmp_path):
    world = World()
    before = time.time() - 1
    store = HistoryStore(str(tmp_path / "history.db")).open()
    store.attach(world.graph)
    store.start()
    try:
        _, client = authed(serving(world, store))
        attached = time.time()
        time.sleep(0.01)
        ns_id = world.new_namespace("uts")
        store.flush()
        now = client.get("/api/history/graph?at=%f" % time.time()).get_json()
        assert check_shape(now, GraphJSON) == []
        assert ns_id in {n["id"] for n in now["namespaces"]}
        past = client.get("/api/history/graph?at=%f" % attached).get_json()
        assert ns_id not in {n["id"] for n in past["namespaces"]}
        assert MYAPP_NS["net"] in {n["id"] for n in past["namespaces"]}
        r = client.get("/api/history/graph?at=%f" % before)
        assert r.status_code == 404 and "before the first record" in r.get_json()["error"]
    finally:
        store.close()


def test_exports(client, world):
    r = client.get("/api/export.json")
    assert r.status_code == 200 and "attachment" in r.headers["Content-Disposition"]
    assert without_time(json.loads(r.data)) == without_time(world.graph.to_json())
    r = client.get("/api/export.dot")
    assert r.status_code == 200 and r.mimetype == "text/vnd.graphviz"
    assert r.headers["Content-Disposition"] == 'attachment; filename="nsgraph-%d.dot"' % world.graph.version
    lines = r.data.decode().splitlines()
    assert lines[0] == "digraph nsgraph {" and lines[-1] == "}"
    # myapp's net namespace holds its sleep and runc's two exec processes.
    assert '  "%s" [label="net 4026532177\\n3 processes\\ncontainer myapp"];' % MYAPP_NS["net"] in lines
    # The host's namespaces are drawn bold; ownership dashed, pid parents solid.
    assert '  "%s" [label="net 4026531840\\n2 processes", style="bold"];' % HOST_NS["net"] in lines
    assert '  "%s" -> "%s" [style=dashed, label="owner"];' % (MYAPP_NS["uts"], HOST_NS["user"]) in lines
    assert '  "%s" -> "%s" [label="parent"];' % (MYAPP_NS["pid"], HOST_NS["pid"]) in lines
    nodes = [ln for ln in lines if "[label=" in ln and "->" not in ln]
    assert len(nodes) == 13                  # every live namespace once, processes are not nodes


# -- demos (validation only here; real runs are in tests/docker/test_demos_docker.py) ---------

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
    r = client.post("/api/demos/rm-rf", headers=SAME)
    assert r.status_code == 400 and "ls-ns" in r.get_json()["error"]
    r = client.post("/api/demos/..%2F..%2Fetc", headers=SAME)
    assert r.status_code in (400, 404)
    assert client.application.extensions["nsgraph"].demos.stats()["started"] == 0


def test_demo_run_unknown_is_404(client):
    assert client.get("/api/demos/runs/nope").status_code == 404
    assert client.get("/api/demos/runs").get_json() == {"runs": []}


def test_read_only_refuses_launch_and_cleanup(world):
    _, client = authed(serving(world), read_only=True)
    body = client.get("/api/demos").get_json()
    assert body["read_only"] is True and not any(s["available"] for s in body["scenarios"])
    for path in ("/api/demos/ls-ns", "/api/demos/cleanup"):
        r = client.post(path, headers=SAME)
        assert r.status_code == 403 and "read-only" in r.get_json()["error"]


def test_without_docker_the_docker_demos_are_unavailable_with_the_reason():
    """`nsgraph serve` starts without Docker; the page shows why its demos cannot run,
    and asks the engine again only after a while (the list is read on every page load)."""
    from webapp import create_app
    from webapp.config import WebConfig
    from webapp.demos import DemoManager
    from webapp.demos.scenarios import DOCKER

    calls = []

    def no_engine():
        calls.append(1)
        raise ConnectionRefusedError(111, "Connection refused")
    cfg = WebConfig(token=TOKEN)
    app = create_app(cfg, service=serving(World()), demos=DemoManager(cfg, docker_factory=no_engine))
    client = app.test_client()
    client.get("/?token=" + TOKEN)
    for _ in range(3):
        body = client.get("/api/demos").get_json()
    docker = [s for s in body["scenarios"] if s["kind"] == DOCKER]
    assert docker and all(s["available"] is False for s in docker)
    assert all("Docker is not reachable" in s["why"] and "Connection refused" in s["why"] for s in docker)
    # the util-linux demos do not need Docker
    assert all("Docker" not in (s["why"] or "") for s in body["scenarios"] if s["kind"] != DOCKER)
    assert len(calls) == 1


def test_unknown_api_path_is_json_404(client):
    r = client.get("/api/nothing")
    assert r.status_code == 404 and r.is_json


def test_method_not_allowed_is_json(client):
    r = client.delete("/api/graph", headers=SAME)
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


def test_metrics_prometheus_text(client, world):
    counters = world.graph.counters_snapshot()
    text = client.get("/metrics").data.decode()
    assert "nsgraph_up 1" in text
    assert "nsgraph_events_total 7" in text
    assert "nsgraph_repaired_total %d" % counters["repaired"] in text
    assert "nsgraph_rejected_total %d" % counters["rejected"] in text
    assert 'nsgraph_namespaces{type="net"} 2' in text
    assert "nsgraph_graph_version %d" % world.graph.version in text
    assert "nsgraph_demos_started_total 0" in text
    assert "nsgraph_sse_clients 0" in text
    for line in text.splitlines():
        assert line.startswith("#") or len(line.split(" ")) == 2, line
