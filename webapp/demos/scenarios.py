"""The demo allow-list: every scenario the dashboard can run, and the limits of every container.

Requests choose a scenario by id and nothing else: image, command, mounts and
flags all come from SCENARIOS below, and container_options() is the only place
a demo container's limits and labels are set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

LAUNCHER_LABEL = "org.nsgraph.launcher"      # value: the server instance id
SCENARIO_LABEL = "org.nsgraph.scenario"
RUN_LABEL = "org.nsgraph.run"
EXPIRES_LABEL = "org.nsgraph.expires"        # epoch seconds, honoured by any instance's reaper
DEMO_LABEL = "org.nsgraph.demo"              # also set by the demo image itself

DOCKER = "docker"
UTIL_LINUX = "util-linux"

READY = "__NSGRAPH_READY__"
UNSHARE_SLEEP_S = 120
LINGER_S = 120      # how long a lingering demo container stays for the compare panel


@dataclass(frozen=True)
class Scenario:
    id: str
    title: str
    description: str
    command: str                 # what the user sees ({image}, {myapp} filled in)
    kind: str                    # DOCKER or UTIL_LINUX
    argv: tuple = ()             # the container command or the host argv
    network: Optional[str] = None    # "myapp": share myapp's network namespace
    pid_mode: Optional[str] = None   # "host"
    exec_in_myapp: bool = False      # `docker exec` into myapp instead of a new container
    joins: bool = False              # it joins namespaces that exist (creates none of its own)
    linger: bool = False             # the container execs `sleep LINGER_S` after its output, to be inspected

    def public(self, image: str, myapp: str) -> dict:
        return {"id": self.id, "title": self.title,
                "description": self.description.format(image=image or "IMAGE", myapp=myapp),
                "command": self.shown(image, myapp), "kind": self.kind}

    def shown(self, image: str, myapp: str) -> str:
        return self.command.format(image=image or "IMAGE", myapp=myapp)


UNSHARE_SCRIPT = ("hostname nsgraph-uts-demo; hostname; ip -brief addr; "
                  "readlink /proc/self/ns/uts /proc/self/ns/net /proc/self/ns/pid; "
                  "echo %s; exec sleep %d" % (READY, UNSHARE_SLEEP_S))
NSENTER_SCRIPT = "hostname; ip -brief addr; readlink /proc/self/ns/uts /proc/self/ns/net /proc/self/ns/pid"
# The namespaces the unshare demo makes and the nsenter demo joins.
UNSHARE_TYPES = ("uts", "net", "pid")

SCENARIOS = {s.id: s for s in (
    Scenario("ls-ns", "A container's namespace links",
             "A new container gets its own cgroup, ipc, mnt, net, pid and uts namespaces: "
             "the inode numbers differ from the host's.",
             "docker run --rm {image} ls -la /proc/self/ns/", DOCKER,
             argv=("ls", "-la", "/proc/self/ns/")),
    Scenario("hostname-ip-ps", "Hostname, network and processes inside a container",
             "The uts namespace gives it its own hostname, the net namespace its own interfaces, "
             "the pid namespace a process list that starts at 1. The container then sleeps "
             "%d s so the compare panel can show the same three answers read from outside." % LINGER_S,
             'docker run --rm {image} sh -c "hostname; ip addr; ps aux; exec sleep %d"' % LINGER_S,
             DOCKER, argv=("sh", "-c", "hostname; ip addr; ps aux; exec sleep %d" % LINGER_S),
             linger=True),
    Scenario("exec-myapp", "docker exec into a running container",
             "Starts the long-running container {myapp} if needed, then `docker exec` joins its "
             "ipc, uts, net, pid and mnt namespaces (runc calls setns five times): the output is "
             "the container's own process list.",
             "docker exec {myapp} ps aux", DOCKER, argv=("ps", "aux"), exec_in_myapp=True, joins=True),
    Scenario("shared-net", "A container sharing another's network namespace",
             "--network container:{myapp} puts the new container in {myapp}'s net namespace: "
             "same interfaces and address, its own other namespaces.",
             'docker run --rm --network container:{myapp} {image} sh -c "ip addr; ls -la /proc/self/ns/"',
             DOCKER, argv=("sh", "-c", "ip addr; ls -la /proc/self/ns/"), network="myapp"),
    Scenario("host-pid", "A container in the host's PID namespace",
             "--pid host skips the new pid namespace: ps sees every process of the host.",
             'docker run --rm --pid host {image} sh -c "ls -la /proc/self/ns/; ps aux"',
             DOCKER, argv=("sh", "-c", "ls -la /proc/self/ns/; ps aux"), pid_mode="host"),
    Scenario("unshare-uts-net-pid", "unshare: new uts, net and pid namespaces without Docker",
             "util-linux unshare creates three namespaces and runs a shell in them that renames "
             "the host and then sleeps %d s, so nsenter can join it." % UNSHARE_SLEEP_S,
             "unshare --uts --net --pid --fork --kill-child sh -c '%s'" % UNSHARE_SCRIPT,
             UTIL_LINUX,
             argv=("unshare", "--uts", "--net", "--pid", "--fork", "--kill-child", "sh", "-c",
                   UNSHARE_SCRIPT)),
    Scenario("nsenter-join", "nsenter: join the unshare demo's namespaces",
             "nsenter calls setns on the uts, net and pid namespaces of the unshare demo's "
             "process (started first if none runs) and runs a shell there.",
             "nsenter --target PID --uts --net --pid sh -c '%s'" % NSENTER_SCRIPT, UTIL_LINUX,
             argv=("sh", "-c", NSENTER_SCRIPT), joins=True),
)}

# The long-running container the exec and shared-net demos use; never in SCENARIOS.
MYAPP = Scenario("myapp", "", "", "", DOCKER)


def nsenter_argv(target: int) -> list:
    return (["nsenter", "--target", str(target)] + ["--%s" % t for t in UNSHARE_TYPES]
            + list(SCENARIOS["nsenter-join"].argv))


def nsenter_shown(target: int) -> str:
    return "nsenter --target %d %s sh -c '%s'" % (target, " ".join("--" + t for t in UNSHARE_TYPES),
                                                 NSENTER_SCRIPT)


def container_options(scenario: Scenario, *, instance: str, run_id: str, expires: float,
                      myapp_container: Optional[str] = None) -> dict:
    """Docker SDK create() keyword arguments: the only place limits are set."""
    opts = {
        "labels": {LAUNCHER_LABEL: instance, SCENARIO_LABEL: scenario.id, RUN_LABEL: run_id,
                   EXPIRES_LABEL: str(int(expires)), DEMO_LABEL: "1"},
        "mem_limit": "64m",
        "memswap_limit": "64m",
        "pids_limit": 64,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "read_only": True,
        "nano_cpus": 500_000_000,
        "detach": True,
    }
    if scenario.network == "myapp":
        opts["network_mode"] = "container:%s" % myapp_container
    if scenario.pid_mode == "host":
        opts["pid_mode"] = "host"
    return opts
