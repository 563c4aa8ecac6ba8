"""Decoding raw probe records into Event objects.

Input is untrusted bytes (a live buffer, a recorded file): a record of the wrong
size, version or kind is counted in Decoder.errors and skipped, never raised.

A record (ABI 6, ebpf/nsgraph.h) is a fixed header, then the namespace slots the
event changed, then, for exec, the program's path and argv; or, for a plain fork or
an exit, a brief record alone (shorter than any full record's header).
"""

from __future__ import annotations

import socket
import time
from collections import Counter
from types import MappingProxyType
from typing import Optional

from ..kernel import abi
from .event import EMPTY_MAP, Event
from .kinds import EventKind

_unpack = abi.EVENT.unpack_from
_unpack_brief = abi.BRIEF.unpack_from
_BRIEF_SIZE = abi.BRIEF_SIZE
_INFO_CLONE_PARENT = abi.INFO_CLONE_PARENT
_unpack_change = abi.CHANGE.unpack_from
_unpack_tail = abi.EXEC_TAIL.unpack_from
_N = abi.NS_COUNT
_SLOTS = abi.NS_SLOTS
_HEADER_SIZE = abi.EVENT_SIZE
_CHANGE_SIZE = abi.CHANGE_SIZE
_TAIL_SIZE = abi.EXEC_TAIL_SIZE
_KIND_CLONE = abi.KIND_CLONE
_KIND_SETNS = abi.KIND_SETNS
_KIND_EXEC = abi.KIND_EXEC
_KIND_EXIT = abi.KIND_EXIT
_INFO_BRIEF = abi.INFO_BRIEF
# Record codes -> EventKind / syscall name, as tuples: an index is cheaper than a dict
# lookup per record (and building them raises at import if the mirror and the enum disagree).
_KIND_LIMIT = max(abi.KIND_NAMES) + 1
_KIND_BY_CODE = tuple(EventKind(abi.KIND_NAMES[code]) if code in abi.KIND_NAMES else None
                      for code in range(_KIND_LIMIT))
_SYSCALL_LIMIT = max(abi.SYSCALL_NAMES) + 1
_SYSCALL_BY_CODE = tuple(abi.SYSCALL_NAMES[code] for code in range(_SYSCALL_LIMIT))
_CACHE_MAX = 4096
_CLONE_PARENT = 0x00008000   # the clone flag a brief fork's info bit stands for
_tuple_new = tuple.__new__


def _change_maps(data, count: int):
    """(ns, ns_before, ns_id, ns_id_before) from `count` struct nsg_ns_change; None if malformed."""
    ns, before, ids, ids_before = {}, {}, {}, {}
    offset = _HEADER_SIZE
    for _ in range(count):
        id_before, id_after, inum_before, inum_after, slot = _unpack_change(data, offset)
        offset += _CHANGE_SIZE
        if slot >= _N or not inum_after:
            return None
        name = _SLOTS[slot]
        ns[name] = inum_after
        if id_after:
            ids[name] = id_after
        if inum_before:
            before[name] = inum_before
            if id_before:
                ids_before[name] = id_before
    return (MappingProxyType(ns), MappingProxyType(before), MappingProxyType(ids),
            MappingProxyType(ids_before) if ids_before else None)


def _cstr(raw: bytes) -> str:
    return raw.partition(b"\0")[0].decode("utf-8", "replace")


def _new_comm(comms: dict, raw: bytes) -> str:
    """A command name not in the decoder's cache yet: decoded once and cached (bounded)."""
    name = _cstr(raw)
    if len(comms) >= _CACHE_MAX:
        comms.clear()
    comms[raw] = name
    return name


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


def monotonic_to_epoch_offset() -> float:
    """Seconds to add to CLOCK_MONOTONIC (the records' clock) to get the wall clock."""
    return time.time() - time.clock_gettime(time.CLOCK_MONOTONIC)


# The records' clock stops during suspend and the wall clock can be stepped: an offset
# that moved by more than this is taken up (smaller moves are read jitter, ignored).
CLOCK_STEP = 0.001


class Decoder:
    """Turns raw records into Events, numbering them and counting what it rejects."""

    def __init__(self, node: Optional[str] = None, clock_offset: Optional[float] = None):
        self.node = node if node is not None else socket.gethostname()
        # Given an offset, it stays; else it follows suspends and clock steps, per batch.
        self._follow_clock = clock_offset is None
        self.clock_offset = monotonic_to_epoch_offset() if clock_offset is None else clock_offset
        self.seq = 0
        self.errors: Counter = Counter()
        self._ns_cache: dict = {}   # the bytes of a record's changes -> its read-only maps
        self._comms: dict = {}      # raw comm bytes -> str: a few hundred commands do most of the work

    @property
    def rejected(self) -> int:
        return sum(self.errors.values())

    def decode(self, data) -> Optional[Event]:
        """Decode one record; None (and a counted error) when it is malformed."""
        events = self.decode_many((data,))
        return events[0] if events else None

    def decode_many(self, records) -> list:
        """Decode records in order; malformed ones are counted and left out.

        One loop for a whole poll's records, with everything it touches in local
        variables: at hundreds of thousands of records a second the interpreter's
        per-call and attribute-lookup costs are most of the work.
        """
        out = []
        append = out.append
        errors = self.errors
        ns_cache = self._ns_cache
        comms = self._comms
        if self._follow_clock:
            offset = monotonic_to_epoch_offset()
            if abs(offset - self.clock_offset) > CLOCK_STEP:
                self.clock_offset = offset
        clock_offset = self.clock_offset
        node = self.node
        seq = self.seq
        unpack = _unpack
        new = _tuple_new
        kinds = _KIND_BY_CODE
        syscalls = _SYSCALL_BY_CODE
        version_ok = abi.ABI_VERSION
        header_size, change_size, tail_size = _HEADER_SIZE, _CHANGE_SIZE, _TAIL_SIZE
        kind_exec, kind_clone, kind_setns, kind_exit = _KIND_EXEC, _KIND_CLONE, _KIND_SETNS, _KIND_EXIT
        kind_limit, syscall_limit, info_brief = _KIND_LIMIT, _SYSCALL_LIMIT, _INFO_BRIEF
        empty_map, event_class = EMPTY_MAP, Event
        brief_size, unpack_brief, info_clone_parent = _BRIEF_SIZE, _unpack_brief, _INFO_CLONE_PARENT
        for data in records:
            length = len(data)
            if length < header_size:
                # A plain fork or an exit (struct nsg_brief), or a cut record.
                if length < brief_size:
                    errors["truncated"] += 1
                    continue
                try:
                    (size, version, kind_code, syscall_code, nchanges, info, ts_ns, pid, tid, child_pid,
                     exit_code, comm) = unpack_brief(data)
                except Exception:  # bytes-like objects of any kind
                    errors["unreadable"] += 1
                    continue
                if size > length:
                    errors["truncated"] += 1
                    continue
                if version != version_ok:
                    errors["version_mismatch"] += 1
                    continue
                if kind_code != kind_clone and kind_code != kind_exit:
                    errors["unknown_kind"] += 1
                    continue
                if size != brief_size or not info & info_brief or nchanges or syscall_code:
                    errors["size_mismatch"] += 1
                    continue
                name = comms.get(comm)
                if name is None:
                    name = _new_comm(comms, comm)
                seq += 1
                if kind_code == kind_clone:
                    flags = _CLONE_PARENT if info & info_clone_parent else 0
                    exit_code = None
                    ns_before = empty_map
                else:
                    flags = 0
                    child_pid = ns_before = None
                append(new(event_class, (
                    kinds[kind_code], seq, ts_ns / 1e9 + clock_offset, pid, tid, None, None, None, name,
                    None, flags, 0, None, child_pid, None, exit_code, None,
                    empty_map, ns_before, empty_map, None, node, 0, None, True)))
                continue
            try:
                (size, version, kind_code, syscall_code, nchanges, info, ts_ns, pid, tid, ppid, uid, vpid,
                 child_pid, child_vpid, fd, exit_code, args_len, flags, ret, cgroup_id, comm) = unpack(data)
            except Exception:  # struct.error on odd buffers; bytes-like objects of any kind
                errors["unreadable"] += 1
                continue
            if version != version_ok:
                errors["version_mismatch"] += 1
                continue
            kind = kinds[kind_code] if kind_code < kind_limit else None
            if kind is None:
                errors["unknown_kind"] += 1
                continue
            if size != header_size + nchanges * change_size + (tail_size if kind_code == kind_exec else 0) \
                    or size > length:
                errors["size_mismatch"] += 1
                continue
            if syscall_code >= syscall_limit:
                errors["unknown_syscall"] += 1
                continue
            if nchanges:
                # Changing events repeat a few patterns (a storm of setns between two
                # namespaces), so the read-only maps are built once per distinct set.
                key = bytes(data[header_size:header_size + nchanges * change_size])
                maps = ns_cache.get(key)
                if maps is None:
                    maps = _change_maps(data, nchanges)
                    if maps is None:
                        errors["bad_change"] += 1
                        continue
                    if len(ns_cache) >= _CACHE_MAX:
                        ns_cache.clear()
                    ns_cache[key] = maps
                ns, ns_before, ns_id, ns_id_before = maps
            else:
                ns = ns_id = empty_map
                ns_before = None if kind_code >= kind_exec else empty_map
                ns_id_before = None
            name = comms.get(comm)
            if name is None:
                name = _new_comm(comms, comm)
            seq += 1
            brief = info & info_brief
            if brief:
                ppid = uid = vpid = None
                cgroup_id = 0
            if kind_code == kind_exec:
                raw_filename, raw_args = _unpack_tail(data, size - tail_size)
                filename, args = _cstr(raw_filename), _argv(raw_args, args_len)
            else:
                filename = args = None
            if kind_code == kind_clone and ret >= 0:
                child_vpid = child_vpid or None
            else:
                child_pid = child_vpid = None
            # The tuple in Event's field order (event.EVENT_FIELDS), without Event()'s checks.
            append(new(event_class, (
                kind, seq, ts_ns / 1e9 + clock_offset, pid, tid, ppid, uid, vpid, name,
                syscalls[syscall_code], flags, ret, fd if kind_code == kind_setns else None,
                child_pid, child_vpid, exit_code if kind_code == kind_exit else None, filename,
                ns, ns_before, ns_id, ns_id_before, node, cgroup_id, args, bool(brief))))
        self.seq = seq
        return out
