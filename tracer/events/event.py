"""The Event: one namespace or process event, as the decoder or a recording gives it."""

from __future__ import annotations

import errno as errno_module
from datetime import datetime, timezone
from operator import itemgetter
from types import MappingProxyType
from typing import Optional

from ..nstypes import NS_SLOTS, flag_types
from .flags import CSIGNAL, decode_clone_flags, decode_setns_nstype, decode_unshare_flags

_SLOT_ORDER = {slot: i for i, slot in enumerate(NS_SLOTS)}

EMPTY_MAP = MappingProxyType({})


# The fields of an Event, in tuple order, with their defaults (the first nine are required).
EVENT_FIELDS = (
    ("kind", None),           # an EventKind (a str) from the decoder; the plain name from JSON
    ("seq", None), ("ts", None),  # ts: seconds since the epoch, UTC
    ("pid", None), ("tid", None), ("ppid", None), ("uid", None), ("vpid", None), ("comm", None),
    ("syscall", None),        # clone, clone3, unshare, setns; None for fork/vfork and brief forks
    ("raw_flags", 0), ("ret", 0), ("fd", None), ("child_pid", None), ("child_vpid", None),
    ("exit_code", None), ("filename", None), ("ns", EMPTY_MAP), ("ns_before", None), ("ns_id", EMPTY_MAP),
    ("ns_id_before", None), ("node", ""),
    ("cgroup_id", 0),         # cgroup v2 id of the task at the event; 0 when unknown
    ("args", None),           # exec: argv as captured (the last item ends in "..." if cut)
    ("brief", False),         # a plain fork or an exit: see Event
)
_OPTIONAL = EVENT_FIELDS[9:]
_OPTIONAL_NAMES = frozenset(name for name, _default in _OPTIONAL)
_tuple_new = tuple.__new__


class Event(tuple):
    """One namespace or process event, as captured in the kernel.

    Namespace maps go from a slot name of NS_SLOTS to an inode number, and hold
    the slots the event CHANGED (the probes read nothing else): `ns` the values
    after the call (clone: the child's), `ns_before` the values before (clone: the
    parent's).  A plain fork changes nothing (both empty: the child has its
    parent's namespaces, as the graph derives); exec names the time namespace
    when exec moved the task into its time_for_children one; exit names none.  A
    before value the probes could not know is absent from `ns_before`.  Events
    rebuilt from recordings made before ABI 4 carry full sets instead;
    changed_types() works for both.  Decoded events share these maps between
    events, so they are read-only (MappingProxyType): copy to modify.  `ns_id`
    holds the kernel's 64-bit namespace ids where it has them (Linux 6.18+), else
    it is empty.

    `brief` events (plain forks and exits) carry only ts, pid, tid, comm, ret,
    child_pid and raw_flags (CLONE_PARENT where the fork showed it) or exit_code;
    their ppid, uid and vpid are None and cgroup_id is 0.

    An Event is a tuple with named fields: the decoder makes one per record, and a
    tuple is built several times faster than a dataclass.  It is immutable except
    for `container`, which the container tagger sets.
    """

    container = None    # the container name or id, set per event by the container tagger
    container_id = None         # the engine id behind `container`, when known (the tagger)
    target_container = None     # setns: the container whose namespaces it entered (trace)

    def __new__(cls, kind, seq, ts, pid, tid, ppid, uid, vpid, comm, container=None,
                container_id=None, target_container=None, **optional):
        unknown = set(optional) - _OPTIONAL_NAMES
        if unknown:
            raise TypeError("Event() got unexpected fields %s" % ", ".join(sorted(unknown)))
        values = [kind, seq, ts, pid, tid, ppid, uid, vpid, comm]
        values += [optional.get(name, default) for name, default in _OPTIONAL]
        return _tagged(_tuple_new(cls, values), container, container_id, target_container)

    def __repr__(self) -> str:
        return "Event(%s)" % ", ".join("%s=%r" % (name, value) for (name, _d), value in zip(EVENT_FIELDS, self))

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
        before, after = self.ns_before, self.ns
        if before is None or not after:
            return []
        changed = [t for t in after if t in _SLOT_ORDER and after[t] != before.get(t)]
        if len(changed) > 1:           # events name only what changed: usually one slot
            changed.sort(key=_SLOT_ORDER.__getitem__)
        return changed

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
            "brief": self.brief,
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
        """Rebuild an event from to_json() output (recordings, replays).  A history rebuild
        calls this for every input it replays, so the tuple is built directly, in the
        order of _FROM_JSON_ORDER (checked against EVENT_FIELDS below)."""
        get = obj.get
        ts = obj["ts"]
        if isinstance(ts, str):
            ts = datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
        brief = bool(get("brief", False))
        missing = None if brief else 0   # brief events have none of these; older recordings always do
        ppid, uid, vpid = get("ppid", missing), get("uid", missing), get("vpid", missing)
        ns, ns_before, ns_id, ns_id_before = get("ns"), get("ns_before"), get("ns_id"), get("ns_id_before")
        args = get("args")
        pid = int(obj["pid"])
        event = _tuple_new(cls, (
            obj["kind"], int(obj["seq"]), float(ts), pid, int(get("tid", pid)),
            None if ppid is None else int(ppid), None if uid is None else int(uid),
            None if vpid is None else int(vpid), str(get("comm", "")),
            get("syscall"), int(get("raw_flags", 0)), int(get("ret", 0)), get("fd"), get("child_pid"),
            get("child_vpid"), get("exit_code"), get("filename"),
            {k: int(v) for k, v in ns.items()} if ns else {},
            {k: int(v) for k, v in ns_before.items()} if ns_before is not None else None,
            {k: int(v) for k, v in ns_id.items()} if ns_id else {},
            {k: int(v) for k, v in ns_id_before.items()} if ns_id_before is not None else None,
            str(get("node", "")), int(get("cgroup_id") or 0),
            list(args) if args is not None else None, brief))
        return _tagged(event, get("container"), get("container_id"), get("target_container"))

    def row(self) -> list:
        """The field values in EVENT_FIELDS order (maps as dicts), then container,
        container_id and target_container: the history's compact form (from_row)."""
        values = list(self)
        for i in _MAP_INDEXES:
            if values[i] is not None and type(values[i]) is not dict:
                values[i] = dict(values[i])
        values += (self.container, self.container_id, self.target_container)
        return values

    @classmethod
    def from_row(cls, values: list) -> "Event":
        """The inverse of row() (values as JSON gives them back)."""
        if len(values) != _ROW_LENGTH:
            raise ValueError("an event row has %d values, not %d" % (len(values), _ROW_LENGTH))
        return _tagged(_tuple_new(cls, values[:_FIELD_COUNT]), *values[_FIELD_COUNT:])


def _tagged(event: Event, container, container_id, target_container) -> Event:
    """The event with the container fields the tagger sets (None: the class default)."""
    if container is not None:
        event.container = container
    if container_id is not None:
        event.container_id = container_id
    if target_container is not None:
        event.target_container = target_container
    return event


_FROM_JSON_ORDER = ("kind", "seq", "ts", "pid", "tid", "ppid", "uid", "vpid", "comm", "syscall", "raw_flags",
                    "ret", "fd", "child_pid", "child_vpid", "exit_code", "filename", "ns", "ns_before", "ns_id",
                    "ns_id_before", "node", "cgroup_id", "args", "brief")
assert _FROM_JSON_ORDER == tuple(name for name, _default in EVENT_FIELDS), "Event.from_json: update its order"
_FIELD_COUNT = len(EVENT_FIELDS)
_ROW_LENGTH = _FIELD_COUNT + 3
_MAP_INDEXES = tuple(i for i, (name, _d) in enumerate(EVENT_FIELDS) if name in ("ns", "ns_before", "ns_id", "ns_id_before"))

for _index, (_name, _default) in enumerate(EVENT_FIELDS):
    setattr(Event, _name, property(itemgetter(_index), doc="Event field %s" % _name))
del _index, _name, _default
