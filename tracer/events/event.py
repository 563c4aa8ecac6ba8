"""The Event: one namespace or process event, as the decoder or a recording gives it."""

from __future__ import annotations

import errno as errno_module
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Mapping, Optional

from ..nstypes import NS_SLOTS, flag_types
from .flags import CSIGNAL, decode_clone_flags, decode_setns_nstype, decode_unshare_flags


@dataclass(slots=True)
class Event:
    """One namespace or process event, as captured in the kernel.

    Namespace sets map a type name from NS_SLOTS to an inode number; a type
    the task does not have (an exiting task, a kernel without time namespaces) is
    absent from the map.  Decoded events share these maps between events with
    the same namespaces, so they are read-only (MappingProxyType): copy to modify.  `ns_id` holds the kernel's 64-bit namespace ids where it
    has them (Linux 6.18+), else it is empty.
    """

    kind: str                      # an EventKind (a str) from the decoder; the plain name from JSON
    seq: int
    ts: float                      # seconds since the epoch, UTC
    pid: int
    tid: int
    ppid: int
    uid: int
    vpid: int
    comm: str
    syscall: Optional[str] = None  # clone, clone3, unshare, setns; None for fork/vfork
    raw_flags: int = 0
    ret: int = 0
    fd: Optional[int] = None
    child_pid: Optional[int] = None
    child_vpid: Optional[int] = None
    exit_code: Optional[int] = None
    filename: Optional[str] = None
    ns: Mapping = field(default_factory=dict)
    ns_before: Optional[Mapping] = None
    ns_id: Mapping = field(default_factory=dict)
    ns_id_before: Optional[Mapping] = None
    node: str = ""
    container: Optional[str] = None
    cgroup_id: int = 0             # cgroup v2 id of the task at the event; 0 when unknown
    args: Optional[list] = None    # exec: argv as captured (the last item ends in "..." if cut)
    container_id: Optional[str] = None     # the engine id behind `container`, when known (last:
                                           # the decoder builds events positionally)
    target_container: Optional[str] = None  # setns: the container whose namespaces it entered

    @property
    def errno(self) -> Optional[int]:
        if self.kind in ("exec", "exit") or self.ret >= 0:
            return None
        return -self.ret

    @property
    def failed(self) -> bool:
        return self.errno is not None

    @property
    def flags(self) -> list:
        if self.kind == "clone":
            return decode_clone_flags(self.raw_flags, self.syscall)
        if self.kind == "unshare":
            return decode_unshare_flags(self.raw_flags)
        if self.kind == "setns":
            return decode_setns_nstype(self.raw_flags)
        return []

    def flag_ns_types(self) -> list:
        """Namespace types the call asked for by flag."""
        if self.kind == "clone":
            flags = self.raw_flags if self.syscall == "clone3" else self.raw_flags & ~CSIGNAL
            return flag_types(flags)
        if self.kind in ("unshare", "setns"):
            return flag_types(self.raw_flags)
        return []

    def changed_types(self) -> list:
        """Namespace types whose inode differs between before and after."""
        if self.ns_before is None:
            return []
        return [t for t in NS_SLOTS
                if t in self.ns and self.ns.get(t) != self.ns_before.get(t)]

    def ns_types(self) -> list:
        """Every namespace type this event is about: asked for, or actually changed."""
        types = set(self.flag_ns_types()) | set(self.changed_types())
        return [t for t in NS_SLOTS if t in types]

    @property
    def is_namespace_event(self) -> bool:
        return self.kind in ("unshare", "setns") or (self.kind == "clone" and bool(self.flag_ns_types()))

    def iso_time(self) -> str:
        return datetime.fromtimestamp(self.ts, tz=timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")

    def to_json(self) -> dict:
        """The JSON Lines object of `nsgraph trace --json` (documented in the README)."""
        out = {
            "kind": self.kind,
            "ts": self.iso_time(),
            "seq": self.seq,
            "node": self.node,
            "pid": self.pid,
            "tid": self.tid,
            "ppid": self.ppid,
            "uid": self.uid,
            "comm": self.comm,
            "vpid": self.vpid,
            "syscall": self.syscall,
            "flags": self.flags,
            "raw_flags": self.raw_flags,
            "ret": self.ret,
            "errno": self.errno,
            "errno_name": errno_module.errorcode.get(self.errno) if self.errno else None,
            "ns": dict(self.ns),
            "ns_before": dict(self.ns_before) if self.ns_before is not None else None,
            "ns_id": dict(self.ns_id),
            "container": self.container,
            "cgroup_id": self.cgroup_id,
        }
        if self.container_id is not None:
            out["container_id"] = self.container_id
        if self.target_container is not None:
            out["target_container"] = self.target_container
        if self.kind == "clone":
            out["child_pid"] = self.child_pid
            out["child_vpid"] = self.child_vpid
        if self.kind == "setns":
            out["fd"] = self.fd
        if self.kind == "exec":
            out["filename"] = self.filename
            out["args"] = self.args
        if self.kind == "exit":
            out["exit_code"] = self.exit_code
        if self.ns_id_before is not None:
            out["ns_id_before"] = dict(self.ns_id_before)
        return out

    @classmethod
    def from_json(cls, obj: dict) -> "Event":
        """Rebuild an event from to_json() output (recordings, replays)."""
        ts = obj["ts"]
        if isinstance(ts, str):
            ts = datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
        return cls(
            kind=obj["kind"], seq=int(obj["seq"]), ts=float(ts), pid=int(obj["pid"]),
            tid=int(obj.get("tid", obj["pid"])), ppid=int(obj.get("ppid", 0)),
            uid=int(obj.get("uid", 0)), vpid=int(obj.get("vpid", 0)), comm=str(obj.get("comm", "")),
            syscall=obj.get("syscall"), raw_flags=int(obj.get("raw_flags", 0)),
            ret=int(obj.get("ret", 0)), fd=obj.get("fd"), child_pid=obj.get("child_pid"),
            child_vpid=obj.get("child_vpid"), exit_code=obj.get("exit_code"),
            filename=obj.get("filename"), ns={k: int(v) for k, v in (obj.get("ns") or {}).items()},
            ns_before=({k: int(v) for k, v in obj["ns_before"].items()} if obj.get("ns_before") is not None else None),
            ns_id={k: int(v) for k, v in (obj.get("ns_id") or {}).items()},
            ns_id_before=({k: int(v) for k, v in obj["ns_id_before"].items()} if obj.get("ns_id_before") is not None else None),
            node=str(obj.get("node", "")), container=obj.get("container"),
            container_id=obj.get("container_id"),
            target_container=obj.get("target_container"),
            cgroup_id=int(obj.get("cgroup_id") or 0),
            args=list(obj["args"]) if obj.get("args") is not None else None,
        )
