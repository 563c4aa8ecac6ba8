"""The README's fleet commands: `scripts/setup.sh fleet-server` on the central host and
`scripts/setup.sh fleet-agent BUNDLE` on a node, run for real (detached processes
instead of systemd units, in folders of this test), then the node checked live with
`nsgraph fleet status`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

import pytest

from harness import NSGRAPH, REPO, free_ports, wait_until
from tests.conftest import require

pytestmark = pytest.mark.fleet
SETUP = os.path.join(REPO, "scripts", "setup.sh")


def _stop(pid_file: str) -> None:
    try:
        with open(pid_file) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass


def test_setup_sh_fleet_server_then_fleet_agent(root):
    require(shutil.which("nats-server") is not None, "nats-server is missing (scripts/setup.sh test installs it)")
    require(shutil.which("shellcheck") is not None, "shellcheck is missing (scripts/setup.sh test installs it)")
    check = subprocess.run(["shellcheck", "-x", SETUP, os.path.join(REPO, "scripts", "fleet-setup.sh")],
                           capture_output=True, text=True, cwd=REPO)
    assert check.returncode == 0, check.stdout
    base = tempfile.mkdtemp(prefix="nsgraph-fleet-setup-", dir="/var/tmp")
    os.chmod(base, 0o755)                  # nats-server runs as the nats user: it must reach its files
    port, cluster_port = free_ports(2)
    central, node = os.path.join(base, "central"), os.path.join(base, "node")
    env = dict(os.environ, NSGRAPH_VENV=os.path.dirname(os.path.dirname(sys.executable)),
               NSGRAPH_FLEET_DETACHED="1", NSGRAPH_FLEET_RUN_DIR=os.path.join(base, "run"),
               NSGRAPH_FLEET_LOG_DIR=base, NSGRAPH_FLEET_RETENTION="--max-age 1h --max-bytes 100M")
    try:
        server = subprocess.run(
            ["bash", SETUP, "fleet-server", "--member", "nats-1=127.0.0.1:%d:%d" % (port, cluster_port),
             "--store-dir", os.path.join(base, "js"), "--server-name", "localhost", "--node", "setup-node"],
            env=dict(env, NSGRAPH_FLEET_DIR=central), capture_output=True, text=True, timeout=600, cwd=REPO)
        assert server.returncode == 0, server.stdout + server.stderr
        assert "stream NSGRAPH created" in server.stdout + server.stderr
        assert "setup.sh fleet-agent" in server.stderr          # it says what to do on each node
        # The node gets its bundle copied over, as the README says.
        shipped = os.path.join(base, "shipped", "agent-setup-node")
        shutil.copytree(os.path.join(central, "agent-setup-node"), shipped)
        agent = subprocess.run(["bash", SETUP, "fleet-agent", shipped, "--heartbeat", "1", "--no-docker"],
                               env=dict(env, NSGRAPH_FLEET_DIR=node), capture_output=True, text=True, timeout=600,
                               cwd=REPO)
        assert agent.returncode == 0, agent.stdout + agent.stderr
        installed = os.path.join(node, "agent-setup-node")
        assert oct(os.stat(os.path.join(installed, "client.key")).st_mode & 0o777) == "0o600"

        def live():
            status = subprocess.run(NSGRAPH + ["fleet", "status", "--creds", os.path.join(central, "dashboard"),
                                               "--json"], capture_output=True, text=True, timeout=60, cwd=REPO)
            rows = [json.loads(line) for line in status.stdout.splitlines() if line.strip()]
            return any(r["node"] == "setup-node" and r["health"]["state"] == "live" for r in rows)
        wait_until(live, "the agent set up by setup.sh to be live", 180, step=1)
        with open(os.path.join(base, "nsgraph-agent.log")) as f:
            assert "running: streaming node setup-node's graph" in f.read()
    finally:
        _stop(os.path.join(base, "run", "agent.pid"))
        _stop(os.path.join(base, "run", "nats.pid"))
        out = os.path.join(REPO, "test-artifacts", "fleet")
        os.makedirs(out, exist_ok=True)
        for name in ("nsgraph-agent.log", "nsgraph-nats.log"):
            if os.path.exists(os.path.join(base, name)):
                shutil.copy(os.path.join(base, name), os.path.join(out, "setup-sh-" + name))
        shutil.rmtree(base, ignore_errors=True)
