"""Loading the BPF probes and draining their buffer.

Offsets of every kernel struct member the probes read come from the running
kernel's BTF (btf.py); the header tree BCC compiles against is used for
nothing but the compiler's own includes.
"""

from __future__ import annotations

import ctypes
import os
import platform
import threading
from dataclasses import dataclass
from importlib import resources
from typing import Callable, Optional

from . import abi, ringbuf
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
    ("OFF_MM_ARG_START", "mm_struct", "arg_start"),
    ("OFF_MM_ARG_END", "mm_struct", "arg_end"),
    ("OFF_SIGNAL_STRUCT_LIVE", "signal_struct", "live"),
    ("OFF_CRED_USER_NS", "cred", "user_ns"),
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
    "NSG_HAVE_TIME_NS": (("OFF_NSPROXY_TIME_NS", "nsproxy", "time_ns"),
                         ("OFF_NSPROXY_TIME_NS_FOR_CHILDREN", "nsproxy", "time_ns_for_children"),
                         ("OFF_TIME_NAMESPACE_NS", "time_namespace", "ns")),
}

DEFAULT_RINGBUF_PAGES = 2048  # 8 MiB: rides out a busy machine not scheduling the reader for ~100 ms at 100k events/s
DEFAULT_PERF_PAGES = 256
DEFAULT_PENDING_ENTRIES = 16384
DEFAULT_CGROUP_PATHS = 8192
# Wake the reader once per this many events on a CPU; the reader's poll timeout
# (POLL_MS) picks up the rest, so latency stays bounded without a wake-up per event.
DEFAULT_WAKEUP_EVENTS = 64
POLL_MS = 20


class ProbeError(Exception):
    """The probes could not be built or attached; the message says how to fix it."""


@dataclass
class KernelLayout:
    """Offsets and optional features of the running kernel, from BTF."""

    offsets: dict
    features: dict
    source: str  # "btf" or "headers"
    upid_size: int = 16

    def cflags(self) -> list:
        flags = ["-D%s=%d" % (name, value) for name, value in sorted(self.offsets.items())]
        flags += ["-D%s=%d" % (name, int(on)) for name, on in sorted(self.features.items())]
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
    return KernelLayout(offsets=offsets, features=features, source="btf", upid_size=upid_size)


def ebpf_source_dir() -> str:
    return str(resources.files("ebpf"))


def kernel_has_ringbuf() -> bool:
    """BPF ring buffers arrived in Linux 5.8."""
    release = platform.release().split("-")[0].split(".")
    try:
        major, minor = int(release[0]), int(release[1])
    except (ValueError, IndexError):
        return True
    return (major, minor) >= (5, 8)


@dataclass
class ProbeOptions:
    proc_events: bool = True         # plain forks, exec and exit
    ringbuf_pages: int = DEFAULT_RINGBUF_PAGES
    perf_pages: int = DEFAULT_PERF_PAGES
    pending_entries: int = DEFAULT_PENDING_ENTRIES
    wakeup_events: int = DEFAULT_WAKEUP_EVENTS
    use_ringbuf: Optional[bool] = None  # None: when the kernel has it
    reader: Optional[str] = None        # ring buffer reader: "mapped", "bcc"; None: mapped where usable


@dataclass
class ProbeStats:
    perf_lost: int = 0
    callback_errors: int = 0


class Probes:
    """The loaded BPF program.  Call poll() in a loop; every record goes to on_record.

    A record is a bytes-like object valid only during the call (on x86-64 it is a
    view of the ring buffer itself): copy it with bytes() to keep it.
    """

    def __init__(self, on_record: Callable[[bytes], None], options: Optional[ProbeOptions] = None,
                 layout: Optional[KernelLayout] = None):
        self.options = options or ProbeOptions()
        self.layout = layout or resolve_layout()
        self.on_record = on_record
        self.stats = ProbeStats()
        self.use_ringbuf = (kernel_has_ringbuf() if self.options.use_ringbuf is None
                            else self.options.use_ringbuf)
        self._bpf = None
        self._mapped: Optional[ringbuf.MappedRingBuffer] = None
        self._closed = False
        self._lock = threading.Lock()

    def cflags(self) -> list:
        o = self.options
        flags = self.layout.cflags()
        flags += [
            "-I%s" % ebpf_source_dir(),
            "-DNSG_USE_RINGBUF=%d" % int(self.use_ringbuf),
            "-DNSG_RINGBUF_PAGES=%d" % o.ringbuf_pages,
            "-DNSG_WAKEUP_EVENTS=%d" % o.wakeup_events,
            "-DNSG_PROC_EVENTS=%d" % int(o.proc_events),
            "-DNSG_PENDING_ENTRIES=%d" % o.pending_entries,
            "-DNSG_CGROUP_PATHS=%d" % DEFAULT_CGROUP_PATHS,
        ]
        return flags

    def load(self) -> None:
        """Compile and attach.  Raises ProbeError with a fix on every known failure."""
        check_privileges()
        try:
            from bcc import BPF  # imported here so that nothing needs BCC until tracing
        except ImportError as exc:
            raise ProbeError(
                "BCC's Python module is not importable from %s (%s). Install the distribution "
                "package (apt-get install python3-bpfcc) and run nsgraph from a venv made with "
                "'/usr/bin/python3 -m venv --system-site-packages' (scripts/setup.sh does this). "
                "Do not 'pip install bcc': that is an unrelated package." % (os.sys.executable, exc)) from exc
        ensure_tracefs()
        path = os.path.join(ebpf_source_dir(), "nsgraph.bpf.c")
        try:
            with open(path) as f:
                text = f.read()
        except OSError as exc:
            raise ProbeError("cannot read the probe source %s: %s (reinstall nsgraph)" % (path, exc)) from exc
        try:
            self._bpf = BPF(text=text.encode(), cflags=self.cflags())
        except Exception as exc:
            raise ProbeError(
                "compiling or loading the probes failed: %s. Run 'nsgraph doctor' to check the "
                "kernel header tree, tracefs and BPF permissions." % exc) from exc
        try:
            mapped = self.options.reader == "mapped" or (self.options.reader is None and ringbuf.usable())
            if self.use_ringbuf and mapped:
                self._mapped = ringbuf.MappedRingBuffer(self._bpf[b"events"].map_fd,
                                                        self.options.ringbuf_pages * ringbuf.mmap.PAGESIZE)
            elif self.use_ringbuf:
                self._bpf[b"events"].open_ring_buffer(self._ring_callback)
            else:
                self._bpf[b"events"].open_perf_buffer(self._ring_callback, page_cnt=self.options.perf_pages,
                                                     lost_cb=self._lost_callback)
        except Exception as exc:
            self.close()
            raise ProbeError("opening the event buffer failed: %s" % exc) from exc

    def _ring_callback(self, _ctx, data, size):
        self._deliver(ctypes.string_at(data, size))
        return 0

    def _deliver(self, record) -> None:
        try:
            self.on_record(record)
        except Exception:
            # A consumer bug must not kill the poll loop silently: counted, shown in the summary.
            self.stats.callback_errors += 1
            if self.stats.callback_errors == 1:
                import traceback
                traceback.print_exc()

    def _lost_callback(self, lost):
        self.stats.perf_lost += lost

    def poll(self, timeout_ms: int = POLL_MS) -> None:
        if self._bpf is None:
            raise ProbeError("probes are not loaded")
        if self._mapped is not None:
            self._mapped.poll(timeout_ms, self._deliver)
        elif self.use_ringbuf:
            self._bpf.ring_buffer_poll(timeout_ms)
            # Events submitted without a wake-up do not end epoll_wait; pick them up here.
            self._bpf.ring_buffer_consume()
        else:
            self._bpf.perf_buffer_poll(timeout_ms)

    def counters(self) -> dict:
        """Kernel-side counters summed over CPUs, plus user-side losses."""
        out = {"ringbuf_full": 0, "pending_full": 0, "submitted": 0}
        if self._bpf is not None:
            table = self._bpf[b"counters"]
            names = {abi.CNT_RINGBUF_FULL: "ringbuf_full", abi.CNT_PENDING_FULL: "pending_full",
                     abi.CNT_EVENTS: "submitted"}
            for slot, name in names.items():
                values = table[ctypes.c_int(slot)]
                out[name] = int(sum(values))
        out["perf_lost"] = self.stats.perf_lost
        out["callback_errors"] = self.stats.callback_errors
        return out

    def cgroup_path(self, cgroup_id: int) -> Optional[str]:
        """The path a cgroup v2 id had when it was made (since the probes attached), if known."""
        bpf = self._bpf
        if bpf is None:
            return None
        table = bpf[b"cgroup_paths"]
        try:
            value = table[table.Key(cgroup_id)]
        except KeyError:
            return None
        raw = bytes(value.path)
        return raw.partition(b"\0")[0].decode("utf-8", "replace") or None

    def lost(self) -> int:
        c = self.counters()
        return c["ringbuf_full"] + c["pending_full"] + c["perf_lost"]

    def close(self) -> None:
        with self._lock:
            if self._bpf is not None and not self._closed:
                self._closed = True
                if self._mapped is not None:
                    self._mapped.close()
                    self._mapped = None
                self._bpf.cleanup()
                self._bpf = None


TRACEFS = "/sys/kernel/tracing"


def tracefs_mounted() -> bool:
    return os.path.isdir(os.path.join(TRACEFS, "events"))


def ensure_tracefs() -> None:
    """Syscall tracepoints need tracefs; mount it when we can (we are root here)."""
    if tracefs_mounted():
        return
    if os.path.isdir("/sys/kernel/debug/tracing/events"):
        return
    rc = os.system("mount -t tracefs nodev %s >/dev/null 2>&1" % TRACEFS)
    if rc != 0 or not tracefs_mounted():
        raise ProbeError("tracefs is not mounted at %s and mounting it failed. Run: "
                         "mount -t tracefs nodev %s" % (TRACEFS, TRACEFS))


CAP_SYS_ADMIN = 21
CAP_PERFMON = 38
CAP_BPF = 39


def effective_capabilities() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError):
        pass
    return 0


def missing_privileges() -> Optional[str]:
    """None when this process may load tracing BPF programs, else what is missing."""
    caps = effective_capabilities()
    has_admin = bool(caps & (1 << CAP_SYS_ADMIN))
    has_bpf = bool(caps & (1 << CAP_BPF)) and bool(caps & (1 << CAP_PERFMON))
    if has_admin or has_bpf:
        return None
    return ("tracing needs root, or CAP_BPF and CAP_PERFMON (running as uid %d without them). "
            "Run it with sudo." % os.geteuid())


class PrivilegeError(ProbeError):
    pass


def check_privileges() -> None:
    problem = missing_privileges()
    if problem:
        raise PrivilegeError(problem)
