"""The inside-view API on the real service: ids checked against the live graph, limits, no stray helpers.

The app runs on the real NsgraphService (eBPF, the live graph).  Whether a
request started a helper is asked of the kernel itself: the service's own
probes see every exec, and a helper is an exec whose parent is this process.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
import urllib.parse

import pytest

from tests.workloads import inside_truth as truth
from tracer.host.inside.spawn import STATS
from tracer.service import NsgraphService, ServiceConfig
from webapp import create_app
from webapp.config import WebConfig
from webapp.inside import InsideGate, InsideLimits

from conftest import wait_for

pytestmark = pytest.mark.host_only     # the VM image has no Flask

TOKEN = "inside-token-0123456789abcdef"
AUTH = {"Authorization": "Bearer " + TOKEN}


class ExecLog:
    """Exec events the kernel reported for children of this process."""

    def __init__(self, collector):
        self.lock = threading.Lock()
        self.execs = []
        collector.subscribe(self._on_event)

    def _on_event(self, ev):
        if ev.kind == "exec" and ev.ppid == os.getpid():
            with self.lock:
                self.execs.append((ev.pid, ev.filename))

    def count(self) -> int:
        time.sleep(0.5)          # let the collector drain what the kernel already has
        with self.lock:
            return len(self.execs)


@pytest.fixture(scope="module")
def served(root, tmp_path_factory):
    service = NsgraphService(ServiceConfig(db=str(tmp_path_factory.mktemp("inside") / "history.db"), docker=False))
    assert service.start(lambda m: None), service.status.to_json()
    app = create_app(WebConfig(token=TOKEN), service=service)
    execs = ExecLog(service.collector)
    sleeper = subprocess.Popen(["unshare", "--uts", "--net", "sh", "-c", "hostname nsgtest-api; exec sleep 3600"])
    try:
        wait_for(lambda: truth.hostname(sleeper.pid) == "nsgtest-api" if
                 os.path.exists("/proc/%d" % sleeper.pid) else False, "the test namespace", 10)
        inode = truth.ns_inode(sleeper.pid, "uts")
        ns_id = wait_for(lambda: next((n["id"] for n in service.graph.to_json()["namespaces"]
                                       if n["type"] == "uts" and n["inode"] == inode and n["alive"]), None),
                         "the graph to have the test namespace", 30)
        yield {"app": app, "client": app.test_client(), "service": service, "execs": execs,
               "sleeper": sleeper, "uts": ns_id, "net_inode": truth.ns_inode(sleeper.pid, "net")}
    finally:
        sleeper.kill()
        sleeper.wait()
        service.stop()


def _get(served, path):
    return served["client"].get(path, headers=AUTH)


def _fresh_gate(served, **limits):
    served["app"].extensions["nsgraph_inside"] = InsideGate(InsideLimits(**limits))


HOSTILE = ["../../../etc/passwd", "uts:1;id", "uts:%0a1", "uts:-1", "x" * 300, "uts:1:2",
           "%00", "uts:" + "9" * 40, "UTS:1", "uts:1 ", "net:[1]]", "uts:1:2:3:4:5", "uts:\n1", "uts:\x001",
           "uts:١٢٣"]


def test_hostile_and_unknown_ids_are_refused_and_start_no_helper(served):
    _fresh_gate(served)
    execs, started = served["execs"].count(), STATS.snapshot()["started"]
    for bad in HOSTILE:
        r = _get(served, "/api/namespace/%s/inside" % urllib.parse.quote(bad, safe=""))
        assert r.status_code in (400, 404), (bad, r.status_code, r.data[:200])
        assert r.is_json and r.get_json()["status"] == r.status_code
    for unknown in ("uts:4026500001", "uts:4:4026500001:0", "net:%d:%d:0" % (os.stat("/proc/self/ns/net").st_dev, 1)):
        r = _get(served, "/api/namespace/%s/inside" % unknown)
        assert r.status_code == 404, (unknown, r.status_code)
    for query in ("ns=../x&ns=uts:1", "ns=%s&ns=uts:4026500001" % served["uts"], "ns=%s" % served["uts"],
                  "ns=%s&ns=net:%d" % (served["uts"], served["net_inode"]), "&".join(["ns=" + served["uts"]] * 7)):
        r = _get(served, "/api/inside/compare?" + query)
        assert r.status_code in (400, 404), (query, r.status_code)
    assert served["client"].get("/api/namespace/%s/inside" % served["uts"]).status_code == 401   # no token
    assert STATS.snapshot()["started"] == started, "a refused request started a helper"
    assert served["execs"].count() == execs, "the kernel saw an exec from a refused request"
    # The same count moves when a request is allowed: the check above can fail.
    r = _get(served, "/api/namespace/%s/inside" % served["uts"])
    assert r.status_code == 200 and r.get_json()["view"]["hostname"] == "nsgtest-api", r.get_json()
    assert STATS.snapshot()["started"] == started + 1
    assert wait_for(lambda: served["execs"].count() > execs, "the helper's exec event", 5)


def test_one_namespace_and_compare_against_the_host(served):
    _fresh_gate(served)
    r = _get(served, "/api/namespace/%s/inside" % served["uts"])
    body = r.get_json()
    assert body["state"] == "ok" and body["label"].startswith("pid %d" % served["sleeper"].pid)
    assert body["fields"] == [["hostname", "nsgtest-api"], ["domainname", truth.domainname(served["sleeper"].pid)]]
    host = served["service"].graph.process(2)["ns"]["uts"]
    r = _get(served, "/api/inside/compare?ns=%s&ns=%s" % (host, served["uts"]))
    table = r.get_json()
    assert r.status_code == 200 and table["type"] == "uts"
    assert [c["label"] for c in table["columns"]][0] == "host"
    row = next(row for row in table["rows"] if row["label"] == "hostname")
    assert row["values"] == [truth.hostname(os.getpid()), "nsgtest-api"] and row["same"] is False
    # type:inode names it too.
    short = "uts:%d" % truth.ns_inode(served["sleeper"].pid, "uts")
    assert _get(served, "/api/namespace/%s/inside" % short).get_json()["view"]["hostname"] == "nsgtest-api"


def test_a_namespace_the_graph_saw_end_answers_ended_without_a_helper(served):
    _fresh_gate(served)
    proc = subprocess.Popen(["unshare", "--uts", "sleep", "30"])
    inode = wait_for(lambda: truth.ns_inode(proc.pid, "uts") != truth.ns_inode(os.getpid(), "uts")
                     and truth.ns_inode(proc.pid, "uts"), "the namespace")
    graph = served["service"].graph
    ns_id = wait_for(lambda: next((n["id"] for n in graph.to_json()["namespaces"]
                                   if n["type"] == "uts" and n["inode"] == inode and n["alive"]), None), "the graph", 30)
    proc.kill()
    proc.wait()
    wait_for(lambda: graph.namespace(ns_id) and not graph.namespace(ns_id)["alive"], "the graph to see it end", 30)
    started = STATS.snapshot()["started"]
    r = _get(served, "/api/namespace/%s/inside" % ns_id)
    assert r.status_code == 200 and r.get_json()["state"] == "ended", r.get_json()
    assert STATS.snapshot()["started"] == started


def test_rate_limit_and_busy_answer_429_with_retry_after(served):
    # Windows far longer than the test: a slow machine must not let the window pass.
    _fresh_gate(served, reads_per_window=2, window_s=3600)
    ok = [_get(served, "/api/namespace/%s/inside" % served["uts"]).status_code for _ in range(2)]
    r = _get(served, "/api/namespace/%s/inside" % served["uts"])
    assert ok == [200, 200] and r.status_code == 429
    assert 1 <= int(r.headers["Retry-After"]) <= 3601 and "rate limit" in r.get_json()["error"]
    # A compare costs one read per distinct namespace.
    _fresh_gate(served, reads_per_window=3, window_s=3600)
    host = served["service"].graph.process(2)["ns"]["uts"]
    assert _get(served, "/api/inside/compare?ns=%s&ns=%s" % (host, served["uts"])).status_code == 200
    assert _get(served, "/api/inside/compare?ns=%s&ns=%s" % (host, served["uts"])).status_code == 429
    # Concurrency: with every slot taken, a request waits queue_wait_s and gets 429 (Retry-After: 1).
    _fresh_gate(served, concurrent=1, queue_wait_s=0.2)
    gate = served["app"].extensions["nsgraph_inside"]
    assert gate.admit(1) is None
    try:
        r = _get(served, "/api/namespace/%s/inside" % served["uts"])
        assert r.status_code == 429 and r.headers["Retry-After"] == "1"
    finally:
        gate.release()
    assert _get(served, "/api/namespace/%s/inside" % served["uts"]).status_code == 200
    stats = _get(served, "/api/inside/stats").get_json()
    assert stats["requests"]["refused_busy"] == 1 and stats["helpers"]["started"] >= 1
