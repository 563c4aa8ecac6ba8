"""Can this kernel attach BPF trampolines (fentry/fexit) to the functions behind
unshare and setns?  (Clones need no hook of their own: sched_process_fork sees them.)

Where it can, the probes hook those functions instead of the syscall
tracepoints, and the rest of the machine's system calls stay on the fast path
(one enabled syscall tracepoint sends every system call of every task through the
slow path).  The question is answered by loading a two-instruction fentry
program for each function, which takes milliseconds and prints nothing; the
answer says what was tried and the errno, for `nsgraph doctor`.

Known refusals: EPERM when the kernel (or its platform) forbids trampoline
programs before the verifier runs (seen on a 6.18 PVM guest, where fentry,
fexit, fmod_ret and BPF LSM are all refused while tp_btf and iterators load);
ENOENT/ESRCH when a function has no BTF or was inlined; ENOTSUPP without
CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
from dataclasses import dataclass, field
from typing import Optional

from .bpfsys import BPF_PROG_LOAD, bpf

BPF_PROG_TYPE_TRACING = 26
BPF_TRACE_FENTRY = 24
BPF_TRACE_FEXIT = 25

# x86-64 syscall wrappers take a struct pt_regs * (the probes read its registers).
SYSCALL_PREFIX = {"x86_64": "__x64_sys_"}


def hook_functions(machine: Optional[str] = None) -> Optional[dict]:
    """Kernel functions the fentry path attaches to, by role; None where unsupported."""
    prefix = SYSCALL_PREFIX.get(machine or platform.machine())
    if prefix is None:
        return None
    return {"unshare": "ksys_unshare", "setns": prefix + "setns"}


@dataclass
class TrampolineProbe:
    """What was tried and what the kernel said."""

    usable: bool
    tried: list = field(default_factory=list)   # (function, attach type, errno or 0)
    reason: str = ""

    def summary(self) -> str:
        return self.reason


def _load(btf_id: int, attach_type: int) -> int:
    """Load `r0 = 0; exit` as a tracing program for btf_id; 0 or the errno."""
    insns = struct.pack("<BBhi", 0xB7, 0, 0, 0) + struct.pack("<BBhi", 0x95, 0, 0, 0)
    insn_buf = ctypes.create_string_buffer(insns, len(insns))
    license_buf = ctypes.create_string_buffer(b"GPL")
    attr = bytearray(128)
    struct.pack_into("<IIQQ", attr, 0, BPF_PROG_TYPE_TRACING, 2, ctypes.addressof(insn_buf),
                     ctypes.addressof(license_buf))
    struct.pack_into("<I", attr, 68, attach_type)    # expected_attach_type
    struct.pack_into("<I", attr, 108, btf_id)        # attach_btf_id (vmlinux)
    try:
        fd = bpf(BPF_PROG_LOAD, attr)
    except OSError as exc:
        return exc.errno or errno.EINVAL
    os.close(fd)
    return 0


def probe(btf, machine: Optional[str] = None) -> TrampolineProbe:
    """Try fentry and fexit on every hook function; usable only if all load."""
    functions = hook_functions(machine)
    if functions is None:
        return TrampolineProbe(False, [], "fentry path not built for %s; using syscall tracepoints"
                               % (machine or platform.machine()))
    tried = []
    for name in functions.values():
        btf_id = btf.func_id(name)
        if btf_id is None:
            tried.append((name, "fentry", errno.ENOENT))
            return TrampolineProbe(False, tried, "kernel function %s has no BTF entry (inlined or renamed); "
                                   "using syscall tracepoints" % name)
        for label, attach in (("fentry", BPF_TRACE_FENTRY), ("fexit", BPF_TRACE_FEXIT)):
            err = _load(btf_id, attach)
            tried.append((name, label, err))
            if err:
                return TrampolineProbe(False, tried, "%s on %s refused: %s (%s); using syscall tracepoints" % (
                    label, name, errno.errorcode.get(err, str(err)), os.strerror(err)))
    return TrampolineProbe(True, tried, "fentry/fexit load on %s: untraced system calls pay nothing"
                           % ", ".join(functions.values()))
