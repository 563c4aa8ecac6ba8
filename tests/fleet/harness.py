"""The fleet tests' real components, started as on a fresh machine: a three-server NATS
JetStream cluster on loopback ports (TLS, per-node credentials, from `nsgraph fleet
init`), nsgraph agents, and the fleet dashboard (`nsgraph serve --fleet`).

Every process is started here and stopped by its own pid; every wait is bounded.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NSGRAPH = [sys.executable, "-m", "tracer.cli"]
VM_ADDRESS = "10.0.2.100"          # where the VM guest finds the forwarded services


def free_ports(n: int) -> list:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def wait_until(predicate, what: str, timeout: float, step: float = 0.25):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(step)
    raise AssertionError("timed out after %.0f s waiting for %s (last: %r)" % (timeout, what, last))


def run_nsgraph(*args, timeout=120, check=True):
    proc = subprocess.run(NSGRAPH + list(args), cwd=REPO, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError("nsgraph %s failed (%d):\n%s%s" % (" ".join(args), proc.returncode,
                                                               proc.stdout, proc.stderr))
    return proc


class Process:
    """A child process with its output in a file, stopped by its own pid."""

    def __init__(self, name: str, argv: list, log_dir: str, env=None):
        self.name = name
        self.argv = argv
        self.log = os.path.join(log_dir, name + ".log")
        self.env = env
        self.proc = None

    def start(self) -> "Process":
        with open(self.log, "ab") as out:
            out.write(("\n--- start %s: %s\n" % (time.strftime("%T"), " ".join(self.argv))).encode())
        self._out = open(self.log, "ab")
        self.proc = subprocess.Popen(self.argv, cwd=REPO, stdout=self._out, stderr=subprocess.STDOUT,
                                     env=self.env)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig=signal.SIGTERM, wait: float = 20.0):
        if not self.alive():
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(wait)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)

    def kill(self):
        return self.signal(signal.SIGKILL)

    def output(self) -> str:
        with open(self.log, encoding="utf-8", errors="replace") as f:
            return f.read()


class Cluster:
    """Three nats-server processes routed to each other, made by `nsgraph fleet init`."""

    def __init__(self, base: str, nodes: list):
        self.base = base
        self.etc = os.path.join(base, "etc")
        ports = free_ports(9)
        self.client_ports, self.monitor_ports = ports[:3], ports[6:]
        members = []
        for i, (cport, rport, mport) in enumerate(zip(ports[:3], ports[3:6], ports[6:]), 1):
            members += ["--member", "n%d=127.0.0.1:%d:%d:%d" % (i, cport, rport, mport)]
        run_nsgraph("fleet", "init", "--dir", self.etc, "--store-dir", os.path.join(base, "js"),
                    "--server-name", "localhost", "--server-ip", "127.0.0.1", "--server-ip", VM_ADDRESS,
                    *members, *[a for n in nodes for a in ("--node", n)])
        self.servers = [Process("nats-n%d" % i, ["nats-server", "-c", os.path.join(self.etc, "nats-server-n%d.conf" % i)],
                                base) for i in (1, 2, 3)]
        self.urls = ",".join("tls://127.0.0.1:%d" % p for p in self.client_ports)

    def creds(self, identity: str) -> str:
        return os.path.join(self.etc, identity)

    def start(self, i=None) -> None:
        for index in ([i] if i is not None else range(3)):
            self.servers[index].start()
        for index in ([i] if i is not None else range(3)):
            port = self.client_ports[index]
            wait_until(lambda: _accepts(port), "nats-server n%d on port %d" % (index + 1, port), 30)

    def kill(self, i: int, sig=signal.SIGKILL) -> None:
        self.servers[i].signal(sig)

    def stop(self) -> None:
        for server in self.servers:
            server.signal(signal.SIGTERM)

    def index_of(self, netloc: str) -> int:
        return self.client_ports.index(int(netloc.rsplit(":", 1)[1]))

    def connections(self, i: int, name: str) -> list:
        """Server i's client connections named `name`, from its own monitoring endpoint (/connz)."""
        url = "http://127.0.0.1:%d/connz?limit=4096" % self.monitor_ports[i]
        with urllib.request.urlopen(url, timeout=5) as resp:
            return [c for c in json.loads(resp.read()).get("connections") or [] if c.get("name") == name]

    def serving(self, name: str) -> dict:
        """{server index: its connection} for every running server holding a client named `name`."""
        out = {}
        for i, server in enumerate(self.servers):
            if server.alive():
                for conn in self.connections(i, name):
                    out[i] = conn
        return out

    def make_streams(self) -> None:
        run_nsgraph("fleet", "streams", "--creds", self.creds("admin"), "--nats", self.urls,
                    "--replicas", "3", "--max-age", "1h", "--max-bytes", "2G", timeout=120)


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


class Agent(Process):
    def __init__(self, cluster: Cluster, node: str, log_dir: str, creds: str = None, extra=()):
        argv = NSGRAPH + ["agent", "--creds", creds or cluster.creds("agent-" + node), "--nats", cluster.urls,
                          "--heartbeat", "1", "--checkpoint-interval", "15", *extra]
        super().__init__("agent-" + node, argv, log_dir)
        self.node = node


class Dashboard(Process):
    def __init__(self, cluster: Cluster, log_dir: str):
        self.port = free_ports(1)[0]
        self.token_file = os.path.join(log_dir, "dashboard.token")
        argv = NSGRAPH + ["serve", "--fleet", cluster.urls, "--fleet-creds", cluster.creds("dashboard"),
                          "--port", str(self.port), "--token-file", self.token_file, "--offline-after", "6"]
        super().__init__("dashboard", argv, log_dir)

    def start(self) -> "Dashboard":
        super().start()
        wait_until(lambda: os.path.exists(self.token_file) and _accepts(self.port), "the dashboard to listen", 60)
        with open(self.token_file) as f:
            self.token = f.read().strip()
        return self

    def get(self, path: str, raw: bool = False):
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.port, path),
                                     headers={"Authorization": "Bearer " + self.token})
        with urllib.request.urlopen(req, timeout=30) as resp:
            body = resp.read()
        return body.decode() if raw else json.loads(body)

    def overview(self) -> dict:
        return self.get("/api/fleet/overview")

    def node(self, name: str):
        return next((n for n in self.overview()["nodes"] if n["node"] == name), None)

    def graph(self, name: str):
        try:
            return self.get("/node/%s/api/graph" % name)
        except urllib.error.HTTPError:
            return None
