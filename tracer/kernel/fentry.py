"""Does this kernel let a tracing program attach at a function's entry (fentry)?

nsgraph traces with tracepoints; fentry/fexit would let it see namespaces being
freed directly, and costs less per call than syscall tracepoints, but it loads on
some kernels and not on others (this project's 6.18 VM refuses it with EPERM, for a
reason not established).  `nsgraph doctor` therefore does not guess from the kernel
config: it tries.  The trial is the smallest program the kernel accepts as fentry
("return 0", no maps, nothing compiled), loaded with the bpf() system call and
attached to a namespace function, then closed at once.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
from dataclasses import dataclass
from typing import Optional, Sequence

from .btf import BTF, BTFError

# The functions a namespace tracer would hook with fentry, first the one nsgraph would use.
CANDIDATES = ("free_nsproxy", "switch_task_namespaces", "put_pid_ns")

BPF_SYSCALL = {"x86_64": 321, "aarch64": 280, "armv7l": 386, "ppc64le": 361, "s390x": 351,
               "riscv64": 280}
BPF_PROG_LOAD = 5
BPF_RAW_TRACEPOINT_OPEN = 17
BPF_PROG_TYPE_TRACING = 26
BPF_TRACE_FENTRY = 24
ENOTSUPP = 524          # the kernel-internal "not supported" some bpf() paths return

# mov64 r0, 0 ; exit
RETURN_ZERO = bytes.fromhex("b700000000000000" "9500000000000000")

# union bpf_attr for BPF_PROG_LOAD, up to attach_btf_id (include/uapi/linux/bpf.h):
# prog_type, insn_cnt, insns, license, log_level, log_size, log_buf, kern_version,
# prog_flags, prog_name[16], prog_ifindex, expected_attach_type, prog_btf_fd,
# func_info_rec_size, func_info, func_info_cnt, line_info_rec_size, line_info,
# line_info_cnt, attach_btf_id.
_PROG_LOAD = struct.Struct("=IIQQIIQII16sIIIIQIIQII")
_ATTR_SIZE = 128        # the kernel requires every byte past what it knows to be zero


@dataclass
class FentryTrial:
    tried: bool
    function: Optional[str] = None
    step: Optional[str] = None      # "load" or "attach": where it failed
    errno: Optional[int] = None     # None when it loaded and attached
    reason: str = ""                # why it was not tried

    @property
    def works(self) -> bool:
        return self.tried and self.errno is None

    def describe(self) -> str:
        """What was tried and what happened, e.g. "refused: a 2-instruction fentry program
        on free_nsproxy got EPERM (Operation not permitted) at load"."""
        if not self.tried:
            return "not tried (%s)" % self.reason
        what = "a 2-instruction fentry program on %s" % self.function
        if self.works:
            return "work: %s loaded and attached" % what
        return "refused: %s got %s at %s" % (what, errno_text(self.errno), self.step)


def errno_text(code: int) -> str:
    if code == ENOTSUPP:
        return "ENOTSUPP (not supported by this kernel or architecture)"
    return "%s (%s)" % (errno.errorcode.get(code, "errno %d" % code), os.strerror(code))


def try_fentry(candidates: Sequence[str] = CANDIDATES, btf: Optional[BTF] = None) -> FentryTrial:
    """Load and attach the trial program to the first candidate the kernel's BTF has."""
    if os.geteuid() != 0:
        return FentryTrial(False, reason="needs root")
    number = BPF_SYSCALL.get(platform.machine())
    if number is None:
        return FentryTrial(False, reason="no bpf() syscall number known for %s" % platform.machine())
    try:
        btf = btf or BTF.from_file()
    except BTFError as exc:
        return FentryTrial(False, reason="no kernel BTF: %s" % exc)
    for name in candidates:
        try:
            func_id = btf.func_id(name)
        except BTFError:
            continue
        return _load_and_attach(number, name, func_id)
    return FentryTrial(False, reason="kernel BTF has none of %s" % ", ".join(candidates))


def _load_and_attach(number: int, name: str, func_id: int) -> FentryTrial:
    libc = ctypes.CDLL(None, use_errno=True)
    insns = ctypes.create_string_buffer(RETURN_ZERO, len(RETURN_ZERO))
    license_ = ctypes.create_string_buffer(b"GPL")
    fields = [0] * 20
    fields[0], fields[1] = BPF_PROG_TYPE_TRACING, len(RETURN_ZERO) // 8
    fields[2], fields[3] = ctypes.addressof(insns), ctypes.addressof(license_)
    fields[9] = b"nsgraph_fentry"
    fields[11] = BPF_TRACE_FENTRY
    fields[19] = func_id
    attr = ctypes.create_string_buffer(_PROG_LOAD.pack(*fields).ljust(_ATTR_SIZE, b"\0"), _ATTR_SIZE)
    prog_fd = libc.syscall(ctypes.c_long(number), ctypes.c_int(BPF_PROG_LOAD), attr, ctypes.c_uint(_ATTR_SIZE))
    if prog_fd < 0:
        return FentryTrial(True, name, "load", ctypes.get_errno())
    try:
        # BPF_RAW_TRACEPOINT_OPEN with no name attaches a tracing program where it was loaded for.
        open_attr = ctypes.create_string_buffer(struct.pack("=QI", 0, prog_fd).ljust(_ATTR_SIZE, b"\0"),
                                                _ATTR_SIZE)
        link_fd = libc.syscall(ctypes.c_long(number), ctypes.c_int(BPF_RAW_TRACEPOINT_OPEN), open_attr,
                               ctypes.c_uint(_ATTR_SIZE))
        if link_fd < 0:
            return FentryTrial(True, name, "attach", ctypes.get_errno())
        os.close(link_fd)
        return FentryTrial(True, name)
    finally:
        os.close(prog_fd)
