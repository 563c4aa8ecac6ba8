"""Event -> one JSON Lines object, fast: `nsgraph trace --json`, the dashboard's
event stream and the history journal all write one per event.

The text is exactly json.dumps(event.to_json(), separators=(",", ":")) (the unit
tests compare the two), but built from pieces that repeat: namespace maps are
shared between decoded events and encoded once each, flag lists once per
(kind, syscall, flags), strings once per value, the ISO timestamp's
date-and-second part once per second, and all that follows "seq" once per
distinct rest of the event (a storm repeats it).  About five times faster than
building the dict and dumping it; a storm's repeats about three times more.
"""

from __future__ import annotations

import errno as errno_module
import json
import time
from typing import Optional

from .event import Event

_dumps = json.dumps
_CACHE_MAX = 4096


class EventEncoder:
    """Encodes Events as compact JSON text.  Not thread-safe: one per writer."""

    def __init__(self):
        self._maps: dict = {}      # id(mapping) -> (mapping, text); the reference keeps the id unique
        self._strings: dict = {}
        self._flags: dict = {}
        self._seconds: dict = {}
        self._tails: dict = {}     # what follows "seq" (see _tail)
        self._rows: dict = {}      # what follows ts in encode_row's form

    def _map(self, mapping) -> str:
        if mapping is None:
            return "null"
        found = self._maps.get(id(mapping))
        if found is not None and found[0] is mapping:
            return found[1]
        text = _dumps(dict(mapping), separators=(",", ":"))
        if len(self._maps) >= _CACHE_MAX:
            self._maps.clear()
        self._maps[id(mapping)] = (mapping, text)
        return text

    def _str(self, value) -> str:
        if value is None:
            return "null"
        text = self._strings.get(value)
        if text is None:
            text = _dumps(value)
            if len(self._strings) >= _CACHE_MAX:
                self._strings.clear()
            self._strings[value] = text
        return text

    def _flag_list(self, event: Event) -> str:
        key = (event.kind, event.syscall, event.raw_flags)
        text = self._flags.get(key)
        if text is None:
            text = _dumps(event.flags, separators=(",", ":"))
            if len(self._flags) >= _CACHE_MAX:
                self._flags.clear()
            self._flags[key] = text
        return text

    def _iso(self, ts: float) -> str:
        """As Event.iso_time(): UTC, microseconds, rounded half to even like datetime."""
        second = int(ts // 1)
        micro = round((ts - second) * 1e6)
        if micro >= 1_000_000:
            second, micro = second + 1, micro - 1_000_000
        prefix = self._seconds.get(second)
        if prefix is None:
            prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            if len(self._seconds) >= _CACHE_MAX:
                self._seconds.clear()
            self._seconds[second] = prefix
        return "%s.%06dZ" % (prefix, micro)

    def encode(self, event: Event, exact_ts: bool = False) -> str:
        """The event's JSON object as text; exact_ts writes ts as the float (the journal)."""
        ts = event[2]
        return '{"kind":%s,"ts":%s,"seq":%s%s' % (
            self._str(event[0]), repr(float(ts)) if exact_ts else '"%s"' % self._iso(ts), str(event[1]),
            self._tail(event))

    def _tail(self, event: Event) -> str:
        """Everything after "seq", which the events of a storm share: one process making
        the same call again and again differs only in seq and ts, and its decoded events
        share their namespace maps.  Kept by the values and map identities it was made
        from (an exec's argv, a list, is not kept: execs are encoded whole)."""
        (kind, _seq, _ts, pid, tid, ppid, uid, vpid, comm, syscall, raw_flags, ret, fd, child_pid, child_vpid,
         exit_code, filename, ns, ns_before, ns_id, ns_id_before, node, cgroup_id, args, brief) = event
        key = _storm_key(event)
        hit = _kept(self._tails, key, event)
        if hit is not None:
            return hit[0]
        err = None if kind in ("exec", "exit") or ret >= 0 else -ret
        parts = [
            ',"node":', self._str(node),
            ',"pid":', _num(pid), ',"tid":', _num(tid), ',"ppid":', _num(ppid), ',"uid":', _num(uid),
            ',"comm":', self._str(comm), ',"vpid":', _num(vpid), ',"syscall":', self._str(syscall),
            ',"flags":', self._flag_list(event), ',"raw_flags":', str(raw_flags), ',"ret":', str(ret),
            ',"errno":', _num(err), ',"errno_name":', self._str(errno_module.errorcode.get(err) if err else None),
            ',"ns":', self._map(ns), ',"ns_before":', self._map(ns_before), ',"ns_id":', self._map(ns_id),
            ',"container":', self._str(event.container), ',"cgroup_id":', str(cgroup_id),
            ',"brief":', "true" if brief else "false",
        ]
        if event.container_id is not None:
            parts += [',"container_id":', self._str(event.container_id)]
        if event.target_container is not None:
            parts += [',"target_container":', self._str(event.target_container)]
        if kind == "clone":
            parts += [',"child_pid":', _num(child_pid), ',"child_vpid":', _num(child_vpid)]
        elif kind == "setns":
            parts += [',"fd":', _num(fd)]
        elif kind == "exec":
            parts += [',"filename":', self._str(filename), ',"args":',
                      "null" if args is None else _dumps(args, separators=(",", ":"))]
        elif kind == "exit":
            parts += [',"exit_code":', _num(exit_code)]
        if ns_id_before is not None:
            parts += [',"ns_id_before":', self._map(ns_id_before)]
        parts.append("}")
        text = "".join(parts)
        _keep(self._tails, key, event, text)
        return text

    def encode_row(self, event: Event) -> str:
        """json.dumps(event.row()) (the history's compact form), from the same cached pieces;
        what follows ts is kept like _tail's text (a storm's rows differ only in seq and ts)."""
        (kind, seq, ts, pid, tid, ppid, uid, vpid, comm, syscall, raw_flags, ret, fd, child_pid, child_vpid,
         exit_code, filename, ns, ns_before, ns_id, ns_id_before, node, cgroup_id, args, brief) = event
        key = _storm_key(event)
        hit = _kept(self._rows, key, event)
        if hit is not None:
            return '[%s,%s,%s,%s' % (hit[5], seq, repr(float(ts)), hit[0])
        text, number, mapping = self._str, _num, self._map
        head = text(kind)
        rest = ",".join((
            number(pid), number(tid), number(ppid), number(uid),
            number(vpid), text(comm), text(syscall), str(raw_flags), str(ret), number(fd), number(child_pid),
            number(child_vpid), number(exit_code), text(filename), mapping(ns), mapping(ns_before),
            mapping(ns_id), mapping(ns_id_before), text(node), str(cgroup_id),
            "null" if args is None else _dumps(args, separators=(",", ":")), "true" if brief else "false",
            text(event.container), text(event.container_id), text(event.target_container))) + "]"
        _keep(self._rows, key, event, rest, head)
        return "[%s,%s,%s,%s" % (head, seq, repr(float(ts)), rest)


def _storm_key(event: Event):
    """What an event's text after seq and ts depends on (None: not kept; an exec's argv is a
    list).  Maps count by identity: decoded events share them."""
    if event[23] is not None:           # args
        return None
    return (event[0], event[3:17], id(event[17]), id(event[18]), id(event[19]), id(event[20]), event[21],
            event[22], event[24], event.container, event.container_id, event.target_container)


def _kept(table: dict, key, event: Event):
    """The entry kept for key, if it was made from this event's very maps.  The entry holds
    the maps, so their ids cannot be reused while it exists."""
    if key is None:
        return None
    hit = table.get(key)
    if hit is not None and hit[1] is event[17] and hit[2] is event[18] and hit[3] is event[19] \
            and hit[4] is event[20]:
        return hit
    return None


def _keep(table: dict, key, event: Event, text: str, *extra) -> None:
    if key is None:
        return
    if len(table) >= _CACHE_MAX:
        table.clear()
    table[key] = (text, event[17], event[18], event[19], event[20]) + extra


def _num(value: Optional[int]) -> str:
    return "null" if value is None else str(value)
