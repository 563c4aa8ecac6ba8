"""The fleet end to end: three agents (two on this host, one in the Debian 12 / Linux 6.1
VM) stream to a three-server NATS JetStream cluster over TLS with per-node
credentials; the fleet dashboard's graph of every node must equal that node's /proc,
through a NATS server killed mid-stream, NATS down for 20 s, a dashboard restart and an
agent restart; an agent may not publish as another node.

Ground truth is each node's /proc (tests/fleet/procns.py, read on the node itself),
what the workload did (the pids of its unshare processes), and the NATS servers' own
answers (stream contents read with the admin credentials).  The tests share one
cluster and one VM boot and run in file order.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import threading
import time
import urllib.parse
import uuid

import pytest

import workload
# The session fixture `fleet` lives beside the harness, not in a conftest.py: a second
# conftest module would shadow tests/conftest.py for every lane collected after this one.
from fleet_env import HOST_NODES, NODES, VM_NODE, fleet  # noqa: F401  (fleet: the fixture)
from harness import NSGRAPH, REPO, Agent, Dashboard, wait_until

pytestmark = pytest.mark.fleet


def created_by(graph: dict, pids) -> set:
    """The pids among `pids` that the graph names as creator of a uts namespace."""
    wanted = set(pids)
    return {ns["creator"]["pid"] for ns in graph["namespaces"]
            if ns["type"] == "uts" and ns.get("creator") and ns["creator"].get("pid") in wanted}


def losses(fleet, node) -> dict:
    return fleet.dashboard.node(node)["health"]["losses"]


def kernel_lost(fleet, node) -> int:
    return losses(fleet, node)["kernel_lost"]


def wait_created(fleet, node, pids, lost_before, timeout=120.0):
    """Every unshare of the workload shows in the node's graph as a namespace creator.

    The fleet must lose nothing.  The kernel may (its ring buffer overflows when another
    program on a shared machine floods it); it counts what it lost, and a creation it
    lost cannot be in any graph, so at most that many may be missing, never more.
    """
    deadline = time.monotonic() + timeout
    missing, last_change = set(pids), time.monotonic()
    while time.monotonic() < deadline:
        graph = fleet.dashboard.graph(node)
        now_missing = set(pids) - (created_by(graph, pids) if graph else set())
        if not now_missing:
            return
        if now_missing != missing:
            missing, last_change = now_missing, time.monotonic()
        lost = kernel_lost(fleet, node) - lost_before
        if lost and time.monotonic() - last_change > 15:
            assert len(missing) <= lost, "%d unshares missing on %s, the kernel lost only %d events" % (
                len(missing), node, lost)
            return
        time.sleep(0.5)
    raise AssertionError("%d of %d unshares of the workload never reached %s's graph (kernel lost %d meanwhile)"
                         % (len(missing), len(pids), node, kernel_lost(fleet, node) - lost_before))


def pipeline_losses(fleet, node) -> dict:
    """What the fleet itself lost or refused (the kernel's own losses are not the fleet's)."""
    out = dict(losses(fleet, node))
    out.pop("kernel_lost")
    return out


def connz_time(text: str) -> float:
    """A /connz time ("2026-12-03T08:10:54.123456789Z", or with an offset) as a Unix time."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text)
    assert m, "not a /connz time: %r" % text
    stamp = datetime.datetime.fromisoformat(m[1] + ("+00:00" if m[3] == "Z" else m[3])).timestamp()
    return stamp + float("0." + (m[2] or "0"))


def admin_connect(fleet):
    import nats

    from tracer.fleet.natsconn import Credentials, connect_options
    creds = Credentials.load(fleet.cluster.creds("admin"))
    return nats.connect(**connect_options(creds, fleet.cluster.urls.split(","), "fleet-test",
                                          max_reconnect_attempts=3))


def test_cluster_refuses_clients_without_a_fleet_certificate(fleet, tmp_path):
    import nats
    url = fleet.cluster.urls.split(",")[0]
    plain = ssl.create_default_context(cafile=os.path.join(fleet.cluster.etc, "ca", "ca.crt"))
    # A stranger's CA and certificate (its own `fleet init`): the server must refuse it too.
    other = subprocess.run([*NSGRAPH, "fleet", "init", "--dir", str(tmp_path / "other"), "--node", "host-a"],
                           capture_output=True, text=True, cwd=REPO)
    assert other.returncode == 0, other.stderr
    foreign = ssl.create_default_context(cafile=os.path.join(fleet.cluster.etc, "ca", "ca.crt"))
    foreign.load_cert_chain(str(tmp_path / "other" / "agent-host-a" / "client.crt"),
                            str(tmp_path / "other" / "agent-host-a" / "client.key"))

    async def attempt(ctx):
        async def quiet(_exc):
            pass
        try:
            nc = await nats.connect(url, tls=ctx, allow_reconnect=False, connect_timeout=3, error_cb=quiet)
        except Exception as exc:
            return type(exc).__name__
        await nc.close()
        return "connected"
    # A certificate from the fleet's own CA whose name is no NATS user: refused at authentication,
    # which the servers announce, and the dashboard (monitor bundle) counts.
    from tracer.fleet import pki
    pki.issue(os.path.join(fleet.cluster.etc, "ca"), str(tmp_path / "stranger"), "stranger",
              sans=["email:stranger@nsgraph.fleet"], server=False)
    stranger = ssl.create_default_context(cafile=os.path.join(fleet.cluster.etc, "ca", "ca.crt"))
    stranger.load_cert_chain(str(tmp_path / "stranger" / "client.crt"), str(tmp_path / "stranger" / "client.key"))
    before = fleet.dashboard.overview()["counters"]["auth_errors"]
    assert asyncio.run(attempt(plain)) != "connected"
    assert asyncio.run(attempt(foreign)) != "connected"
    assert asyncio.run(attempt(stranger)) != "connected"
    wait_until(lambda: fleet.dashboard.overview()["counters"]["auth_errors"] > before,
               "the dashboard to count the refused client", 20)
    refused = fleet.dashboard.overview()["refused_clients"][-1]
    assert refused["host"] == "127.0.0.1" and refused["server"] in ("n1", "n2", "n3"), refused
    assert "nsgraph_fleet_refused_clients_total %d" % (before + 1) in fleet.dashboard.get("/metrics", raw=True) \
        or fleet.dashboard.overview()["counters"]["auth_errors"] > before + 1


def test_every_node_graph_equals_its_proc_after_a_workload(fleet):
    holders = {}
    bursts = {}
    lost_before = {node: kernel_lost(fleet, node) for node in NODES}
    for node in NODES:
        if node == VM_NODE:
            held = fleet.vm.call("hold", k=2, seconds=600)["pids"]
            assert fleet.vm.call("join", pid=held[0])["rc"] == 0
        else:
            procs = workload.holders(2, 600)
            fleet.__dict__.setdefault("held", []).extend(procs)
            held = [p.pid for p in procs]
            time.sleep(0.3)
            assert workload.join(held[0]) == 0
        holders[node] = held
        bursts[node] = fleet.burst(node, 20)
    for node in NODES:
        wait_created(fleet, node, bursts[node]["pids"], lost_before[node])
        problems = fleet.converge(node, timeout=240 if node == VM_NODE else 90)
        assert problems == [], "node %s disagrees with its /proc:\n%s" % (node, "\n".join(problems[:30]))
        graph = fleet.dashboard.graph(node)
        procs = {p["pid"]: p for p in graph["processes"]}
        for pid in holders[node]:
            assert pid in procs, "holder %d missing on %s" % (pid, node)
            host_net = graph["host_ns"]["net"]
            assert procs[pid]["ns"]["net"] != host_net
        joins = [j for j in graph["joins"] if j.get("comm") == "nsenter"]
        assert joins, "the nsenter join on %s is not in its graph" % node
    vm_graph = fleet.dashboard.graph(VM_NODE)
    assert fleet.dashboard.node(VM_NODE)["agent"]["kernel"].startswith("6.1.")
    assert vm_graph["node"] == VM_NODE
    for node in NODES:
        assert pipeline_losses(fleet, node) == {"agent_dropped": 0, "publish_refused": 0, "stream_missed": 0,
                                                "bad_messages": 0}, node


def test_a_nats_server_killed_mid_stream_loses_nothing(fleet):
    """The server the agent is connected to (the servers' own /connz says which) dies while
    the agent publishes to it: the agent reconnects to another one and nothing is lost."""
    node = "host-a"
    client = "nsgraph-agent %s" % node
    lost_before = kernel_lost(fleet, node)
    reconnects_before = fleet.dashboard.get("/api/fleet/nodes/%s" % node)["heartbeat"]["publisher"]["reconnects"]
    result = {}
    worker = threading.Thread(target=lambda: result.update(fleet.burst(node, 150, pause_s=0.03)))
    worker.start()

    def publishing_server():
        """(index,) once the agent's one connection is taking messages (the burst's batches;
        a lagging publisher sends fewer, larger ones, so any message counts)."""
        first = fleet.cluster.serving(client)
        if len(first) != 1:
            return None
        (index, conn), = first.items()
        time.sleep(0.5)
        again = fleet.cluster.connections(index, client)
        return (index,) if again and again[0]["in_msgs"] > conn["in_msgs"] else None
    victim, = wait_until(publishing_server, "%s publishing to one server" % node, 30, step=0.1)
    killed_at = time.time()
    fleet.cluster.kill(victim)
    assert worker.is_alive(), "the workload ended before the server was killed: nothing was in flight"
    worker.join(180)
    assert len(result["pids"]) == 150
    wait_created(fleet, node, result["pids"], lost_before, timeout=120)
    # The servers' side of the reconnect: a connection of the agent's, opened after the kill.
    moved = wait_until(lambda: fleet.cluster.serving(client), "%s connected to a surviving server" % node, 30)
    (_, conn), = moved.items()
    assert connz_time(conn["start"]) > killed_at - 1, conn
    fleet.cluster.start(victim)
    assert fleet.converge(node) == []
    assert losses(fleet, node)["agent_dropped"] == 0 and losses(fleet, node)["stream_missed"] == 0

    def reconnect_reported():
        row = fleet.dashboard.get("/api/fleet/nodes/%s" % node)
        publisher = row["heartbeat"]["publisher"]
        # A heartbeat the servers received after the kill (the dashboard's heartbeat consumer may
        # itself have lost its leader with the victim and be a few seconds behind).
        return publisher if row["heartbeat_at"] > killed_at and publisher["reconnects"] > reconnects_before else None
    publisher = wait_until(reconnect_reported, "a heartbeat from %s counting the reconnect" % node, 30, step=0.5)
    assert publisher["connected"] and fleet.cluster.index_of(publisher["server"]) != victim, publisher


def test_nats_down_for_20_seconds_the_agents_catch_up(fleet):
    lost_before = {node: kernel_lost(fleet, node) for node in ("host-b", VM_NODE)}
    fleet.cluster.stop()
    down = time.monotonic()
    results = {}

    def vm_burst():
        results[VM_NODE] = fleet.burst(VM_NODE, 15, pause_s=0.5)
    vm_thread = threading.Thread(target=vm_burst)
    vm_thread.start()
    results["host-b"] = fleet.burst("host-b", 100, pause_s=0.15)
    vm_thread.join(120)
    time.sleep(max(0.0, 20.0 - (time.monotonic() - down)))
    fleet.cluster.start()
    for node in ("host-b", VM_NODE):
        wait_created(fleet, node, results[node]["pids"], lost_before[node], timeout=180)
        problems = fleet.converge(node, timeout=240 if node == VM_NODE else 90)
        assert problems == [], "node %s after the outage:\n%s" % (node, "\n".join(problems[:30]))
        assert losses(fleet, node)["agent_dropped"] == 0, node
        assert losses(fleet, node)["stream_missed"] == 0, node
    fleet.wait_live(NODES, timeout=120)


def test_dashboard_killed_and_restarted_rebuilds_every_node(fleet):
    fleet.dashboard.kill()
    fresh = Dashboard(fleet.cluster, fleet.base)
    fresh.name = "dashboard-restarted"
    fresh.log = os.path.join(fleet.base, "dashboard-restarted.log")
    started = time.monotonic()
    fleet.dashboard = fresh.start()
    fleet.wait_live(NODES, timeout=60)
    fleet.rebuild_s = time.monotonic() - started
    for node in NODES:
        problems = fleet.converge(node, timeout=240 if node == VM_NODE else 90)
        assert problems == [], "node %s after the dashboard restart:\n%s" % (node, "\n".join(problems[:30]))


def test_an_agent_killed_goes_offline_within_10_s_and_comes_back(fleet):
    node = "host-b"
    agent = fleet.agents[node]
    agent.kill()
    killed = time.monotonic()
    wait_until(lambda: fleet.dashboard.node(node)["health"]["state"] == "offline", "%s offline" % node, 10.0,
               step=0.2)
    offline_after = time.monotonic() - killed
    assert offline_after <= 10.0
    since = fleet.dashboard.node(node)["health"]["since"]
    assert since is not None and since <= time.time() - 1
    fleet.agents[node] = Agent(fleet.cluster, node, fleet.base).start()
    fleet.wait_live([node], timeout=90)
    assert fleet.converge(node) == []
    assert fleet.dashboard.node(node)["replica"]["resets"] >= 1


def test_an_agent_cannot_publish_as_another_node(fleet, tmp_path):
    """host-a's certificate, told it is host-b: the server refuses every publish."""
    impostor_creds = tmp_path / "impostor"
    shutil.copytree(fleet.cluster.creds("agent-host-a"), impostor_creds)
    identity = json.loads((impostor_creds / "identity.json").read_text())
    identity["node"] = "host-b"
    (impostor_creds / "identity.json").write_text(json.dumps(identity))
    impostor = Agent(fleet.cluster, "host-b", str(tmp_path), creds=str(impostor_creds), extra=["--no-docker"])
    impostor.name = "impostor"
    impostor.log = str(tmp_path / "impostor.log")
    impostor.start()
    try:
        wait_until(lambda: "refused" in impostor.output(), "the impostor to be refused", 120, step=0.5)
        time.sleep(3)
    finally:
        impostor.signal(signal.SIGTERM)
    out = impostor.output()
    run = out.split(", run ")[1].split(",")[0]
    assert "permissions violation" in out
    refused = int(out.rsplit(" publishes refused", 1)[0].rsplit(" ", 1)[1])
    assert refused > 0, out[-2000:]

    async def runs_on_host_b():
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
        nc = await admin_connect(fleet)
        js = nc.jetstream()
        seen = set()
        cfg = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME, ack_policy=AckPolicy.NONE,
                             opt_start_time=datetime.datetime.fromtimestamp(time.time() - 300,
                                                                            datetime.timezone.utc),
                             filter_subject="nsgraph.host-b.*", mem_storage=True, inactive_threshold=30.0)
        sub = await js.pull_subscribe("nsgraph.host-b.*", stream="NSGRAPH", config=cfg)
        while True:
            try:
                msgs = await sub.fetch(500, timeout=2)
            except Exception:
                break
            for m in msgs:
                seen.add((m.headers or {}).get("Nsgraph-Run") or json.loads(m.data).get("run"))
            if msgs[-1].metadata.num_pending == 0:
                break
        await nc.close()
        return seen
    seen = asyncio.run(runs_on_host_b())
    assert seen and run not in seen, (run, seen)
    assert fleet.dashboard.node("host-b")["replica"]["run"] != run


def test_fleet_search_finds_the_host_that_ran_docker_exec_into_a_container(fleet, docker_client):
    name = "nsgtest-fleet-%s" % uuid.uuid4().hex[:8]
    image = "nsgraph-demo:latest"
    container = docker_client.containers.run(image, ["sleep", "300"], name=name, detach=True,
                                             labels={"nsgraph.test": "fleet"})
    try:
        result = container.exec_run(["true"])
        assert result.exit_code == 0

        def found():
            hits = fleet.dashboard.get("/api/fleet/search?q=%s&since=3600&kind=join" % name)["results"]
            return {h["node"] for h in hits if h["container"] == name}
        # Both host agents trace this kernel (the VM's does not): both must report it.
        wait_until(lambda: found() == set(HOST_NODES), "the docker exec into %s from both host nodes" % name, 60,
                   step=0.5)
        hit = next(h for h in fleet.dashboard.get("/api/fleet/search?q=%s&since=3600&kind=join" % name)["results"]
                   if h["node"] == "host-a")
        assert hit["time"] >= time.time() - 3600 and "joined container %s" % name in hit["summary"]
        listed = fleet.dashboard.get("/api/fleet/search?q=%s&kind=container" % name)["results"]
        assert {h["node"] for h in listed} == set(HOST_NODES)
    finally:
        container.remove(force=True)


def test_metrics_have_a_series_per_node_and_history_comes_from_the_stream(fleet):
    text = fleet.dashboard.get("/metrics", raw=True)
    for node in NODES:
        assert 'nsgraph_fleet_node_up{node="%s"} 1' % node in text
        assert 'nsgraph_fleet_lost_total{node="%s",where="agent"} 0' % node in text
        assert 'nsgraph_fleet_namespaces{node="%s",type="uts"}' % node in text
    before = time.time()
    time.sleep(1.5)
    procs = workload.holders(1, 600)
    fleet.__dict__.setdefault("held", []).extend(procs)
    pid = procs[0].pid

    def live_has_it():
        graph = fleet.dashboard.graph("host-a")
        return any(p["pid"] == pid for p in graph["processes"])
    wait_until(live_has_it, "the new holder in host-a's live graph", 60)
    past = fleet.dashboard.get("/node/host-a/api/history/graph?at=%.3f" % before)
    now = fleet.dashboard.get("/node/host-a/api/history/graph?at=%.3f" % time.time())
    assert not any(p["pid"] == pid for p in past["processes"])
    assert any(p["pid"] == pid for p in now["processes"])


def test_the_fleet_page_in_a_browser(fleet, chromium_path):
    """The node list, search and a node's own dashboard, in Chromium (screenshots kept)."""
    from playwright.sync_api import sync_playwright
    shots = os.path.join(REPO, "test-artifacts", "screenshots")
    os.makedirs(shots, exist_ok=True)

    def poll(page, expr, what, timeout=30.0):
        return wait_until(lambda: page.evaluate(expr), what, timeout, step=0.1)

    # A fresh nsenter join on this host (host-b's agent restarted since the first one; the
    # VM's join from the first test is still in its graph).
    procs = workload.holders(1, 120)
    fleet.__dict__.setdefault("held", []).extend(procs)
    time.sleep(0.3)
    assert workload.join(procs[0].pid) == 0
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            errors = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto("http://127.0.0.1:%d/?token=%s" % (fleet.dashboard.port, fleet.dashboard.token))
            poll(page, "document.querySelectorAll('#nodes tr[data-state=live]').length === 3", "3 live rows")
            rows = page.evaluate("[...document.querySelectorAll('#nodes tbody tr')].map(r => r.dataset.node)")
            assert sorted(rows) == sorted(NODES)
            page.fill("#q", "nsenter")

            def searched_everywhere():
                page.click("#search-form button[type=submit]")
                time.sleep(0.5)
                return page.evaluate("window.nsgraphFleet.search && new Set(window.nsgraphFleet.search.results"
                                     ".map(r => r.node)).size === 3")
            wait_until(searched_everywhere, "nsenter joins found on all three nodes", 30, step=0.5)
            found = page.evaluate("[...new Set(window.nsgraphFleet.search.results.map(r => r.node))]")
            assert set(found) == set(NODES)
            page.screenshot(path=os.path.join(shots, "fleet-overview.png"), full_page=True)
            page.click("#nodes tr[data-node=%s] a" % VM_NODE)
            poll(page, "window.nsgraph && window.nsgraph.ready", "node %s's dashboard" % VM_NODE, timeout=60)
            # The page keeps its view in the query (deep links): the path is the node's.
            assert urllib.parse.urlsplit(page.url).path == "/node/%s/" % VM_NODE, page.url
            assert page.evaluate("document.getElementById('node-name').textContent") == VM_NODE
            page.screenshot(path=os.path.join(shots, "fleet-node-vm61.png"))
            assert errors == []
        finally:
            browser.close()


def test_vm_leg_ends_cleanly(fleet):
    workload.stop(fleet.__dict__.get("held", []))
    fleet.vm_summary = fleet.vm.stop()
    assert fleet.vm_summary["status"] == "ok", fleet.vm_summary
    assert fleet.vm_summary["kernel_release"].startswith("6.1.")
