"""A libvirt of the test's own, for a real `vagrant up` (tests/infra/test_vagrant_up.py).

Every address involved belongs to the test: a network namespace `nsgtest-vagrant-<pid>`
holds libvirtd, the management network vagrant-libvirt creates (its bridge, dnsmasq,
NAT rules), the VM's tap device, and the `ssh -L` port forward Vagrant starts, which
binds that namespace's 127.0.0.1.  libvirtd also gets a mount namespace in which its
state, configuration, run and image folders are the sandbox's own (bind mounts), so
the domain, its volumes and the network live and die with the sandbox and the
machine's own libvirt (if any) is neither seen nor touched.

Commands run inside with `sandbox.run(...)` (nsenter into both namespaces).  A
sandbox whose test was killed is reaped by the next one: its processes are exactly
those in its network namespace (`ip netns pids`).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

PREFIX = "nsgtest-vagrant-"
STATE_ROOT = "/var/tmp"
# libvirtd's folders that the sandbox replaces, and what each bind mount is called.
LIBVIRT_DIRS = {"etc": "/etc/libvirt", "lib": "/var/lib/libvirt", "run": "/run/libvirt",
                "log": "/var/log/libvirt", "cache": "/var/cache/libvirt"}
# qemu.conf for a daemon that is not the machine's: no virtlogd (no systemd to start
# it), no cgroup placement or security labels (the host's cgroup v1 and AppArmor
# setup are the machine's business), qemu as root so it reads the box's kernel.
QEMU_CONF = """
stdio_handler = "file"
cgroup_controllers = [ ]
security_driver = "none"
user = "root"
group = "root"
dynamic_ownership = 0
"""


def _alive(pid: int) -> bool:
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _netns_pids(ns: str) -> list[int]:
    proc = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
    return [int(p) for p in proc.stdout.split() if p.isdigit()]


def _kill_all(ns: str, timeout: float = 20.0) -> None:
    """Every process in the namespace: TERM, then KILL after timeout seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in _netns_pids(ns):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(_alive(p) for p in _netns_pids(ns)):
            time.sleep(0.2)


def _remove(ns: str) -> None:
    _kill_all(ns)
    subprocess.run(["ip", "netns", "delete", ns], capture_output=True)
    shutil.rmtree(os.path.join(STATE_ROOT, ns), ignore_errors=True)


def reap_stale() -> list[str]:
    """Removes the sandboxes of test runs that are gone; returns their names."""
    proc = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    names = {line.split()[0] for line in proc.stdout.splitlines() if line.startswith(PREFIX)}
    names |= {d for d in os.listdir(STATE_ROOT) if d.startswith(PREFIX)}
    reaped = []
    for ns in sorted(names):
        owner = ns[len(PREFIX):]
        if owner.isdigit() and _alive(int(owner)) and int(owner) != os.getpid():
            continue        # another test run, still going
        _remove(ns)
        reaped.append(ns)
    return reaped


class Sandbox:
    def __init__(self):
        self.ns = "%s%d" % (PREFIX, os.getpid())
        self.root = os.path.join(STATE_ROOT, self.ns)
        self.libvirtd: subprocess.Popen | None = None
        self.log = os.path.join(self.root, "libvirtd.log")
        self.reaped: list[str] = []

    def start(self, wait: float = 90.0) -> None:
        self.reaped = reap_stale()
        os.makedirs(self.root)
        for name, system_dir in LIBVIRT_DIRS.items():
            os.makedirs(system_dir, exist_ok=True)      # the bind mounts' targets
            if name == "etc":
                shutil.copytree(system_dir, os.path.join(self.root, name), symlinks=True)
            else:
                os.makedirs(os.path.join(self.root, name))
        os.makedirs(os.path.join(self.root, "lib", "images"))
        # No network of the package's (its "default" would start a second dnsmasq): the
        # only network is the one vagrant-libvirt makes, so "none left" means something.
        shutil.rmtree(os.path.join(self.root, "etc", "qemu", "networks"), ignore_errors=True)
        os.makedirs(os.path.join(self.root, "etc", "qemu", "networks", "autostart"))
        with open(os.path.join(self.root, "etc", "qemu.conf"), "a") as f:
            f.write(QEMU_CONF)
        subprocess.run(["ip", "netns", "add", self.ns], check=True)
        subprocess.run(["ip", "netns", "exec", self.ns, "ip", "link", "set", "lo", "up"], check=True)
        binds = " && ".join("mount --bind %s %s" % (os.path.join(self.root, name), target)
                            for name, target in LIBVIRT_DIRS.items())
        # A private mount namespace inside the network namespace; libvirtd and every
        # qemu it starts run at the lowest CPU and I/O priority (a shared machine).
        script = "%s && exec nice -n 19 ionice -c3 libvirtd --pid-file %s/libvirtd.pid" % (binds, self.root)
        with open(self.log, "wb") as log:
            self.libvirtd = subprocess.Popen(
                ["ip", "netns", "exec", self.ns, "unshare", "--mount", "--propagation", "private",
                 "sh", "-c", script], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.libvirtd.poll() is not None:
                raise RuntimeError("libvirtd exited at once (status %s): %s" % (self.libvirtd.returncode, self.tail_log()))
            if self.run(["virsh", "-q", "-c", "qemu:///system", "version"], timeout=30).returncode == 0:
                return
            time.sleep(1)
        raise RuntimeError("libvirtd did not answer within %.0f s: %s" % (wait, self.tail_log()))

    def tail_log(self, n: int = 20) -> str:
        try:
            with open(self.log, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return "(no log)"

    def enter(self) -> list[str]:
        """The argv prefix that runs a command inside both of the sandbox's namespaces."""
        assert self.libvirtd is not None and self.libvirtd.poll() is None, "the sandbox's libvirtd is not running"
        # unshare exec'd libvirtd, so the Popen pid is libvirtd in the private mount namespace.
        return ["nsenter", "--mount=/proc/%d/ns/mnt" % self.libvirtd.pid, "--net=/run/netns/%s" % self.ns]

    def run(self, argv, timeout: float, cwd: str | None = None, **kw) -> subprocess.CompletedProcess:
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        # Entering a mount namespace resets the working directory: name it again.
        wd = ["--wd=" + (cwd or os.getcwd())]
        return subprocess.run(self.enter() + wd + list(argv), timeout=timeout, **kw)

    def virsh(self, *args: str) -> list[str]:
        proc = self.run(["virsh", "-q", "-c", "qemu:///system", *args], timeout=60)
        assert proc.returncode == 0, "virsh %s: %s" % (" ".join(args), proc.stderr)
        return [line for line in proc.stdout.splitlines() if line.strip()]

    def stop(self) -> None:
        _remove(self.ns)
        if self.libvirtd is not None:
            try:
                self.libvirtd.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
