"""Ground truth for the inside view: the real tools, run inside the namespace with nsenter.

Nothing here uses nsgraph code: every answer is what hostname, ip, ps, ipcs,
ss, cat run inside a process's namespaces print.  `nsenter -t PID -m` runs the
tool from the target's own file system (busybox in the demo image), the others
run the host's tools.
"""

from __future__ import annotations

import json
import os
import re
import subprocess

TOOL_TIMEOUT = 20


def nsenter(pid: int, flags: str, *argv: str) -> str:
    """stdout of argv run with nsenter -t pid and the given namespace flags ("-u", "-n", "-p -m")."""
    cmd = ["nsenter", "-t", str(pid)] + flags.split() + ["--"] + list(argv)
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=TOOL_TIMEOUT)
    assert proc.returncode == 0, "%s failed (%d): %s" % (" ".join(cmd), proc.returncode, proc.stderr)
    return proc.stdout


def hostname(pid: int) -> str:
    return nsenter(pid, "-u", "hostname").strip()


def domainname(pid: int) -> str:
    return nsenter(pid, "-u", "cat", "/proc/sys/kernel/domainname").strip()


def ip_addr(pid: int) -> dict:
    """ifname -> {"state", "mac", "flags", "addrs": {(family, address, prefixlen)}} from `ip -j addr`."""
    out = {}
    for link in json.loads(nsenter(pid, "-n", "ip", "-j", "addr")):
        out[link["ifname"]] = {
            "state": link.get("operstate"), "mac": link.get("address"), "flags": link.get("flags"),
            "addrs": {(a["family"], a["local"], a["prefixlen"]) for a in link.get("addr_info", [])
                      if a.get("family") in ("inet", "inet6")}}
    return out


def default_routes(pid: int, family: str = "-4") -> list:
    """[(gateway, dev)] of `ip -j route show default` in the main table."""
    routes = json.loads(nsenter(pid, "-n", "ip", "-j", family, "route", "show", "default") or "[]")
    return [(r.get("gateway"), r.get("dev")) for r in routes]


def listening(pid: int) -> int:
    """Listening TCP and unconnected UDP sockets, as `ss -H -ltun` lists them."""
    return len([ln for ln in nsenter(pid, "-n", "ss", "-H", "-ltun").splitlines() if ln.strip()])


def ps(pid: int) -> list:
    """[(pid, ppid, comm)] that `ps -e` inside the pid namespace lists, ps itself left out.

    -p -m: a process in the target's pid namespace, reading the /proc mounted for it."""
    rows = []
    for line in nsenter(pid, "-p -m", "ps", "-o", "pid,ppid,comm").splitlines()[1:]:
        cols = line.split(None, 2)
        if len(cols) == 3 and cols[0].isdigit():
            rows.append((int(cols[0]), int(cols[1]), cols[2].strip()))
    return [r for r in rows if r[2] != "ps"]


def ps_e(pid: int) -> list:
    """Like ps() with procps's `ps -e` (the host's ps: the target shares the host's file system)."""
    rows = []
    for line in nsenter(pid, "-p -m", "ps", "-e", "-o", "pid=,ppid=,comm=").splitlines():
        cols = line.split(None, 2)
        if len(cols) == 3:
            rows.append((int(cols[0]), int(cols[1]), cols[2].strip()))
    return [r for r in rows if r[2] != "ps"]


def ipcs(pid: int) -> dict:
    """{"shared_memory": [keys], "semaphores": [...], "message_queues": [...]} from `ipcs` inside."""
    out = {}
    for flag, key in (("-m", "shared_memory"), ("-s", "semaphores"), ("-q", "message_queues")):
        out[key] = re.findall(r"^(0x[0-9a-f]{8})\s", nsenter(pid, "-i", "ipcs", flag), re.M)
    return out


def mountinfo(pid: int) -> list:
    """(mount point, fstype) of every mount a process inside lists in /proc/self/mountinfo."""
    out = []
    for line in nsenter(pid, "-m -p", "cat", "/proc/self/mountinfo").splitlines():
        cols = line.split(" ")
        sep = cols.index("-")
        out.append((cols[4].replace("\\040", " "), cols[sep + 1]))
    return out


def cgroup_inside(pid: int) -> str:
    """/proc/<pid>/cgroup as a process in pid's cgroup namespace reads it."""
    return nsenter(pid, "-C", "cat", "/proc/%d/cgroup" % pid)


def timens_offsets(pid: int) -> str:
    return nsenter(pid, "-T", "cat", "/proc/self/timens_offsets")


def uptime(pid: int) -> float:
    return float(nsenter(pid, "-T", "cat", "/proc/uptime").split()[0])


def lsns(pid: int) -> dict:
    """type -> inode of pid's namespaces, from util-linux lsns."""
    data = json.loads(subprocess.run(["lsns", "-J", "-p", str(pid), "-o", "NS,TYPE"], stdout=subprocess.PIPE,
                                     text=True, check=True, timeout=TOOL_TIMEOUT).stdout)
    return {row["type"]: int(row["ns"]) for row in data["namespaces"]}


def children(pid: int) -> list:
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def ns_inode(pid: int, ns_type: str) -> int:
    return os.stat("/proc/%d/ns/%s" % (pid, ns_type)).st_ino
