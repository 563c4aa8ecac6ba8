"""tp_btf programs: a tracepoint's program whose arguments are typed kernel pointers.

A raw tracepoint hands its program the tracepoint's arguments as plain numbers, so
every field of, say, the child task of sched_process_fork costs a
bpf_probe_read_kernel call (~70 ns on a 6.18 VM).  The same program attached as
tp_btf (BPF_PROG_TYPE_TRACING, BPF_TRACE_RAW_TP, Linux 5.5+) gets them as BTF
pointers, which it reads with plain loads the verifier makes fault-safe (a few ns).
tp_btf does not need BPF trampolines, so it loads where fentry is refused.

BCC compiles such a program with the others but cannot attach it (it picks a
tracing program's attach type from the name prefix and knows only fentry, fexit,
LSM and iterators), so it is loaded here from BCC's instructions, whose map
references BCC has already resolved, with BPF_PROG_LOAD and
BPF_RAW_TRACEPOINT_OPEN.
"""

from __future__ import annotations

import ctypes
import os
import struct
from dataclasses import dataclass
from typing import Optional

from .bpfsys import BPF_PROG_LOAD, bpf

BPF_PROG_TYPE_TRACING = 26
BPF_TRACE_RAW_TP = 23
BPF_RAW_TRACEPOINT_OPEN = 17
_INSN_SIZE = 8
_LOG_SIZE = 1 << 20

# A kernel program name keeps 15 characters, too few for "tp_btf__<tracepoint>";
# the programs are loaded under a short alias and named back by full_name().
ALIASES = {"sched_process_fork": "nsg_btf_fork", "sched_process_exec": "nsg_btf_exec",
           "sched_process_exit": "nsg_btf_exit"}
PREFIX = "tp_btf__"


class TpBtfError(Exception):
    """The program could not be loaded or attached; errno is the kernel's answer."""

    def __init__(self, message: str, errno_value: int = 0):
        super().__init__(message)
        self.errno = errno_value


def kernel_name(tracepoint: str) -> str:
    return ALIASES.get(tracepoint, tracepoint)[:15]


def full_name(name: str) -> str:
    """"nsg_btf_fork" -> "tp_btf__sched_process_fork"; other names unchanged."""
    for tracepoint, alias in ALIASES.items():
        if name == alias[:15]:
            return PREFIX + tracepoint
    return name


@dataclass
class Attached:
    """A loaded tp_btf program and the link that holds it on its tracepoint."""

    tracepoint: str
    prog_fd: int
    link_fd: int

    def close(self) -> None:
        for fd in (self.link_fd, self.prog_fd):
            try:
                os.close(fd)
            except OSError:
                pass


def _load(insns: bytes, name: str, btf_id: int, log: Optional[ctypes.Array]) -> int:
    insn_buf = ctypes.create_string_buffer(insns, len(insns))
    license_buf = ctypes.create_string_buffer(b"GPL")
    attr = bytearray(128)
    struct.pack_into("<IIQQ", attr, 0, BPF_PROG_TYPE_TRACING, len(insns) // _INSN_SIZE,
                     ctypes.addressof(insn_buf), ctypes.addressof(license_buf))
    if log is not None:
        struct.pack_into("<IIQ", attr, 24, 1, len(log), ctypes.addressof(log))
    attr[48:48 + 16] = name.encode("ascii")[:15].ljust(16, b"\0")
    struct.pack_into("<I", attr, 68, BPF_TRACE_RAW_TP)   # expected_attach_type
    struct.pack_into("<I", attr, 108, btf_id)            # attach_btf_id: the btf_trace_<tp> typedef
    return bpf(BPF_PROG_LOAD, attr)


def attach(insns: bytes, tracepoint: str, btf) -> Attached:
    """Load `insns` as the tp_btf program of `tracepoint` and attach it."""
    btf_id = btf.typedef_id("btf_trace_" + tracepoint)
    if btf_id is None:
        raise TpBtfError("the kernel's BTF has no btf_trace_%s (tp_btf needs Linux 5.5+)" % tracepoint, 2)
    name = kernel_name(tracepoint)
    try:
        prog_fd = _load(insns, name, btf_id, None)
    except OSError as exc:
        log = ctypes.create_string_buffer(_LOG_SIZE)
        try:
            _load(insns, name, btf_id, log)
        except OSError:
            pass
        lines = [line for line in log.value.decode("utf-8", "replace").splitlines() if line.strip()]
        raise TpBtfError("tp_btf %s refused: %s%s" % (tracepoint, exc.strerror,
                                                       ("; verifier: " + " | ".join(lines[-3:])) if lines else ""),
                         exc.errno or 0) from exc
    attr = bytearray(16)
    struct.pack_into("<QI", attr, 0, 0, prog_fd)      # name NULL: the program's attach_btf_id says where
    try:
        link_fd = bpf(BPF_RAW_TRACEPOINT_OPEN, attr)
    except OSError as exc:
        os.close(prog_fd)
        raise TpBtfError("tp_btf %s loaded but attaching it failed: %s" % (tracepoint, exc.strerror),
                         exc.errno or 0) from exc
    return Attached(tracepoint, prog_fd, link_fd)


def bcc_instructions(bpf_object, func_name: str) -> bytes:
    """The instructions BCC compiled for `func_name` (not loaded by BCC)."""
    return bytes(bpf_object.dump_func(func_name.encode()))


def attach_all(bpf_object, btf, proc_events: bool) -> list:
    """Attach the probes' tp_btf programs (ebpf/nsgraph.bpf.c with NSG_TP_BTF=1): the fork
    probe, and with process events the exec and exit probes; all or none."""
    tracepoints = ["sched_process_fork"] + (["sched_process_exec", "sched_process_exit"] if proc_events else [])
    done: list = []
    try:
        for tracepoint in tracepoints:
            done.append(attach(bcc_instructions(bpf_object, ALIASES[tracepoint]), tracepoint, btf))
    except Exception:
        for attached in done:
            attached.close()
        raise
    return done
