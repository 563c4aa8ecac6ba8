"""A small, real world for the web tests: no stand-ins for the core.

The graph is a real `tracer.graph.model.NamespaceGraph`, loaded from a synthetic
/proc snapshot (`tracer.host.snapshot.Snapshot`) through the same ops the
service uses, with the Docker catalog's record for the container applied as the
service applies it, and real tracer `Event`s for a `docker exec` join and for
every later change.  It sits in a real `tracer.service.NsgraphService`
(`use_graph`: the service without probes), so the web layer sees exactly what
`nsgraph serve` gives it: `test_exports` asserts the DOT production emits.

The world, by pid:
  1     init          the host's namespaces
  50    sh            the host's namespaces; the parent of every new namespace
  7052  sleep         container "myapp" (its own mnt, uts, ipc, pid and net)
  8100  runc:[1:CHILD] `docker exec myapp ps`: setns into myapp's five, then
  8101  ps            clones the process that execs /bin/ps (join session 1)

Shared by tests/unit (API, SSE, security), tests/kernel and tests/docker.
"""

from __future__ import annotations

import collections
import itertools
import socket
import threading
import time

from werkzeug.serving import make_server

from tracer import nstypes
from tracer.containers.cgroups import parse_cgroup
from tracer.containers.records import Container, container_from_ref
from tracer.events.event import Event
from tracer.graph.model import NamespaceGraph
from tracer.graph.schema import namespace_id
from tracer.host.snapshot import NsInfo, ProcInfo, Snapshot
from tracer.service import NsgraphService
from webapp import create_app
from webapp.config import WebConfig

TOKEN = "test-token-0123456789abcdef"
DEV = 4

HOST_INODES = {"user": 4026531837, "pid": 4026531836, "mnt": 4026531841, "net": 4026531840,
               "uts": 4026531838, "ipc": 4026531839, "cgroup": 4026531835, "time": 4026531834}
MYAPP_INODES = {"mnt": 4026532170, "uts": 4026532171, "ipc": 4026532172, "pid": 4026532173,
                "net": 4026532177}
MYAPP_ID = "3f9a" * 16
MYAPP_PID = 7052
MYAPP_CGROUP = "0::/system.slice/docker-%s.scope" % MYAPP_ID
EXEC_PID, EXEC_CHILD = 8100, 8101


def ns_id(ns_type: str, inode: int, generation: int = 0) -> str:
    return namespace_id(ns_type, DEV, inode, generation)


def slots_of(inodes: dict) -> dict:
    """slot -> inode for a process whose namespaces (and children's) are `inodes`."""
    out = {}
    for slot in nstypes.NS_SLOTS:
        out[slot] = inodes[nstypes.SLOT_TYPE[slot]]
    return out


HOST_SLOTS = slots_of(HOST_INODES)
MYAPP_SLOTS = slots_of({**HOST_INODES, **MYAPP_INODES})
HOST_NS = {t: ns_id(t, i) for t, i in HOST_INODES.items()}
MYAPP_NS = {t: ns_id(t, i) for t, i in MYAPP_INODES.items()}


def snapshot(taken_at: float) -> Snapshot:
    """What take_snapshot() would read on a host running container myapp."""
    user = HOST_INODES["user"]
    namespaces = {}
    for ns_type, inode in list(HOST_INODES.items()) + list(MYAPP_INODES.items()):
        parent = HOST_INODES["pid"] if ns_type == "pid" and inode != HOST_INODES["pid"] else None
        namespaces[(ns_type, DEV, inode)] = NsInfo(
            ns_type, inode, DEV, owner_inode=None if ns_type == "user" else user, parent_inode=parent,
            owner_uid=0 if ns_type == "user" else None)

    def proc(pid, ppid, comm, cmdline, cgroup, slots):
        return ProcInfo(pid, ppid, 0, comm, cmdline, 1000 + pid, cgroup,
                        {slot: (DEV, inode) for slot, inode in slots.items()})
    procs = {
        1: proc(1, 0, "init", ["/sbin/init"], "0::/init.scope", HOST_SLOTS),
        50: proc(50, 1, "sh", ["sh"], "0::/user.slice", HOST_SLOTS),
        MYAPP_PID: proc(MYAPP_PID, 7040, "sleep", ["sleep", "600"], MYAPP_CGROUP, MYAPP_SLOTS),
    }
    return Snapshot(taken_at, procs, namespaces, collections.Counter())


def cgroup_container(pid, cgroup):
    """The container a cgroup path names (the service's resolver without Docker)."""
    ref = parse_cgroup(cgroup) if cgroup else None
    return container_from_ref(ref) if ref else None


MYAPP_RECORD = Container(id=MYAPP_ID, name="myapp", image="nsgraph-demo:latest", runtime="docker",
                         labels={"org.nsgraph.demo": "1"}, state="running", pid=MYAPP_PID, source="docker")


class World:
    """The graph and a source of real events for it."""

    def __init__(self, changelog_size: int = 100_000):
        self.t0 = time.time() - 60
        self._seq = itertools.count(1)
        self._pids = itertools.count(20_000)
        self._inodes = itertools.count(4026533000)
        self.graph = NamespaceGraph(dev=DEV, node="testhost", changelog_size=changelog_size)
        self.graph.load_snapshot(snapshot(self.t0), cgroup_container)
        # The Docker catalog's record, applied as NsgraphService._on_container does.
        self.graph.apply_ops([{"op": "container", "data": MYAPP_RECORD.to_json()}])
        self.docker_exec()

    def event(self, kind, pid, **fields) -> Event:
        base = dict(kind=kind, seq=next(self._seq), ts=time.time(), pid=pid, tid=pid, ppid=50, uid=0,
                    vpid=pid, comm="sh")
        base.update(fields)
        return Event(**base)

    def docker_exec(self) -> None:
        """runc's five setns calls into myapp, a clone, the exec of ps: one join session."""
        before = dict(HOST_SLOTS)
        events = []
        for ns_type in nstypes.CONTAINER_TYPES:
            after = dict(before)
            slot = nstypes.CHILDREN_SLOT.get(ns_type, ns_type)
            after[slot] = MYAPP_INODES[ns_type]
            events.append(self.event("setns", EXEC_PID, ppid=8090, comm="runc:[1:CHILD]", syscall="setns",
                                     raw_flags=nstypes.TYPE_FLAGS[ns_type], fd=5, ns=after, ns_before=before))
            before = after
        events.append(self.event("clone", EXEC_PID, ppid=8090, comm="runc:[1:CHILD]", syscall="clone",
                                 raw_flags=17, child_pid=EXEC_CHILD, child_vpid=2, ns=MYAPP_SLOTS,
                                 ns_before=before))
        events.append(self.event("exec", EXEC_CHILD, ppid=EXEC_PID, comm="ps", filename="/bin/ps",
                                 args=["ps", "aux"], ns=MYAPP_SLOTS))
        self.graph.apply_batch(events)

    def new_namespace(self, ns_type: str = "uts") -> str:
        """sh (pid 50) clones a child into a new namespace of ns_type; its id."""
        inode = next(self._inodes)
        after = dict(HOST_SLOTS)
        after[nstypes.CHILDREN_SLOT.get(ns_type, ns_type)] = inode
        if ns_type not in nstypes.CHILDREN_SLOT:
            after[ns_type] = inode
        self.graph.apply(self.event("clone", 50, comm="unshare", syscall="clone",
                                    raw_flags=nstypes.TYPE_FLAGS[ns_type] | 17, child_pid=next(self._pids),
                                    ns=after, ns_before=dict(HOST_SLOTS)))
        return ns_id(ns_type, inode)

    def unshare_event(self) -> Event:
        """An unshare(CLONE_NEWNET) as the collector would deliver it (not applied)."""
        after = dict(HOST_SLOTS, net=next(self._inodes))
        return self.event("unshare", 50, comm="unshare", syscall="unshare",
                          raw_flags=nstypes.CLONE_NEWNET, ns=after, ns_before=dict(HOST_SLOTS))


def serving(world: World, store=None) -> NsgraphService:
    """A real NsgraphService around the world's graph (no probes)."""
    return NsgraphService().use_graph(world.graph, store)


def make_client(service=None, **config):
    cfg = WebConfig(token=TOKEN, port=5000, **config)
    app = create_app(cfg, service=service)
    return app, app.test_client()


def authed(service=None, **config):
    """An app and a test client that has exchanged the token for the cookie."""
    app, client = make_client(service, **config)
    r = client.get("/?token=" + TOKEN)
    assert r.status_code == 303
    return app, client


def parse_sse(text: str) -> list:
    """[(event, id, data)] from SSE text; comments come back as ("comment", None, text)."""
    out = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        event, ident, data = "message", None, []
        for line in block.split("\n"):
            if line.startswith(":"):
                out.append(("comment", None, line[1:].strip()))
            elif line.startswith("event: "):
                event = line[7:]
            elif line.startswith("id: "):
                ident = line[4:]
            elif line.startswith("data: "):
                data.append(line[6:])
            elif line.startswith("retry: "):
                event = "retry"
        if data or event != "message":
            out.append((event, ident, "\n".join(data)))
    return out


class LoopbackServer:
    """The app on werkzeug's threaded server (what nsgraph serve runs) on 127.0.0.1, any port."""

    def __init__(self, app):
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def open_stream(self, headers=()) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        # HTTP/1.0: no chunked framing to strip from the raw bytes.
        lines = ["GET /stream HTTP/1.0", "Host: 127.0.0.1:%d" % self.port,
                 "Authorization: Bearer " + TOKEN, "Accept: text/event-stream"] + list(headers)
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        return sock

    def close(self):
        self.server.shutdown()


def read_until(sock, marker: bytes, limit_s: float = 5) -> bytes:
    data = b""
    deadline = time.time() + limit_s
    while marker not in data and time.time() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def wait_for(predicate, limit_s: float = 5) -> bool:
    deadline = time.time() + limit_s
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()
