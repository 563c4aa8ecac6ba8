"""The fleet's third kernel: an nsgraph agent inside the kernel-matrix VM (Debian 12, Linux 6.1).

scripts/vm-kernel-matrix.sh boots the cached image (the same one the kernel matrix
uses: nothing is added to it) with `--guest-mode fleet` and a restricted user-mode
network whose only ways out are qemu guestfwd rules to this host's loopback: the
three NATS servers and this test's control socket, each relayed by
tests/fleet/stdio_relay.py.  The guest gets the node's credentials bundle and the
pure-Python nats-py package of this venv on its project disk (.nsgraph-vm/), so the
image and its cache key stay as they are.

One boot serves every check: the guest (tests/fleet/vm_guest.py) starts and kills
its agent, runs workloads and reads its own /proc when this side asks.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time

from harness import REPO, VM_ADDRESS, free_ports

RELAY = os.path.join(REPO, "tests", "fleet", "stdio_relay.py")
SCRIPT = os.path.join(REPO, "scripts", "vm-kernel-matrix.sh")
BOOT_TIMEOUT_S = 25 * 60            # a cold cache builds the image first (~3-5 min), then TCG boots
LEG_TIMEOUT_S = 30 * 60


class FleetVM:
    def __init__(self, cluster, base: str, node: str):
        import nats
        self.node = node
        self.base = base
        self.results = os.path.join(base, "vm-results")
        self.guest = os.path.join(base, "vm-guest")
        self.log = os.path.join(base, "vm-leg.log")
        self.control_port = free_ports(1)[0]
        os.makedirs(self.guest)
        shutil.copytree(cluster.creds("agent-" + node), os.path.join(self.guest, "creds"))
        shutil.copytree(os.path.dirname(nats.__file__), os.path.join(self.guest, "site", "nats"),
                        ignore=shutil.ignore_patterns("__pycache__"))
        with open(os.path.join(self.guest, "fleet.json"), "w") as f:
            json.dump({"control": "%s:%d" % (VM_ADDRESS, self.control_port), "address": "10.0.2.15/24",
                       "nats": ",".join("tls://%s:%d" % (VM_ADDRESS, p) for p in cluster.client_ports)}, f)
        forwards = ["guestfwd=tcp:%s:%d-cmd:/usr/bin/python3 %s 127.0.0.1 %d" % (VM_ADDRESS, p, RELAY, p)
                    for p in cluster.client_ports + [self.control_port]]
        self.net = ",".join(["user", "restrict=on", "model=virtio-net-pci"] + forwards)
        self.proc = None
        self.sock = None
        self.reader = self.writer = None
        self.kernel = None
        self.summary = None

    def start(self) -> "FleetVM":
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", self.control_port))
        self.listener.listen(1)
        env = dict(os.environ, NSGRAPH_VM_TIMEOUT=str(LEG_TIMEOUT_S))
        self._out = open(self.log, "wb")
        self.proc = subprocess.Popen(["bash", SCRIPT, "--results-dir", self.results, "--guest-mode", "fleet",
                                      "--net", self.net, "--guest-files", self.guest],
                                     cwd=REPO, env=env, stdout=self._out, stderr=subprocess.STDOUT)
        self.started = time.monotonic()
        return self

    def connect(self, timeout: float = BOOT_TIMEOUT_S) -> str:
        """Wait for the guest to dial in; its kernel release."""
        deadline = time.monotonic() + timeout
        self.listener.settimeout(5)
        while self.sock is None:
            if self.proc.poll() is not None:
                raise AssertionError("the VM leg ended before the guest connected:\n" + self.tail())
            if time.monotonic() > deadline:
                raise AssertionError("the VM guest did not connect within %d s:\n%s" % (timeout, self.tail()))
            try:
                self.sock, _ = self.listener.accept()
            except socket.timeout:
                continue
        self.sock.settimeout(300)
        self.reader = self.sock.makefile("r", encoding="utf-8")
        self.writer = self.sock.makefile("w", encoding="utf-8")
        self.kernel = json.loads(self.reader.readline())["hello"]
        self.boot_s = time.monotonic() - self.started
        return self.kernel

    def call(self, cmd: str, **kw) -> dict:
        self.writer.write(json.dumps(dict(kw, cmd=cmd)) + "\n")
        self.writer.flush()
        line = self.reader.readline()
        if not line:
            raise AssertionError("the VM guest hung up during %s:\n%s" % (cmd, self.tail()))
        reply = json.loads(line)
        if not reply.get("ok", True):
            raise AssertionError("VM guest %s failed: %s" % (cmd, reply.get("error")))
        return reply

    def procns(self) -> dict:
        return {int(pid): info for pid, info in self.call("procns")["procs"].items()}

    def stop(self) -> dict:
        """Quit the guest, wait for the leg to end; its summary.json (once; later calls repeat it)."""
        if self.summary is not None:
            return self.summary
        if self.sock is not None:
            try:
                self.call("quit")
            except (AssertionError, OSError, ValueError):
                pass
            # the file objects hold the socket open too (the guest's relay waits for its close)
            for f in (f for f in (self.reader, self.writer, self.sock) if f is not None):
                try:
                    f.close()
                except (OSError, ValueError):
                    pass
        if self.proc is not None:
            try:
                self.proc.wait(180)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                self.proc.wait(60)
        self.listener.close()
        try:
            with open(os.path.join(self.results, "summary.json")) as f:
                self.summary = json.load(f)
        except (OSError, ValueError):
            self.summary = {"status": "error", "reason": "no summary.json:\n" + self.tail()}
        return self.summary

    def tail(self, n: int = 60) -> str:
        try:
            with open(self.log, encoding="utf-8", errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return "(no VM log)"
