"""The fleet tests' side inside the kernel-matrix VM (Debian 12, Linux 6.1).

scripts/vm/guest-run.sh runs this as the VM's work when the host asked for
--guest-mode fleet.  It brings up the network qemu gives (user mode, restricted: the
only addresses that lead anywhere are the host's forwarded loopback services), dials
the host test's control socket and does what it is told, one JSON line per command
and per answer: start or kill the nsgraph agent, run a workload, read /proc.
Standard library only, besides nsgraph itself and nats-py, which the host hands in
under .nsgraph-vm/site.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT = os.path.dirname(os.path.dirname(HERE))
EXTRA = os.path.join(PROJECT, ".nsgraph-vm")
sys.path.insert(0, HERE)

import procns  # noqa: E402
import workload  # noqa: E402


def say(text: str) -> None:
    print("NSGRAPH-VM-FLEET: %s" % text, flush=True)


def network(address: str) -> None:
    for argv in (["modprobe", "virtio_net"], ["ip", "link", "set", "eth0", "up"],
                 ["ip", "addr", "add", address, "dev", "eth0"]):
        proc = subprocess.run(argv, capture_output=True, text=True)
        if proc.returncode != 0:
            say("%s: %s" % (" ".join(argv), proc.stderr.strip()))


def dial(host: str, port: int, limit_s: float = 120.0) -> socket.socket:
    deadline = time.monotonic() + limit_s
    while True:
        try:
            return socket.create_connection((host, port), timeout=10)
        except OSError as exc:
            if time.monotonic() > deadline:
                raise SystemExit("cannot reach the host's control socket %s:%d: %s" % (host, port, exc))
            time.sleep(1)


class Guest:
    def __init__(self, config: dict):
        self.config = config
        self.agent = None
        self.log_path = "/tmp/nsgraph-agent.log"
        self.held = []

    def start_agent(self, args=()):
        if self.agent is not None and self.agent.poll() is None:
            return {"ok": False, "error": "the agent is already running"}
        env = dict(os.environ, PYTHONPATH="%s:%s" % (PROJECT, os.path.join(EXTRA, "site")))
        argv = [sys.executable, "-m", "tracer.cli", "agent", "--creds", os.path.join(EXTRA, "creds"),
                "--nats", self.config["nats"], "--no-docker"] + [str(a) for a in args]
        log = open(self.log_path, "ab")
        self.agent = subprocess.Popen(argv, cwd=PROJECT, env=env, stdout=log, stderr=subprocess.STDOUT)
        return {"ok": True, "pid": self.agent.pid}

    def stop_agent(self, sig="TERM", wait_s=30):
        if self.agent is None or self.agent.poll() is not None:
            return {"ok": True, "rc": None if self.agent is None else self.agent.returncode}
        self.agent.send_signal(getattr(signal, "SIG" + sig))
        try:
            rc = self.agent.wait(wait_s)
        except subprocess.TimeoutExpired:
            self.agent.kill()
            rc = self.agent.wait()
        return {"ok": True, "rc": rc}

    def agent_log(self, lines=40):
        try:
            with open(self.log_path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except OSError:
            text = ""
        alive = self.agent is not None and self.agent.poll() is None
        return {"ok": True, "alive": alive, "log": "\n".join(text.splitlines()[-lines:])}

    def burst(self, n, pause_s=0.0):
        return dict(workload.burst(int(n), pause_s=float(pause_s)), ok=True)

    def hold(self, k, seconds):
        procs = workload.holders(int(k), float(seconds))
        self.held += procs
        time.sleep(0.5)
        return {"ok": True, "pids": [p.pid for p in procs]}

    def join(self, pid):
        return {"ok": True, "rc": workload.join(int(pid))}

    def release(self):
        workload.stop(self.held)
        self.held = []
        return {"ok": True}

    def procns(self):
        return {"ok": True, "procs": procns.snapshot(), "time": time.time()}

    def kernel(self):
        return {"ok": True, "release": os.uname().release}


def main() -> int:
    with open(os.path.join(EXTRA, "fleet.json")) as f:
        config = json.load(f)
    network(config.get("address", "10.0.2.15/24"))
    host, port = config["control"].rsplit(":", 1)
    sock = dial(host, int(port))
    sock.settimeout(None)           # the host test asks when it is ready, not on a schedule
    say("connected to the host's control socket")
    guest = Guest(config)
    reader = sock.makefile("r", encoding="utf-8")
    writer = sock.makefile("w", encoding="utf-8")
    writer.write(json.dumps({"hello": os.uname().release}) + "\n")
    writer.flush()
    commands = {"start_agent": guest.start_agent, "stop_agent": guest.stop_agent, "agent_log": guest.agent_log,
                "burst": guest.burst, "hold": guest.hold, "join": guest.join, "release": guest.release,
                "procns": guest.procns, "kernel": guest.kernel}
    for line in reader:
        request = json.loads(line)
        name = request.pop("cmd")
        if name == "quit":
            guest.release()
            result = guest.stop_agent("TERM")
            writer.write(json.dumps(result) + "\n")
            writer.flush()
            say("agent log:\n" + guest.agent_log(200)["log"])
            return 0
        try:
            result = commands[name](**request)
        except Exception as exc:       # the host test reports it
            result = {"ok": False, "error": "%s: %s" % (type(exc).__name__, exc)}
        writer.write(json.dumps(result) + "\n")
        writer.flush()
    say("the host closed the control socket")
    guest.release()
    guest.stop_agent("TERM")
    return 1


if __name__ == "__main__":
    sys.exit(main())
