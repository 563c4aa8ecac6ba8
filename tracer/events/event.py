"""Decoding raw probe records into Event objects.

Input is untrusted bytes (a live buffer, a recorded file): a record of the wrong
size, version or kind is counted in Decoder.errors and skipped, never raised.
"""

from __future__ import annotations

import errno as errno_module
import socket
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Mapping, Optional

from . import abi

_EVENT_SIZE = abi.EVENT_SIZE
_unpack = abi.EVENT.unpack_from
_N = abi.NS_COUNT


@dataclass(slots=True)
class Event:
    """One namespace or process event, as captured in the kernel.

    Namespace sets map a type name from abi.NS_SLOTS to an inode number; a type
    the task does not have (an exiting task, a kernel without time namespaces) is
    absent from the map.  Decoded events share these maps between events with
    the same namespaces, so they are read-only (MappingProxyType): copy to modify.  `ns_id` holds the kernel's 64-bit namespace ids where it
    has them (Linux 6.18+), else it is empty.
    """

    kind: str
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
            return abi.decode_clone_flags(self.raw_flags, self.syscall)
        if self.kind == "unshare":
            return abi.decode_unshare_flags(self.raw_flags)
        if self.kind == "setns":
            return abi.decode_setns_nstype(self.raw_flags)
        return []

    def flag_ns_types(self) -> list:
        """Namespace types the call asked for by flag."""
        if self.kind == "clone":
            flags = self.raw_flags if self.syscall == "clone3" else self.raw_flags & ~abi.CSIGNAL
            return abi.flag_types(flags)
        if self.kind in ("unshare", "setns"):
            return abi.flag_types(self.raw_flags)
        return []

    def changed_types(self) -> list:
        """Namespace types whose inode differs between before and after."""
        if self.ns_before is None:
            return []
        return [t for t in abi.NS_SLOTS
                if t in self.ns and self.ns.get(t) != self.ns_before.get(t)]

    def ns_types(self) -> list:
        """Every namespace type this event is about: asked for, or actually changed."""
        types = set(self.flag_ns_types()) | set(self.changed_types())
        return [t for t in abi.NS_SLOTS if t in types]

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
            cgroup_id=int(obj.get("cgroup_id") or 0),
            args=list(obj["args"]) if obj.get("args") is not None else None,
        )


_SLOTS = abi.NS_SLOTS
_NS_CACHE_MAX = 4096


def _build_ns_maps(ids, inums):
    ns = {name: inum for name, inum in zip(_SLOTS, inums) if inum}
    ns_id = {name: i for name, i, inum in zip(_SLOTS, ids, inums) if inum and i}
    return MappingProxyType(ns), MappingProxyType(ns_id)


def _cstr(raw: bytes) -> str:
    return raw.partition(b"\0")[0].decode("utf-8", "replace")


def _argv(raw: bytes, full_length: int) -> list:
    """NUL-separated argv as the kernel laid it out; a cut last argument ends in '...'."""
    data = raw[:min(full_length, len(raw))]
    if not data:
        return []
    parts = data.split(b"\0")
    if data.endswith(b"\0"):
        parts.pop()
    argv = [p.decode("utf-8", "replace") for p in parts]
    if full_length > len(raw) and argv:
        argv[-1] += "..."
    return argv


def boot_to_epoch_offset() -> float:
    """Seconds to add to CLOCK_BOOTTIME to get the wall clock."""
    return time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)


class Decoder:
    """Turns raw records into Events, numbering them and counting what it rejects."""

    def __init__(self, node: Optional[str] = None, clock_offset: Optional[float] = None):
        self.node = node if node is not None else socket.gethostname()
        self.clock_offset = boot_to_epoch_offset() if clock_offset is None else clock_offset
        self.seq = 0
        self.errors: Counter = Counter()
        self._ns_cache: dict = {}

    def _cache_ns(self, key):
        if len(self._ns_cache) >= _NS_CACHE_MAX:
            self._ns_cache.clear()
        maps = _build_ns_maps(key[:_N], key[_N:])
        self._ns_cache[key] = maps
        return maps

    @property
    def rejected(self) -> int:
        return sum(self.errors.values())

    def decode(self, data) -> Optional[Event]:
        """Decode one record; None (and a counted error) when it is malformed."""
        if len(data) < _EVENT_SIZE:
            self.errors["truncated"] += 1
            return None
        try:
            fields = _unpack(data)
        except Exception:  # struct.error on odd buffers; bytes-like objects of any kind
            self.errors["unreadable"] += 1
            return None
        (size, version, kind_code, syscall_code, ts_boot_ns, pid, tid, ppid, uid, vpid,
         child_pid, child_vpid, fd, exit_code, args_len, flags, ret, cgroup_id, comm, filename, args) = fields[:21]
        if size != _EVENT_SIZE:
            self.errors["size_mismatch"] += 1
            return None
        if version != abi.ABI_VERSION:
            self.errors["version_mismatch"] += 1
            return None
        kind = abi.KIND_NAMES.get(kind_code)
        if kind is None:
            self.errors["unknown_kind"] += 1
            return None
        if syscall_code not in abi.SYSCALL_NAMES:
            self.errors["unknown_syscall"] += 1
            return None
        base = 21
        n = _N
        # Most events repeat a handful of namespace sets (every fork in a container
        # has the same ones), so the read-only maps are built once per distinct set.
        cache = self._ns_cache
        after_key = fields[base + 2 * n:base + 4 * n]
        after = cache.get(after_key)
        if after is None:
            after = self._cache_ns(after_key)
        ns, ns_id = after
        if kind in ("exec", "exit"):
            ns_before = ns_id_before = None
        else:
            before_key = fields[base:base + 2 * n]
            before = cache.get(before_key)
            if before is None:
                before = self._cache_ns(before_key)
            ns_before, ns_id_before = before
            if not ns_id_before:
                ns_id_before = None
        self.seq += 1
        is_clone = kind == "clone" and ret >= 0
        # Positional: this runs for every event, and keyword calls cost a third more.
        return Event(
            kind, self.seq, ts_boot_ns / 1e9 + self.clock_offset,
            pid, tid, ppid, uid, vpid, _cstr(comm), abi.SYSCALL_NAMES[syscall_code], flags, ret,
            fd if kind == "setns" else None,
            child_pid if is_clone else None,
            child_vpid if is_clone else None,
            exit_code if kind == "exit" else None,
            _cstr(filename) if kind == "exec" else None,
            ns, ns_before, ns_id, ns_id_before, self.node, None, cgroup_id,
            _argv(args, args_len) if kind == "exec" else None,
        )
