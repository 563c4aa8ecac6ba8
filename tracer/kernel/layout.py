"""What the running kernel looks like to the probes: the offset of every struct
member they read, from BTF, and the optional features they adapt to.

BCC compiles against whatever header tree is installed, which may be another
kernel's; so the C code never dereferences a member by name, and every offset it
uses is resolved here and handed over as a constant (KernelLayout.cflags).
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from typing import Optional

from .btf import BTF, BTFError, VMLINUX_BTF

# (macro, struct, member path) for every member the C code dereferences.
REQUIRED_OFFSETS = (
    ("OFF_TASK_NSPROXY", "task_struct", "nsproxy"),
    ("OFF_TASK_REAL_CRED", "task_struct", "real_cred"),
    ("OFF_TASK_THREAD_PID", "task_struct", "thread_pid"),
    ("OFF_TASK_PID", "task_struct", "pid"),
    ("OFF_TASK_TGID", "task_struct", "tgid"),
    ("OFF_TASK_REAL_PARENT", "task_struct", "real_parent"),
    ("OFF_TASK_COMM", "task_struct", "comm"),
    ("OFF_TASK_SIGNAL", "task_struct", "signal"),
    ("OFF_TASK_EXIT_CODE", "task_struct", "exit_code"),
    ("OFF_TASK_MM", "task_struct", "mm"),
    ("OFF_TASK_FLAGS", "task_struct", "flags"),
    ("OFF_MM_ARG_START", "mm_struct", "arg_start"),
    ("OFF_MM_ARG_END", "mm_struct", "arg_end"),
    ("OFF_SIGNAL_STRUCT_LIVE", "signal_struct", "live"),
    ("OFF_CRED_USER_NS", "cred", "user_ns"),
    ("OFF_TASK_CRED", "task_struct", "cred"),
    ("OFF_CRED_UID", "cred", "uid"),
    ("OFF_PID_LEVEL", "pid", "level"),
    ("OFF_PID_NUMBERS", "pid", "numbers"),
    ("OFF_UPID_NR", "upid", "nr"),
    ("OFF_UPID_NS", "upid", "ns"),
    ("OFF_NSPROXY_UTS_NS", "nsproxy", "uts_ns"),
    ("OFF_NSPROXY_IPC_NS", "nsproxy", "ipc_ns"),
    ("OFF_NSPROXY_MNT_NS", "nsproxy", "mnt_ns"),
    ("OFF_NSPROXY_PID_NS_FOR_CHILDREN", "nsproxy", "pid_ns_for_children"),
    ("OFF_NSPROXY_NET_NS", "nsproxy", "net_ns"),
    ("OFF_NS_COMMON_INUM", "ns_common", "inum"),
    ("OFF_UTS_NAMESPACE_NS", "uts_namespace", "ns"),
    ("OFF_IPC_NAMESPACE_NS", "ipc_namespace", "ns"),
    ("OFF_MNT_NAMESPACE_NS", "mnt_namespace", "ns"),
    ("OFF_PID_NAMESPACE_NS", "pid_namespace", "ns"),
    ("OFF_NET_NS", "net", "ns"),
    ("OFF_USER_NAMESPACE_NS", "user_namespace", "ns"),
)
# Present only on some kernels; each group is used only if all of it resolves.
OPTIONAL_OFFSETS = {
    "NSG_HAVE_NS_ID": (("OFF_NS_COMMON_NS_ID", "ns_common", "ns_id"),),
    "NSG_HAVE_CGROUP_NS": (("OFF_NSPROXY_CGROUP_NS", "nsproxy", "cgroup_ns"),
                           ("OFF_CGROUP_NAMESPACE_NS", "cgroup_namespace", "ns")),
    # A fork's time on the tp_btf path: the child's start time, read instead of the clock.
    "NSG_HAVE_START_TIME": (("OFF_TASK_START_TIME", "task_struct", "start_time"),),
    # The exec probe's filename on the tp_btf path (bprm->filename).
    "NSG_HAVE_BPRM": (("OFF_BPRM_FILENAME", "linux_binprm", "filename"),),
    # x86-64 syscall wrappers' register block, for the fentry path's arguments.
    "NSG_HAVE_PT_REGS": (("OFF_PT_REGS_DI", "pt_regs", "di"), ("OFF_PT_REGS_SI", "pt_regs", "si")),
    "NSG_HAVE_TIME_NS": (("OFF_NSPROXY_TIME_NS", "nsproxy", "time_ns"),
                         ("OFF_NSPROXY_TIME_NS_FOR_CHILDREN", "nsproxy", "time_ns_for_children"),
                         ("OFF_TIME_NAMESPACE_NS", "time_namespace", "ns")),
}

# Where a fork's parent's saved user registers hold the system call number and its
# first argument, and the numbers of clone and clone3, by architecture: the fork
# probe reads them to name the call behind a namespace-making clone and its flags.
CLONE_REGS = {
    "x86_64": {"members": (("OFF_PT_REGS_SYSNR", "orig_ax"), ("OFF_PT_REGS_ARG0", "di")),
               "NSG_NR_CLONE": 56, "NSG_NR_CLONE3": 435},
    "aarch64": {"members": (("OFF_PT_REGS_SYSNR", "syscallno"), ("OFF_PT_REGS_ARG0", "orig_x0")),
                "NSG_NR_CLONE": 220, "NSG_NR_CLONE3": 435},
}


def clone_regs(btf, machine: Optional[str] = None) -> Optional[dict]:
    """OFF_PT_REGS_SYSNR/ARG0 and NSG_NR_CLONE/CLONE3 for this kernel, or None (unknown
    architecture, or a pt_regs without those members)."""
    known = CLONE_REGS.get(machine or platform.machine())
    if known is None:
        return None
    try:
        found = {macro: btf.member_offset("pt_regs", member) for macro, member in known["members"]}
    except BTFError:
        return None
    found.update(NSG_NR_CLONE=known["NSG_NR_CLONE"], NSG_NR_CLONE3=known["NSG_NR_CLONE3"])
    return found


class ProbeError(Exception):
    """The probes could not be built or attached; the message says how to fix it."""


@dataclass
class KernelLayout:
    """Offsets and optional features of the running kernel, from BTF."""

    offsets: dict
    features: dict
    source: str  # "btf" or "headers"
    upid_size: int = 16
    btf: Optional[BTF] = field(default=None, repr=False, compare=False)  # for the trampoline probe

    def spans(self) -> dict:
        """Byte ranges the probes read in one go: ns_common's inum (and ns_id), nsproxy's pointers."""
        o = self.offsets
        common = [(o["OFF_NS_COMMON_INUM"], 4)]
        if self.features.get("NSG_HAVE_NS_ID"):
            common.append((o["OFF_NS_COMMON_NS_ID"], 8))
        nsproxy = [(o[name], 8) for name in sorted(o) if name.startswith("OFF_NSPROXY_")]
        out = {}
        for prefix, members in (("NSG_COMMON", common), ("NSG_NSPROXY", nsproxy)):
            start = min(off for off, _size in members) & ~7
            end = max(off + size for off, size in members)
            out[prefix + "_START"] = start
            out[prefix + "_LEN"] = (end - start + 7) & ~7
        return out

    def cflags(self) -> list:
        flags = ["-D%s=%d" % (name, value) for name, value in sorted(self.offsets.items())]
        flags += ["-D%s=%d" % (name, int(on)) for name, on in sorted(self.features.items())]
        flags += ["-D%s=%d" % (name, value) for name, value in sorted(self.spans().items())]
        flags.append("-DSIZEOF_UPID=%d" % self.upid_size)
        return flags


def resolve_layout(btf_path: str = VMLINUX_BTF) -> KernelLayout:
    """Read every offset the probes need from the kernel's BTF."""
    try:
        btf = BTF.from_file(btf_path)
    except BTFError as exc:
        raise ProbeError(
            "cannot read kernel type information (%s). nsgraph needs a kernel built with "
            "CONFIG_DEBUG_INFO_BTF=y (every major distribution since 2020 ships one)." % exc) from exc
    offsets = {}
    try:
        for macro, struct_name, member in REQUIRED_OFFSETS:
            offsets[macro] = btf.member_offset(struct_name, member)
        upid_size = btf.struct_size("upid")
    except BTFError as exc:
        raise ProbeError("this kernel's layout is not one nsgraph understands: %s" % exc) from exc
    features = {}
    for feature, members in OPTIONAL_OFFSETS.items():
        try:
            found = {macro: btf.member_offset(s, m) for macro, s, m in members}
        except BTFError:
            features[feature] = False
            continue
        offsets.update(found)
        features[feature] = True
    regs = clone_regs(btf)
    # bpf_task_pt_regs came in 5.15.
    features["NSG_HAVE_CLONE_REGS"] = regs is not None and kernel_version() >= (5, 15)
    offsets.update(regs or {})
    return KernelLayout(offsets=offsets, features=features, source="btf", upid_size=upid_size, btf=btf)


def kernel_version() -> tuple:
    release = platform.release().split("-")[0].split(".")
    try:
        return int(release[0]), int(release[1])
    except (ValueError, IndexError):
        return (99, 0)


def kernel_has_ringbuf() -> bool:
    """BPF ring buffers arrived in Linux 5.8."""
    return kernel_version() >= (5, 8)


def kernel_has_task_storage() -> bool:
    """Task storage for tracing programs (and bpf_get_current_task_btf) arrived in Linux 5.11."""
    return kernel_version() >= (5, 11)
