"""The kernel's own cost counters for BPF programs: run_cnt and run_time_ns.

The kernel counts, per program, how often it ran and how long it took, but only
while statistics are switched on.  `enabled()` switches them on the way that
cleans up after itself: BPF_ENABLE_STATS returns a file descriptor, and the
kernel keeps counting for as long as any such descriptor is open (other tools
may hold one too; closing ours never switches theirs off).  Kernels before 5.8
lack the command; there the `kernel.bpf_stats_enabled` sysctl is set and put
back afterwards.

Programs are found by id (the `prog_id:` lines of /proc/<pid>/fdinfo/*) and read
with BPF_PROG_GET_FD_BY_ID + BPF_OBJ_GET_INFO_BY_FD, so another process's
programs can be measured without disturbing it.  Names come from each program's
BTF (the kernel's own `name` field keeps only 15 characters).  Needs root
(CAP_SYS_ADMIN) like loading the probes.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import struct
from dataclasses import dataclass
from typing import Dict, Iterable, Iterator, List, Optional

from .bpfsys import (BPF_BTF_GET_FD_BY_ID, BPF_ENABLE_STATS, BPF_MAP_GET_FD_BY_ID, BPF_MAP_LOOKUP_ELEM,
                     BPF_PROG_GET_FD_BY_ID, bpf, fd_by_id, obj_info)
from . import tpbtf
from .btf import BTF, BTFError

BPF_STATS_RUN_TIME = 0

# struct bpf_prog_info / bpf_map_info / bpf_btf_info (uapi/linux/bpf.h): the
# offsets of the fields read here.  The kernel fills what it knows and zeroes the
# rest, so a buffer as large as the newest layout works on every kernel.
_PROG_INFO_SIZE = 232
_PROG_TYPE, _PROG_ID = 0, 4
_PROG_NR_MAP_IDS, _PROG_MAP_IDS = 52, 56
_PROG_NAME = 64
_PROG_BTF_ID = 128
_PROG_FUNC_INFO_REC_SIZE, _PROG_FUNC_INFO, _PROG_NR_FUNC_INFO = 132, 136, 144
_PROG_RUN_TIME_NS, _PROG_RUN_CNT, _PROG_RECURSION_MISSES = 192, 200, 208
_MAP_INFO_SIZE = 88
_MAP_VALUE_SIZE, _MAP_MAX_ENTRIES, _MAP_NAME = 12, 16, 24
_MAP_TYPE_PERCPU_ARRAY = 6
_BTF_INFO_SIZE = 32

STATS_SYSCTL = "/proc/sys/kernel/bpf_stats_enabled"


class BPFStatsError(Exception):
    """The statistics cannot be read; the message says why and how to fix it."""


@dataclass
class ProgramSample:
    """One program's counters at one moment."""

    id: int
    name: str
    prog_type: int
    run_cnt: int
    run_time_ns: int
    recursion_misses: int
    map_ids: tuple


@contextlib.contextmanager
def enabled() -> Iterator[str]:
    """Count run_cnt/run_time_ns while inside; yields how ("fd" or "sysctl")."""
    attr = bytearray(8)
    struct.pack_into("<I", attr, 0, BPF_STATS_RUN_TIME)
    try:
        fd = bpf(BPF_ENABLE_STATS, attr)
    except OSError as exc:
        if exc.errno not in (22, 95):  # EINVAL/EOPNOTSUPP: a kernel before 5.8
            raise BPFStatsError("cannot switch on BPF statistics: %s (needs root)" % exc.strerror) from exc
        fd = None
    if fd is not None:
        try:
            yield "fd"
        finally:
            os.close(fd)
        return
    try:
        with open(STATS_SYSCTL) as f:
            previous = f.read().strip()
        with open(STATS_SYSCTL, "w") as f:
            f.write("1")
    except OSError as exc:
        raise BPFStatsError("cannot set kernel.bpf_stats_enabled: %s (needs root)" % exc.strerror) from exc
    try:
        yield "sysctl"
    finally:
        with open(STATS_SYSCTL, "w") as f:
            f.write(previous)


def prog_ids_of(pid: int) -> List[int]:
    """Ids of the BPF programs process pid holds open (fdinfo `prog_id:` lines)."""
    ids = []
    base = "/proc/%d/fdinfo" % pid
    try:
        names = os.listdir(base)
    except OSError:
        return ids
    for name in names:
        try:
            with open(os.path.join(base, name)) as f:
                for line in f:
                    if line.startswith("prog_id:"):
                        ids.append(int(line.split()[1]))
                        break
        except (OSError, ValueError):
            continue
    return sorted(set(ids))


_btf_names: Dict[int, Dict[int, str]] = {}  # btf id -> {type id: FUNC name}


def _func_name(fd: int, info: bytearray) -> Optional[str]:
    """The program's function name from its BTF (full length, unlike info.name)."""
    btf_id, rec_size, nr = struct.unpack_from("<I", info, _PROG_BTF_ID)[0], \
        struct.unpack_from("<I", info, _PROG_FUNC_INFO_REC_SIZE)[0], \
        struct.unpack_from("<I", info, _PROG_NR_FUNC_INFO)[0]
    if not btf_id or not nr or rec_size < 8:
        return None
    records = (ctypes.c_char * (rec_size * nr))()
    ask = bytearray(_PROG_INFO_SIZE)
    struct.pack_into("<I", ask, _PROG_FUNC_INFO_REC_SIZE, rec_size)
    struct.pack_into("<Q", ask, _PROG_FUNC_INFO, ctypes.addressof(records))
    struct.pack_into("<I", ask, _PROG_NR_FUNC_INFO, nr)
    try:
        obj_info(fd, _PROG_INFO_SIZE, ask)
    except OSError:
        return None
    type_id = struct.unpack_from("<I", bytes(records), 4)[0]  # the first record: the entry point
    names = _btf_names.get(btf_id)
    if names is None:
        names = _btf_names[btf_id] = _load_btf_func_names(btf_id)
    return names.get(type_id)


def _load_btf_func_names(btf_id: int) -> Dict[int, str]:
    try:
        fd = fd_by_id(BPF_BTF_GET_FD_BY_ID, btf_id)
    except OSError:
        return {}
    try:
        info = obj_info(fd, _BTF_INFO_SIZE)
        size = struct.unpack_from("<I", info, 8)[0]
        blob = (ctypes.c_char * size)()
        ask = bytearray(_BTF_INFO_SIZE)
        struct.pack_into("<QI", ask, 0, ctypes.addressof(blob), size)
        obj_info(fd, _BTF_INFO_SIZE, ask)
        return BTF(bytes(blob)).func_names()
    except (OSError, BTFError):
        return {}
    finally:
        os.close(fd)


def sample(prog_id: int) -> Optional[ProgramSample]:
    """The program's counters now; None when it is gone."""
    try:
        fd = fd_by_id(BPF_PROG_GET_FD_BY_ID, prog_id)
    except OSError as exc:
        if exc.errno == 2:  # ENOENT: unloaded meanwhile
            return None
        raise BPFStatsError("cannot open BPF program %d: %s (needs root)" % (prog_id, exc.strerror)) from exc
    try:
        info = obj_info(fd, _PROG_INFO_SIZE)
        nr_maps = struct.unpack_from("<I", info, _PROG_NR_MAP_IDS)[0]
        map_ids: tuple = ()
        if nr_maps:
            ids = (ctypes.c_uint32 * nr_maps)()
            ask = bytearray(_PROG_INFO_SIZE)
            struct.pack_into("<I", ask, _PROG_NR_MAP_IDS, nr_maps)
            struct.pack_into("<Q", ask, _PROG_MAP_IDS, ctypes.addressof(ids))
            obj_info(fd, _PROG_INFO_SIZE, ask)
            map_ids = tuple(ids)
        name = _func_name(fd, info) or \
            tpbtf.full_name(info[_PROG_NAME:_PROG_NAME + 16].split(b"\0")[0].decode("ascii", "replace"))
        return ProgramSample(
            id=prog_id, name=name, prog_type=struct.unpack_from("<I", info, _PROG_TYPE)[0],
            run_cnt=struct.unpack_from("<Q", info, _PROG_RUN_CNT)[0],
            run_time_ns=struct.unpack_from("<Q", info, _PROG_RUN_TIME_NS)[0],
            recursion_misses=struct.unpack_from("<Q", info, _PROG_RECURSION_MISSES)[0],
            map_ids=map_ids)
    finally:
        os.close(fd)


def sample_all(prog_ids: Iterable[int]) -> Dict[int, ProgramSample]:
    out = {}
    for prog_id in prog_ids:
        s = sample(prog_id)
        if s is not None:
            out[prog_id] = s
    return out


def _possible_cpus() -> int:
    try:
        with open("/sys/devices/system/cpu/possible") as f:
            text = f.read().strip()
    except OSError:
        return os.cpu_count() or 1
    count = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        count += (int(hi) if hi else int(lo)) - int(lo) + 1
    return count


def percpu_array_sums(map_ids: Iterable[int], name: str) -> Optional[List[int]]:
    """Every slot of the per-CPU u64 array called `name` among map_ids, summed over CPUs."""
    for map_id in map_ids:
        try:
            fd = fd_by_id(BPF_MAP_GET_FD_BY_ID, map_id)
        except OSError:
            continue
        try:
            info = obj_info(fd, _MAP_INFO_SIZE)
            map_type = struct.unpack_from("<I", info, 0)[0]
            map_name = info[_MAP_NAME:_MAP_NAME + 16].split(b"\0")[0].decode("ascii", "replace")
            if map_name != name or map_type != _MAP_TYPE_PERCPU_ARRAY:
                continue
            value_size = struct.unpack_from("<I", info, _MAP_VALUE_SIZE)[0]
            entries = struct.unpack_from("<I", info, _MAP_MAX_ENTRIES)[0]
            if value_size != 8:
                return None
            ncpu = _possible_cpus()
            sums = []
            for slot in range(entries):
                key = ctypes.c_uint32(slot)
                values = (ctypes.c_uint64 * ncpu)()
                attr = bytearray(32)
                struct.pack_into("<IIQQ", attr, 0, fd, 0, ctypes.addressof(key), ctypes.addressof(values))
                bpf(BPF_MAP_LOOKUP_ELEM, attr)
                sums.append(sum(values))
            return sums
        finally:
            os.close(fd)
    return None


@dataclass
class ProgramCost:
    """What one program cost between two samples."""

    id: int
    name: str
    runs: int
    run_time_ns: int

    @property
    def ns_per_run(self) -> Optional[float]:
        return self.run_time_ns / self.runs if self.runs else None


def diff(before: Dict[int, ProgramSample], after: Dict[int, ProgramSample]) -> List[ProgramCost]:
    """Per-program cost between two sample_all() results, in name order."""
    out = []
    for prog_id, a in after.items():
        b = before.get(prog_id)
        if b is None:
            continue
        out.append(ProgramCost(prog_id, a.name, a.run_cnt - b.run_cnt, a.run_time_ns - b.run_time_ns))
    out.sort(key=lambda c: c.name)
    return out


def short_name(name: str) -> str:
    """"tracepoint__syscalls__sys_enter_clone" -> "sys_enter_clone" (BCC's naming)."""
    for prefix in ("tracepoint__syscalls__", "tracepoint__sched__", "tracepoint__cgroup__",
                   "raw_tracepoint__", "tp_btf__", "kfunc__vmlinux__", "kretfunc__vmlinux__", "kfunc__", "kretfunc__",
                   "lsm__"):
        if name.startswith(prefix):
            kind = "fexit " if prefix.startswith("kret") else "fentry " if prefix.startswith("kfunc") else \
                "lsm " if prefix == "lsm__" else ""
            return kind + name[len(prefix):]
    return name
