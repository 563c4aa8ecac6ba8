"""`nsgraph fleet init` and the pieces around it, without a NATS server: the files, the
certificates (read back with openssl), the permissions in the server configuration,
the credentials checks, health and search.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tracer.fleet import health
from tracer.fleet.bootstrap import FleetSpec, init_fleet, load_spec, merge
from tracer.fleet.fleet import Fleet
from tracer.fleet.natsconn import Credentials, CredentialsError, parse_servers
from tracer.fleet.serverconf import Member, permissions
from tracer.fleet.streams import parse_duration, parse_size
from tracer.fleet.subjects import BadNodeName, check_node, default_node, parse_subject
from tracer.fleet.wire import Checkpoint

from conftest import require
from test_fleet_wire import Agent, workload


@pytest.fixture
def openssl():
    require(shutil.which("openssl") is not None, "openssl is missing (apt-get install openssl)")


def _cert_text(path):
    return subprocess.run(["openssl", "x509", "-in", path, "-noout", "-text"], capture_output=True,
                          text=True, check=True).stdout


def test_init_writes_ca_server_and_one_bundle_per_identity(tmp_path, openssl):
    d = str(tmp_path / "fleet")
    result = init_fleet(FleetSpec(d, nodes=["web-1", "web-2"], server_names=["nats.example"],
                                  server_ips=["192.0.2.7"]))
    assert result["urls"] == ["tls://nats.example:4222"]
    for bundle in ("admin", "dashboard", "agent-web-1", "agent-web-2"):
        creds = Credentials.load(os.path.join(d, bundle))
        assert creds.servers == ["tls://nats.example:4222"]
        assert oct(os.stat(creds.key).st_mode & 0o777) == "0o600"
        assert "email:%s" % creds.user in _cert_text(creds.cert).replace("email:", "email:")
    assert Credentials.load(os.path.join(d, "agent-web-1")).node == "web-1"
    server = _cert_text(os.path.join(d, "server", "server.crt"))
    assert "DNS:nats.example" in server and "IP Address:192.0.2.7" in server
    assert "TLS Web Server Authentication" in server
    verify = subprocess.run(["openssl", "verify", "-CAfile", os.path.join(d, "ca", "ca.crt"),
                             os.path.join(d, "agent-web-2", "client.crt")], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr
    conf = open(result["configs"][0]).read()
    assert "verify_and_map: true" in conf and '"agent.web-2@nsgraph.fleet"' in conf
    assert "cluster" not in conf            # one server: no routes


def test_init_again_keeps_certificates_and_adds_nodes(tmp_path, openssl):
    d = str(tmp_path / "fleet")
    init_fleet(FleetSpec(d, nodes=["a"]))
    ca = open(os.path.join(d, "ca", "ca.crt")).read()
    cert_a = open(os.path.join(d, "agent-a", "client.crt")).read()
    spec = merge(load_spec(d), FleetSpec(d, nodes=["b"]))
    result = init_fleet(spec)
    assert open(os.path.join(d, "ca", "ca.crt")).read() == ca
    assert open(os.path.join(d, "agent-a", "client.crt")).read() == cert_a
    assert os.path.join(d, "agent-a") in result["kept"] and os.path.join(d, "agent-b") in result["written"]
    assert load_spec(d).nodes == ["a", "b"]


def test_cluster_members_get_routes_over_tls_and_one_config_each(tmp_path, openssl):
    d = str(tmp_path / "fleet")
    members = [Member("n%d" % i, "127.0.0.1", 14220 + i, 16220 + i) for i in (1, 2, 3)]
    result = init_fleet(FleetSpec(d, nodes=["a"], members=members, store_dir=str(tmp_path / "js")))
    assert len(result["configs"]) == 3
    assert result["urls"] == ["tls://127.0.0.1:14221", "tls://127.0.0.1:14222", "tls://127.0.0.1:14223"]
    conf = open(result["configs"][1]).read()
    assert 'listen: "127.0.0.1:16222"' in conf and "nats://127.0.0.1:16223" in conf
    assert "verify: true" in conf and str(tmp_path / "js" / "n2") in conf
    assert "http:" not in conf
    if shutil.which("nats-server"):
        check = subprocess.run(["nats-server", "-t", "-c", result["configs"][1]], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr


def test_members_on_one_host_get_their_own_monitoring_ports(tmp_path, openssl):
    from tracer.commands.fleet import parse_members
    members = parse_members(["n1=127.0.0.1:4222:6222:8222", "n2=[::1]:4223:6223", "n3=::1:4224:6224", "n4=nats.example:1:2:3"])
    assert [(m.host, m.client_port, m.cluster_port, m.monitor_port) for m in members] == [
        ("127.0.0.1", 4222, 6222, 8222), ("::1", 4223, 6223, 0), ("::1", 4224, 6224, 0), ("nats.example", 1, 2, 3)]
    with pytest.raises(ValueError, match="MONITOR_PORT"):
        parse_members(["n1=127.0.0.1:4222"])
    d = str(tmp_path / "fleet")
    members = [Member("n%d" % i, "127.0.0.1", 14220 + i, 16220 + i, 18220 + i) for i in (1, 2)]
    result = init_fleet(FleetSpec(d, members=members, store_dir=str(tmp_path / "js"), monitor_port=8222))
    assert 'http: "127.0.0.1:18222"' in open(result["configs"][1]).read()
    assert load_spec(d).members[1].monitor_port == 18222


def test_permissions_agents_write_only_their_own_subjects_and_the_dashboard_only_reads():
    agent = permissions("agent", "web-1")
    assert agent["publish"]["allow"] == ["nsgraph.web-1.events", "nsgraph.web-1.checkpoints", "nsgraph.web-1.status"]
    assert agent["subscribe"]["allow"] == ["_INBOX_web-1.>"]
    dash = permissions("dashboard")
    assert "nsgraph.>" in dash["publish"]["deny"]
    assert "$JS.API.STREAM.DELETE.>" in dash["publish"]["deny"]
    assert not any(s.startswith("nsgraph.") or "STREAM.CREATE" in s or "STREAM.UPDATE" in s
                   for s in dash["publish"]["allow"])


def test_credentials_explain_what_is_wrong(tmp_path, openssl):
    with pytest.raises(CredentialsError, match="no identity.json"):
        Credentials.load(str(tmp_path))
    d = str(tmp_path / "fleet")
    init_fleet(FleetSpec(d, nodes=["a"]))
    bundle = os.path.join(d, "agent-a")
    os.chmod(os.path.join(bundle, "client.key"), 0o644)
    with pytest.raises(CredentialsError, match="chmod 600"):
        Credentials.load(bundle)
    os.chmod(os.path.join(bundle, "client.key"), 0o600)
    os.unlink(os.path.join(bundle, "client.crt"))
    with pytest.raises(CredentialsError, match="client.crt is missing"):
        Credentials.load(bundle)


def test_node_names_become_subject_tokens():
    assert check_node("web-1_a") == "web-1_a"
    for bad in ("", "a.b", "a*", ">", "a b", "-x", "x" * 64):
        with pytest.raises(BadNodeName):
            check_node(bad)
    check_node(default_node())
    assert parse_subject("nsgraph.web-1.events") == ("web-1", "events")
    assert parse_subject("nsgraph.web-1.other") is None
    assert parse_subject("nsgraph.a.b.events") is None


def test_servers_and_limits_parse():
    assert parse_servers("a, tls://b:5000,nats://c") == ["tls://a:4222", "tls://b:5000", "tls://c:4222"]
    assert parse_servers(None, ["tls://x:1"]) == ["tls://x:1"]
    with pytest.raises(CredentialsError):
        parse_servers("http://a")
    with pytest.raises(CredentialsError):
        parse_servers("")
    assert parse_size("10G") == 10 << 30 and parse_size("512MiB") == 512 << 20 and parse_size("100") == 100
    assert parse_duration("7d") == 7 * 86400 and parse_duration("90m") == 5400
    with pytest.raises(ValueError):
        parse_size("ten")
    with pytest.raises(ValueError):
        parse_duration("soon")


def test_health_live_stale_offline():
    status = {"state": "running", "interval": 2.0, "run": "r1"}
    synced = {"run": "r1", "synced": True, "gap_since": None, "missed": 0}
    assert health.assess(100.0, status, 99.0, synced)["state"] == "live"
    late = health.assess(100.0, status, 96.0, synced)
    assert late["state"] == "stale" and "late" in late["reason"]
    gone = health.assess(100.0, status, 90.0, synced)
    assert gone["state"] == "offline" and gone["since"] == 90.0
    stopped = health.assess(100.0, dict(status, state="stopped"), 99.5, synced)
    assert stopped["state"] == "offline" and "stopped" in stopped["reason"]
    gap = health.assess(100.0, status, 99.0, dict(synced, synced=False, gap_since=98.0, missed=7))
    assert gap["state"] == "stale" and "missed 7" in gap["reason"]
    restarted = health.assess(100.0, dict(status, run="r2"), 99.0, synced)
    assert restarted["state"] == "stale" and "restarted" in restarted["reason"]
    behind = health.assess(100.0, dict(status, seq=900), 99.5, dict(synced, seq=400, last_record_ts=80.0))
    assert behind["state"] == "stale" and "500 records behind" in behind["reason"]
    caught_up = health.assess(100.0, dict(status, seq=900), 99.5, dict(synced, seq=900, last_record_ts=80.0))
    assert caught_up["state"] == "live"
    assert health.assess(100.0, None, None, None)["state"] == "unknown"
    losses = health.losses_of({"kernel": {"lost": 3}, "outbox": {"dropped_records": 4}, "journal_dropped": 1,
                               "publisher": {"refused": 2}}, {"missed": 5, "bad_messages": 1})
    assert losses == {"kernel_lost": 3, "agent_dropped": 5, "publish_refused": 2, "stream_missed": 5,
                      "bad_messages": 1}


def test_fleet_search_finds_joins_across_nodes_in_a_window():
    fleet = Fleet()
    for node in ("alpha", "beta"):
        agent = Agent(node=node)
        workload(agent.graph)
        agent.batcher.flush()
        entry = fleet.node(node, create=True)
        for item in agent.drain():
            (entry.replica.on_checkpoint if isinstance(item, Checkpoint) else entry.replica.on_events)(item)
        fleet.on_status(node, {"state": "running", "interval": 2.0, "run": "r1"}, received_at=1e12)
    overview = fleet.overview()
    assert [n["node"] for n in overview["nodes"]] == ["alpha", "beta"]
    assert overview["nodes"][0]["processes"] == 2 and overview["nodes"][0]["namespaces_by_type"]["uts"] >= 1
    found = fleet.search("unshare", kinds=("process", "namespace", "join", "container"))
    assert found["results"] == [] or all(r["node"] in ("alpha", "beta") for r in found["results"])
    ns = fleet.search("uts:4:319", kinds=("namespace",))
    assert {r["node"] for r in ns["results"]} == {"alpha", "beta"}
    assert fleet.search("", since=0.0, kinds=("join",))["results"] == []
    assert json.dumps(fleet.overview())           # what the page gets is JSON
