"""Decoding raw probe records into Event objects.

Input is untrusted bytes (a live buffer, a recorded file): a record of the wrong
size, version or kind is counted in Decoder.errors and skipped, never raised.
"""

from __future__ import annotations

import socket
import time
from collections import Counter
from types import MappingProxyType
from typing import Optional

from ..kernel import abi
from .event import Event
from .kinds import EventKind

_EVENT_SIZE = abi.EVENT_SIZE
_unpack = abi.EVENT.unpack_from
_N = abi.NS_COUNT
# The C kind codes, decoded to their EventKind (raises at import if the mirror and the enum disagree).
_KINDS = {code: EventKind(name) for code, name in abi.KIND_NAMES.items()}

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
        kind = _KINDS.get(kind_code)
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
