"""The inside view of Docker containers, against docker inspect and the tools run inside.

A container from the local demo image (busybox) in its own cgroup namespace,
read with `nsgraph inspect --container NAME --json`; ground truth is docker
inspect and nsenter running hostname, ip, ps (the container's own busybox ps),
ipcs and cat inside it.  Then the seed: the hostname-ip-ps demo's container
stays after its output, and nsgraph's answers equal what it printed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid

import pytest

from tests.workloads import inside_truth as truth
from webapp.config import WebConfig
from webapp.demos import LAUNCHER_LABEL, DemoManager

from conftest import REPO

IMAGE = "nsgraph-demo:latest"
NAME = "nsgtest-inside-" + uuid.uuid4().hex[:6]


def inspect_cli(*args, expect: int = 0) -> list:
    proc = subprocess.run([sys.executable, "-m", "tracer.cli", "inspect", "--json"] + list(args), cwd=REPO,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=90)
    assert proc.returncode == expect, "nsgraph inspect %s: exit %d: %s" % (" ".join(args), proc.returncode, proc.stderr)
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def container(docker_client):
    docker_client.images.get(IMAGE)      # scripts/setup.sh test builds it (nsgraph demo-image)
    c = docker_client.containers.run(IMAGE, ["sleep", "300"], name=NAME, detach=True, cgroupns="private",
                                     labels={"org.nsgraph.test": "inside"})
    try:
        c.reload()
        pid = c.attrs["State"]["Pid"]
        # A System V segment and a queue in its ipc namespace, made with the host's ipcmk.
        truth.nsenter(pid, "-i", "ipcmk", "-M", "1024")
        truth.nsenter(pid, "-i", "ipcmk", "-Q")
        yield c, pid
    finally:
        c.remove(force=True)


def test_a_container_seen_from_inside(container):
    c, pid = container
    views = {v["type"]: v for v in inspect_cli("--container", NAME)}
    assert set(views) == {"user", "pid", "mnt", "net", "uts", "ipc", "cgroup", "time"}
    lsns = truth.lsns(pid)
    for t, v in views.items():
        assert v["state"] == "ok" and v["inode"] == lsns[t], v
    for t in ("pid", "mnt", "net", "uts", "ipc", "cgroup"):
        assert views[t]["label"] == "container " + NAME, views[t]
    assert views["user"]["label"] == views["time"]["label"] == "host"      # not unshared by Docker

    assert views["uts"]["view"]["hostname"] == c.attrs["Config"]["Hostname"] == truth.hostname(pid)

    network = c.attrs["NetworkSettings"]
    ip = truth.ip_addr(pid)
    links = {i["name"]: i for i in views["net"]["view"]["interfaces"]}
    assert set(links) == set(ip) == {"lo", "eth0"}
    assert links["eth0"]["mac"] == network["MacAddress"] == ip["eth0"]["mac"]
    assert ("inet", network["IPAddress"], network["IPPrefixLen"]) in \
        {(a["family"], a["address"], a["prefixlen"]) for a in links["eth0"]["addresses"]}
    for name in links:
        assert {(a["family"], a["address"], a["prefixlen"]) for a in links[name]["addresses"]} == ip[name]["addrs"]
    assert [(r["gateway"], r["dev"]) for r in views["net"]["view"]["default_route"]["ipv4"]] == \
        truth.default_routes(pid) == [(network["Gateway"], "eth0")]
    assert views["net"]["view"]["listening"]["total"] == truth.listening(pid) == 0

    # The container's own busybox ps, in its pid namespace and mount namespace.
    assert [(p["pid"], p["ppid"], p["comm"]) for p in views["pid"]["view"]["processes"]] == truth.ps(pid) \
        == [(1, 0, "sleep")]
    mounts = truth.mountinfo(pid)
    assert views["mnt"]["view"]["count"] == len(mounts)
    assert views["mnt"]["view"]["root"]["fstype"] == "overlay" == mounts[0][1]
    ipc = truth.ipcs(pid)
    assert [views["ipc"]["view"][k]["count"] for k in ("shared_memory", "semaphores", "message_queues")] == \
        [len(ipc[k]) for k in ("shared_memory", "semaphores", "message_queues")] == [1, 0, 1]
    mq = len(truth.nsenter(pid, "-m", "ls", "/dev/mqueue").split())
    assert views["ipc"]["view"]["posix_message_queues"]["count"] == mq
    inside = truth.cgroup_inside(pid)
    assert "0::/\n" in inside
    assert views["cgroup"]["view"]["inside"] == "/" and c.id in views["cgroup"]["view"]["root"]


def test_host_and_container_side_by_side(container):
    c, pid = container
    tables = {t["type"]: t for t in inspect_cli("--compare", "--host", "--container", NAME, "--type", "uts,net,pid")}
    assert list(tables) == ["uts", "net", "pid"]          # the order asked for: hostname; ip addr; ps aux
    hostname = next(r for r in tables["uts"]["rows"] if r["label"] == "hostname")
    assert hostname["values"] == [truth.hostname(os.getpid()), c.attrs["Config"]["Hostname"]]
    assert not hostname["same"]
    assert [col["label"] for col in tables["pid"]["columns"]] == ["host", "container " + NAME]
    count = next(r for r in tables["pid"]["rows"] if r["label"] == "processes")
    assert count["values"][1] == "1" and int(count["values"][0]) > 10


def test_the_hostname_ip_ps_demo_container_answers_the_same_from_outside(docker_client):
    manager = DemoManager(WebConfig(token="t" * 24, max_concurrent_demos=2, demo_rate=10),
                          myapp_name="nsgtest-inside-%s-myapp" % uuid.uuid4().hex[:6])
    try:
        run = manager.launch("hostname-ip-ps")
        deadline = time.time() + 90
        while manager.run_json(run.id)["status"] in ("queued", "running") and time.time() < deadline:
            time.sleep(0.1)
        result = manager.run_json(run.id)
        assert result["status"] == "succeeded", result
        output = result["output"]
        c = docker_client.containers.get(result["container"])
        assert c.status == "running"                    # it stays for the compare panel
        views = {v["type"]: v for v in inspect_cli("--container", result["container"], "--type", "uts,net,pid")}
        lines = output.splitlines()
        assert views["uts"]["view"]["hostname"] == lines[0]
        eth0 = next(i for i in views["net"]["view"]["interfaces"] if i["name"] == "eth0")
        printed = re.search(r"inet (\d+\.\d+\.\d+\.\d+)/(\d+)", output.split(": eth0@", 1)[1])
        assert (printed.group(1), int(printed.group(2))) in {(a["address"], a["prefixlen"]) for a in eth0["addresses"]}
        assert re.search(r"link/ether %s " % eth0["mac"], output)
        # ps aux ran before the shell exec'd sleep: pid 1 then was `sh -c ...`, now it is sleep.
        assert re.search(r"^\s*1\s+\S+\s.*sh -c", output, re.M)
        assert [(p["pid"], p["comm"]) for p in views["pid"]["view"]["processes"]] == \
            [(p, comm) for p, _pp, comm in truth.ps(c.attrs["State"]["Pid"])] == [(1, "sleep")]
    finally:
        manager.cleanup()
        manager.stop()
        for c in docker_client.containers.list(all=True, filters={"label": "%s=%s" % (LAUNCHER_LABEL, manager.instance)}):
            c.remove(force=True)
