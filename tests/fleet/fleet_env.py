"""The fleet lane's set-up: one NATS cluster, two agents on this host, one in the 6.1 VM,
and the fleet dashboard, shared by every test of tests/fleet/test_fleet.py (one VM
boot for all of them: it is the expensive part)."""

from __future__ import annotations

import os
import shutil
import tempfile
import time

import pytest

import procns
from harness import REPO, Agent, Cluster, Dashboard, wait_until
from tests.conftest import require

HOST_NODES = ("host-a", "host-b")
VM_NODE = "vm61"
NODES = HOST_NODES + (VM_NODE,)
AGENT_ARGS = ["--heartbeat", "1", "--checkpoint-interval", "15"]


class Fleet:
    def __init__(self, base, cluster, agents, dashboard, vm):
        self.base = base
        self.cluster = cluster
        self.agents = agents
        self.dashboard = dashboard
        self.vm = vm
        self.vm_summary = None

    def truth(self, node):
        return self.vm.procns if node == VM_NODE else procns.snapshot

    def burst(self, node, n, pause_s=0.0):
        if node == VM_NODE:
            return self.vm.call("burst", n=n, pause_s=pause_s)
        import workload
        return workload.burst(n, pause_s=pause_s)

    def wait_live(self, nodes=NODES, timeout=120.0):
        seen = {}

        def all_live():
            for n in self.dashboard.overview()["nodes"]:
                seen[n["node"]] = (n["health"]["state"], n["health"].get("reason"))
            return all(seen.get(n, ("",))[0] == "live" for n in nodes)
        try:
            wait_until(all_live, "nodes %s to be live" % ", ".join(nodes), timeout, step=0.5)
        except AssertionError as exc:
            logs = "".join("\n--- %s (last lines):\n%s" % (a.name, a.output()[-1500:]) for a in self.agents.values())
            raise AssertionError("%s; the dashboard says %s%s" % (exc, seen, logs)) from None

    def converge(self, node, timeout=90.0, attempts=3):
        """[] once the node's graph agrees with its /proc.  A disagreement counts only when it
        shows in `attempts` checks in a row (processes come and go on a shared machine, and
        the graph trails the kernel by the stream's latency)."""
        truth = self.truth(node)
        recent = []
        deadline = time.monotonic() + timeout
        last = ["never checked"]
        while time.monotonic() < deadline:
            before = truth()
            graph = self.dashboard.graph(node)
            after = truth()
            last = procns.compare(graph, before, after) if graph else ["node %s has no graph" % node]
            keys = {_key(p) for p in last}
            recent = (recent + [keys])[-attempts:]
            if not last or (len(recent) == attempts and not set.intersection(*recent)):
                return []
            time.sleep(0.5)
        persistent = set.intersection(*recent) if recent else set()
        return [p for p in last if _key(p) in persistent] or last


def _key(problem: str) -> str:
    return " ".join(problem.split()[:2]) if problem.startswith("pid ") else problem


def _require_everything():
    require(os.geteuid() == 0, "the fleet lane needs root (agents load eBPF probes)")
    require(shutil.which("nats-server") is not None,
            "nats-server is missing (apt-get install nats-server; scripts/setup.sh test installs it)")
    try:
        import nats  # noqa: F401
    except ImportError:
        require(False, "nats-py is missing from this venv (scripts/setup.sh test installs nsgraph[fleet])")
    for tool in ("qemu-system-x86_64", "debootstrap", "mkfs.ext4", "openssl", "unshare", "nsenter"):
        require(shutil.which(tool) is not None, "%s is missing (scripts/setup.sh test installs it)" % tool)


def _keep_logs(base: str) -> None:
    """Every process's log into test-artifacts/fleet/ (CI keeps that folder)."""
    out = os.path.join(REPO, "test-artifacts", "fleet")
    os.makedirs(out, exist_ok=True)
    for name in os.listdir(base):
        if name.endswith(".log"):
            shutil.copy(os.path.join(base, name), out)
    console = os.path.join(base, "vm-results", "console.log")
    if os.path.exists(console):
        shutil.copy(console, os.path.join(out, "vm-console.log"))


@pytest.fixture(scope="session")
def fleet(root):
    _require_everything()
    from vm import FleetVM
    # Not pytest's tmp_path: its numbered folders are pruned by any other pytest run of the
    # same user, which on a shared machine may happen while this lane's servers use them.
    base = tempfile.mkdtemp(prefix="nsgraph-fleet-test-", dir="/var/tmp")
    cluster = Cluster(base, list(NODES))
    cluster.start()
    vm = None
    agents = {}
    dashboard = None
    fleet = None
    try:
        cluster.make_streams()
        vm = FleetVM(cluster, base, VM_NODE).start()      # boots while the host side comes up
        agents = {n: Agent(cluster, n, base).start() for n in HOST_NODES}
        dashboard = Dashboard(cluster, base).start()
        vm.connect()
        vm.call("start_agent", args=AGENT_ARGS)
        fleet = Fleet(base, cluster, agents, dashboard, vm)
        fleet.wait_live(HOST_NODES, timeout=240)
        fleet.wait_live(NODES, timeout=600)               # the agent compiles its probes under TCG
        yield fleet
    finally:
        if fleet is not None:          # tests replace agents and the dashboard: stop the current ones
            agents, dashboard = fleet.agents, fleet.dashboard
            import workload
            workload.stop(fleet.__dict__.get("held", []))
        if vm is not None:
            vm.stop()
        for agent in agents.values():
            agent.signal()
        if dashboard is not None:
            dashboard.signal()
        cluster.stop()
        _keep_logs(base)
        shutil.rmtree(base, ignore_errors=True)
