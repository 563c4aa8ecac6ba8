"""NsgraphService without the kernel: its contract, and the maintenance tick on a real
graph (join sessions closed by the timer, docker exec commands from engine events)."""

from __future__ import annotations

import time

from synthetic import HOST, ev, fresh_graph, host_snapshot, with_

from tracer import nstypes
from tracer.containers.exec_hints import DockerExecHints
from tracer.service import NsgraphService, ServiceConfig
from webapp.contract import GraphReader, HistoryReader, Service

CID = "08be65e6b017f392fd622fe838dc13743ffd0e264620aeefc6623b198f99ae82"
CONTAINER = {"id": CID, "name": "web", "image": "nsgraph-demo:latest", "runtime": "docker", "pid": 60,
             "labels": {}, "state": "running", "pod_uid": None, "source": "docker"}
INSIDE = with_(HOST, net=201, uts=202)


def service_with_a_container(**config):
    svc = NsgraphService(ServiceConfig(db="none", docker=False, reconcile_s=3600, **config))
    g = fresh_graph(pids=(1, 50, 70, 80))   # known: an event of an unknown process asks for a repair
    g.apply_ops([{"op": "proc", "pid": 60, "ppid": 1, "uid": 0, "comm": "sleep", "cmdline": ["sleep", "300"],
                  "cgroup": "0::/docker/" + CID, "ns": INSIDE, "container": CONTAINER, "ts": 1.0},
                 {"op": "ns", "type": "net", "inode": 201, "owner_inode": 105, "ts": 1.0},
                 {"op": "link"}])
    svc.graph = g
    return svc, g


def test_the_service_and_its_parts_meet_the_web_contract(tmp_path):
    from tracer.history.store import HistoryStore
    svc, g = service_with_a_container()
    assert isinstance(svc, Service) and isinstance(g, GraphReader)
    assert isinstance(HistoryStore(str(tmp_path / "h.db")), HistoryReader)
    assert svc.status.state == "starting" and svc.store is None and svc.collector is None


def test_tick_closes_quiet_sessions_and_names_docker_exec_commands():
    svc, g = service_with_a_container()
    journal = []
    g.add_journal(lambda kind, payload, seq: journal.append((kind, payload)))
    now = time.time()
    svc.hints = DockerExecHints(client_factory=lambda: None)
    svc.hints.add({"Action": "exec_start: ps aux", "Actor": {"ID": CID}, "timeNano": int((now - 5.05) * 1e9)})
    g.apply(ev("setns", 70, ns=with_(HOST, net=201), before=HOST, raw_flags=nstypes.CLONE_NEWNET,
               comm="runc:[1:CHILD]", ts=now - 5.0))
    g.apply(ev("exec", 70, ns=with_(HOST, net=201), filename="/bin/ps", comm="ps", ts=now - 4.9))
    g.apply(ev("setns", 80, ns=with_(HOST, uts=202), before=HOST, raw_flags=nstypes.CLONE_NEWUTS,
               comm="nsenter", ts=now - 3.0))
    by_pid = {j["pid"]: j for j in g.to_json()["joins"]}
    assert by_pid[70]["command"] == "/bin/ps" and by_pid[70]["command_source"] == "exec"
    assert by_pid[80]["open"]
    del journal[:]

    svc.tick()
    by_pid = {j["pid"]: j for j in g.to_json()["joins"]}
    assert (by_pid[70]["command"], by_pid[70]["command_source"]) == ("ps aux", "docker")
    assert by_pid[70]["summary"] == "joined container web's net namespace and ran `ps aux`"
    assert not by_pid[80]["open"] and by_pid[80]["end"] == now - 3.0
    assert by_pid[80]["container"] == "web"
    # both changes went in as journaled ops, so a replay closes and names them the same
    ops = [op for kind, payload in journal if kind == "ops" for op in payload]
    assert sorted(op["op"] for op in ops) == ["join_command", "joins_flush"]

    svc.tick()                                      # nothing left to do: nothing journaled
    assert [kind for kind, _ in journal if kind == "ops"] == ["ops"]


def test_tick_reconciles_a_graph_that_needs_repair_and_otherwise_settles_its_orphans():
    svc, g = service_with_a_container(settle_s=0.0)
    calls = []

    def reconcile(since_version=None, full=True):
        # The service's one /proc read, given a snapshot of this synthetic host instead:
        # the decision is the tick's, the repair the real graph's.
        calls.append(full)
        return g.reconcile(host_snapshot(pids=(1, 50), taken_at=time.time()),
                           since_version=g.version, full=full)

    svc.reconcile = reconcile
    svc.tick()
    assert calls == []                              # nothing orphaned, nothing lost

    g.apply(ev("exit", 60, ns=INSIDE))              # the container's only process: net:201, uts:202 orphaned
    assert g.orphans == 2
    svc.tick()
    assert calls == [False] and g.orphans == 0
    alive = {(n["type"], n["inode"]) for n in g.to_json()["namespaces"] if n["alive"]}
    assert ("net", 201) not in alive and ("uts", 202) not in alive and ("net", 102) in alive
    assert g.counters["settled"] == 1 and g.counters["reconciles"] == 0

    g.on_lost(3)                                    # lost events: a full reconcile at the next tick
    assert g.needs_repair
    svc.tick()
    assert calls == [False, True] and not g.needs_repair
    assert g.counters["reconciles"] == 1 and g.counters["lost"] == 3
    svc.tick()
    assert calls == [False, True]


def test_a_large_poll_reaches_the_graph_in_slices_each_under_its_own_hold_of_the_lock():
    from tracer import service as service_module
    svc = NsgraphService(ServiceConfig(db="none", docker=False))
    g, reference = fresh_graph(pids=(1, 50)), fresh_graph(pids=(1, 50))
    svc.graph = g
    events = []
    for i in range(service_module.APPLY_SLICE + 300):
        events.append(ev("clone", 50, ns=HOST, before=HOST, child_pid=5000 + i, raw_flags=17))
        events.append(ev("exit", 5000 + i))
    heard = []
    g.subscribe(heard.append)      # once per apply_batch call, i.e. per release of the lock
    svc._apply_events(events)
    reference.apply_batch(events)
    slices = -(-len(events) // service_module.APPLY_SLICE)
    assert len(heard) == slices == 4 and heard[-1] == g.version
    assert g.to_json()["processes"] == reference.to_json()["processes"] and g.version == reference.version
