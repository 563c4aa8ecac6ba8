"""The bpf(2) system call, for the few things BCC does not offer: another
process's programs and their counters (bpfstats), and probing which program
types this kernel accepts (trampolines).

Every failure is an OSError carrying the kernel's errno.
"""

from __future__ import annotations

import ctypes
import os
import platform
import struct
from typing import Optional

_SYS_BPF = {"x86_64": 321, "aarch64": 280, "ppc64le": 361, "s390x": 351, "riscv64": 280}

BPF_MAP_LOOKUP_ELEM = 1
BPF_PROG_LOAD = 5
BPF_PROG_GET_FD_BY_ID = 13
BPF_MAP_GET_FD_BY_ID = 14
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_BTF_GET_FD_BY_ID = 19
BPF_ENABLE_STATS = 32

_libc = ctypes.CDLL(None, use_errno=True)


def bpf(cmd: int, attr: bytearray) -> int:
    """bpf(cmd, attr): the returned value, or OSError with the errno."""
    number = _SYS_BPF.get(platform.machine())
    if number is None:
        raise OSError(38, "no bpf() system call number known for %s" % platform.machine())
    buf = (ctypes.c_char * len(attr)).from_buffer(attr)
    try:
        ret = _libc.syscall(number, cmd, buf, len(attr))
    finally:
        del buf
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


def fd_by_id(cmd: int, ident: int) -> int:
    """BPF_{PROG,MAP,BTF}_GET_FD_BY_ID."""
    attr = bytearray(16)
    struct.pack_into("<I", attr, 0, ident)
    return bpf(cmd, attr)


def obj_info(fd: int, size: int, prefill: Optional[bytearray] = None) -> bytearray:
    """BPF_OBJ_GET_INFO_BY_FD into a buffer of `size` bytes (prefill: with pointers set)."""
    info = prefill if prefill is not None else bytearray(size)
    buf = (ctypes.c_char * len(info)).from_buffer(info)
    try:
        attr = bytearray(16)
        struct.pack_into("<IIQ", attr, 0, fd, len(info), ctypes.addressof(buf))
        bpf(BPF_OBJ_GET_INFO_BY_FD, attr)
    finally:
        del buf
    return info
