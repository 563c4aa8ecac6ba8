"""Regenerate joins_recorded.json: real `nsgraph trace --json --procs` output of
setns users (docker exec, nsenter, failing and interleaved setns callers), trimmed
to the processes involved, with /proc and Docker ground truth, for tests/unit/test_joins.py.

    sudo .venv/bin/python tests/data/record_joins.py

Needs root, dockerd and the demo image (`nsgraph demo-image`).  Creates and
removes a container and a netns named nsgtest-joins-<random>.
"""

import json
import os
import signal
import subprocess
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
NSGRAPH = os.path.join(REPO, ".venv", "bin", "nsgraph")
TYPES = ("mnt", "pid", "net", "uts", "ipc", "user", "cgroup", "time")

# The helpers below print {"pids": [...]} so the recorder knows whose events to keep.
SETNS = r"""
import ctypes, json, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
NEW = {"ipc": 0x08000000, "uts": 0x04000000, "net": 0x40000000, "pid": 0x20000000, "mnt": 0x00020000}
def setns(fd, nstype):
    if libc.setns(fd, nstype) != 0:
        return -ctypes.get_errno()
    return 0
def fd(path):
    return os.open(path, os.O_RDONLY)
"""

# setns calls failing with EPERM, EBADF and EINVAL between successful ones, then exec.
FAILING = SETNS + r"""
target = sys.argv[1]
ipc, uts, net = (fd("/proc/%s/ns/%s" % (target, t)) for t in ("ipc", "uts", "net"))
results = [setns(ipc, NEW["ipc"])]
os.seteuid(65534)                        # effective capabilities dropped: EPERM
results.append(setns(uts, NEW["uts"]))
os.seteuid(0)
results.append(setns(999, 0))            # not an open fd: EBADF
results.append(setns(uts, NEW["net"]))   # a uts fd named as net: EINVAL
results += [setns(uts, NEW["uts"]), setns(net, NEW["net"])]
print(json.dumps({"pids": [os.getpid()], "results": results}), flush=True)
os.execvp("hostname", ["hostname"])
"""

# Two processes joining in lockstep, so their setns calls interleave in the kernel.
INTERLEAVED = SETNS + r"""
target, netns = sys.argv[1], sys.argv[2]
def child(steps, argv, turn_r, turn_w):
    for step in steps:
        os.read(turn_r, 1)
        assert step() == 0
        os.write(turn_w, b"x")
    os.read(turn_r, 1)
    os.execvp(argv[0], argv)
a_r, a_w = os.pipe()        # the parent's turn signals to a
b_r, b_w = os.pipe()
done_r, done_w = os.pipe()
uts, ipc = fd("/proc/%s/ns/uts" % target), fd("/proc/%s/ns/ipc" % target)
net = fd(netns)
a = os.fork()
if a == 0:
    child([lambda: setns(uts, NEW["uts"]), lambda: setns(ipc, NEW["ipc"])], ["hostname"], a_r, done_w)
b = os.fork()
if b == 0:
    child([lambda: setns(net, NEW["net"]), lambda: setns(uts, NEW["uts"])], ["ip", "-brief", "link"], b_r, done_w)
for turn in (a_w, b_w, a_w, b_w):        # a, b, a, b
    os.write(turn, b"x")
    os.read(done_r, 1)
os.write(a_w, b"x")
time.sleep(0.05)
os.write(b_w, b"x")
os.waitpid(a, 0)
os.waitpid(b, 0)
print(json.dumps({"pids": [a, b]}), flush=True)
"""

# A setns burst that never execs: the session must close after the quiet gap.
NO_EXEC = SETNS + r"""
target = sys.argv[1]
net, uts = fd("/proc/%s/ns/net" % target), fd("/proc/%s/ns/uts" % target)
assert setns(net, NEW["net"]) == 0 and setns(uts, NEW["uts"]) == 0
print(json.dumps({"pids": [os.getpid()]}), flush=True)
time.sleep(1.6)
"""


def ns_inodes(pid):
    out = {}
    for t in TYPES:
        try:
            out[t] = os.stat("/proc/%s/ns/%s" % (pid, t)).st_ino
        except OSError:
            pass
    return out


def run_helper(code, *args):
    out = subprocess.run([sys.executable, "-c", code, *map(str, args)], check=True,
                         capture_output=True, text=True).stdout
    return json.loads([x for x in out.splitlines() if x.startswith('{"pids"')][0])


def lineage(events, roots):
    """roots and every process they (and their children) cloned."""
    pids = set(roots)
    for e in events:
        if e["pid"] in pids and e.get("child_pid"):
            pids.add(e["child_pid"])
    return pids


def trim(events, pids):
    return [e for e in events if e["pid"] in pids or e.get("child_pid") in pids]


def dump(truth) -> str:
    """Indented JSON with one line per event (small and diffable)."""
    lines = {}
    for sc in truth["scenarios"].values():
        for i, e in enumerate(sc["events"]):
            key = "@event%d@" % len(lines)
            lines[key] = json.dumps(e, sort_keys=True, separators=(",", ":"))
            sc["events"][i] = key
    text = json.dumps(truth, indent=1, sort_keys=True)
    for key, line in lines.items():
        text = text.replace('"%s"' % key, line)
    return text


def main():
    from tracer.containers.docker_client import WORK_TIMEOUT, docker_client
    from webapp.demos.image import ensure_demo_image
    client = docker_client(WORK_TIMEOUT)
    image = ensure_demo_image(client)
    name = "nsgtest-joins-%s" % uuid.uuid4().hex[:8]
    netns = name + "-x"
    subprocess.run(["docker", "run", "-d", "--name", name, image, "sleep", "300"], check=True,
                   capture_output=True)
    subprocess.run(["ip", "netns", "add", netns], check=True)
    trace = None
    t0 = time.time()
    try:
        info = client.containers.get(name).attrs
        init = info["State"]["Pid"]
        truth = {"kernel": os.uname().release,
                 "runc": subprocess.run(["runc", "--version"], capture_output=True, text=True).stdout.split("\n")[0],
                 "nsenter": subprocess.run(["nsenter", "--version"], capture_output=True, text=True).stdout.strip(),
                 "container": {"id": info["Id"], "name": name, "image": image, "pid": init,
                               "cgroup": open("/proc/%d/cgroup" % init).read().strip(),
                               "ns": ns_inodes(init)},
                 "host_ns": ns_inodes("self"),
                 "netns": {"path": "/run/netns/" + netns, "inode": os.stat("/run/netns/" + netns).st_ino},
                 "nsfs_dev": os.stat("/proc/self/ns/net").st_dev}
        time.sleep(1.0)
        trace = subprocess.Popen([NSGRAPH, "trace", "--json", "--procs"], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        line = trace.stderr.readline()
        assert "Tracing" in line, line + trace.stderr.read()
        time.sleep(0.5)
        scenarios = {}
        subprocess.run(["docker", "exec", name, "ps", "aux"], check=True, capture_output=True)
        scenarios["docker_exec"] = {"argv": ["docker", "exec", name, "ps", "aux"], "command": "ps aux"}
        time.sleep(1.2)
        p = subprocess.run(["nsenter", "-t", str(init), "-a", "hostname"], check=True, capture_output=True,
                           text=True)
        scenarios["nsenter_all"] = {"argv": ["nsenter", "-t", "PID", "-a", "hostname"], "roots": [],
                                    "command": "hostname", "output": p.stdout.strip()}
        time.sleep(1.2)
        scenarios["nsenter_netns"] = {"argv": ["nsenter", "--net=/run/netns/" + netns, "ip", "-brief", "link"],
                                      "command": "ip -brief link"}
        subprocess.run(scenarios["nsenter_netns"]["argv"], check=True, capture_output=True)
        time.sleep(1.2)
        out = run_helper(FAILING, init)
        scenarios["failing_setns"] = {"roots": out["pids"], "results": out["results"], "command": "hostname"}
        time.sleep(1.2)
        out = run_helper(INTERLEAVED, init, "/run/netns/" + netns)
        scenarios["interleaved"] = {"roots": out["pids"], "commands": ["hostname", "ip -brief link"]}
        time.sleep(1.2)
        out = run_helper(NO_EXEC, init)
        scenarios["no_exec"] = {"roots": out["pids"]}
        time.sleep(0.5)
    finally:
        if trace is not None:
            trace.send_signal(signal.SIGINT)
            stdout, _ = trace.communicate(timeout=10)
        hints = subprocess.run(["docker", "events", "--since", "%.3f" % t0, "--until", "%.3f" % time.time(),
                                "--filter", "container=" + name, "--filter", "event=exec_start",
                                "--format", "{{json .}}"], capture_output=True, text=True).stdout
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
        subprocess.run(["ip", "netns", "del", netns], capture_output=True)
    events = [json.loads(x) for x in stdout.splitlines() if x.startswith("{")]
    truth["docker_events"] = [json.loads(x) for x in hints.splitlines() if x.strip()]
    # Roots the helpers could not report: runc's child (it joins our container's uts
    # while docker exec ran) and the nsenter processes (found by comm and target).
    c_uts = truth["container"]["ns"]["uts"]
    runc = [e["pid"] for e in events if e["kind"] == "setns" and e["comm"] == "runc:[1:CHILD]"
            and e["ns"].get("uts") == c_uts]
    scenarios["docker_exec"]["roots"] = sorted(set(runc))
    nsenter = [e for e in events if e["kind"] == "setns" and e["comm"] == "nsenter" and e["ret"] == 0]
    scenarios["nsenter_all"]["roots"] = sorted({e["pid"] for e in nsenter if e["ns"].get("uts") == c_uts})
    scenarios["nsenter_netns"]["roots"] = sorted({e["pid"] for e in nsenter
                                                   if e["ns"].get("net") == truth["netns"]["inode"]
                                                   and e["pid"] not in scenarios["nsenter_all"]["roots"]})
    for key, sc in scenarios.items():
        assert sc["roots"], "no events found for %s" % key
        sc["events"] = trim(events, lineage(events, sc["roots"]))
    truth["scenarios"] = scenarios
    truth["container"]["cgroup"] = [x for x in truth["container"]["cgroup"].splitlines() if x.startswith("0::")][0]
    with open(os.path.join(HERE, "joins_recorded.json"), "w") as f:
        f.write(dump(truth) + "\n")
    print("recorded %s" % {k: len(v["events"]) for k, v in scenarios.items()})


if __name__ == "__main__":
    sys.path.insert(0, REPO)
    main()
