"""Loading the BPF probes and draining their buffer.

Offsets of every kernel struct member the probes read come from the running
kernel's BTF (layout.py), not from the header tree BCC compiles against.  Where
BPF trampolines load (trampolines.py), unshare/setns are hooked with fentry/fexit,
else with syscall tracepoints (hook_path and hook_reason say which and why); fork,
exec and exit with tp_btf where it loads (tpbtf.py), else tracepoints (fork_hook).
"""

from __future__ import annotations

import ctypes
import os
import threading
from dataclasses import dataclass
from importlib import resources
from typing import Callable, Optional

from . import abi, ringbuf, tpbtf, trampolines
from .layout import (KernelLayout, ProbeError, kernel_has_ringbuf, kernel_has_task_storage, kernel_version,
                     resolve_layout)

DEFAULT_RINGBUF_PAGES = 2048  # 8 MiB: rides out a busy machine not scheduling the reader for ~100 ms at 100k events/s
DEFAULT_PERF_PAGES = 256
DEFAULT_PENDING_ENTRIES = 16384
DEFAULT_CGROUP_PATHS = 8192
# The reader polls every POLL_MS whatever happens (bounding a lone event's latency); the
# probes wake it early only when a CPU has filled a share of the ring (wakeup_events_for):
# a wake-up (interrupt, cross-CPU wake) costs the probe asking for it tens of us on a VM.
MAX_WAKEUP_EVENTS = 4096
LARGEST_RECORD = 512   # bytes a record takes in the ring, rounded up (exec: 328 + header)
POLL_MS = 20


def wakeup_events_for(ring_bytes: int, cpus: int) -> int:
    """Records per CPU between wake-ups: a quarter of the ring shared by all CPUs."""
    return max(1, min(MAX_WAKEUP_EVENTS, ring_bytes // (4 * max(1, cpus) * LARGEST_RECORD)))


def ebpf_source_dir() -> str:
    return str(resources.files("ebpf"))


def tracepoint_has_field(category: str, name: str, field_name: str) -> bool:
    """Whether a tracepoint's format (tracefs) has a field, e.g. sched_process_exit's group_dead."""
    for base in (TRACEFS, "/sys/kernel/debug/tracing"):
        try:
            with open(os.path.join(base, "events", category, name, "format")) as f:
                return any(line.split(";")[0].split()[-1:] == [field_name] or
                           line.split(";")[0].rstrip().endswith(" " + field_name)
                           for line in f if line.strip().startswith("field:"))
        except OSError:
            continue
    return False


def _detaching_on_failure(bpf_class):
    """bpf_class whose constructor detaches what it attached when a later program fails:
    BCC attaches one by one and has no finaliser, so without this the programs attached
    before a refused one would stay, doubling every hook's cost once the next attempt loads."""

    class Detaching(bpf_class):
        def _trace_autoload(self):
            try:
                super()._trace_autoload()
            except BaseException:
                self.cleanup()
                raise

    return Detaching


def pending_entries(wanted: int) -> int:
    """The call table's size: a power of two (it is indexed by thread id modulo its size)."""
    return 1 << (max(1, wanted) - 1).bit_length()


@dataclass
class ProbeOptions:
    proc_events: bool = True         # plain forks, exec and exit
    ringbuf_pages: int = DEFAULT_RINGBUF_PAGES
    perf_pages: int = DEFAULT_PERF_PAGES
    pending_entries: int = DEFAULT_PENDING_ENTRIES
    wakeup_events: Optional[int] = None  # None: wakeup_events_for the ring's size
    use_ringbuf: Optional[bool] = None  # None: when the kernel has it
    reader: Optional[str] = None        # ring buffer reader: "mapped", "bcc"; None: mapped where usable
    hooks: str = "auto"                 # "auto": fentry where trampolines load, else tracepoints;
                                        # "tracepoint", "fentry": only that path


@dataclass
class ProbeStats:
    perf_lost: int = 0
    callback_errors: int = 0


class Probes:
    """The loaded BPF program.  Call poll() in a loop; every record goes to on_record,
    or, given on_records, every poll's records go to it as one list, in order.

    A record is a bytes-like object valid only during the call (on x86-64 it is a
    view of the ring buffer itself): copy it with bytes() to keep it.
    """

    def __init__(self, on_record: Optional[Callable[[bytes], None]] = None,
                 options: Optional[ProbeOptions] = None, layout: Optional[KernelLayout] = None,
                 on_records: Optional[Callable[[list], None]] = None):
        if (on_record is None) == (on_records is None):
            raise ValueError("give Probes one of on_record and on_records")
        self.options = options or ProbeOptions()
        self.layout = layout or resolve_layout()
        if on_records is None:
            def on_records(records):
                for record in records:
                    on_record(record)
        self.on_records = on_records
        self.stats = ProbeStats()
        self.use_ringbuf = (kernel_has_ringbuf() if self.options.use_ringbuf is None
                            else self.options.use_ringbuf)
        self._bpf = None
        self._mapped: Optional[ringbuf.MappedRingBuffer] = None
        self._closed = False
        self._lock = threading.Lock()
        # Which hooks the probes use and why (nsgraph doctor shows both).
        self.hook_path = "tracepoint"
        self.hook_reason = ""
        self.task_storage = kernel_has_task_storage()
        self.fallback_reason = ""   # why a later attempt of _compile was used, if one was
        self.fork_hook = "raw_tracepoint"   # or "tp_btf": how sched_process_fork/exec/exit are hooked
        self._attached: list = []           # tp_btf programs loaded here, not by BCC

    @property
    def call_table(self) -> str:
        """Where syscall entries wait for their exit: "array" (direct-mapped) or "hash"."""
        return "array" if self.task_storage and kernel_version() >= (5, 12) else "hash"

    def cflags(self, fentry: bool = False, tp_btf: bool = False) -> list:
        o = self.options
        flags = self.layout.cflags()
        flags += [
            "-I%s" % ebpf_source_dir(),
            "-DNSG_USE_RINGBUF=%d" % int(self.use_ringbuf),
            "-DNSG_RINGBUF_PAGES=%d" % o.ringbuf_pages,
            "-DNSG_WAKEUP_EVENTS=%d" % self.wakeup_events(),
            "-DNSG_PROC_EVENTS=%d" % int(o.proc_events),
            "-DNSG_PENDING_ENTRIES=%d" % pending_entries(o.pending_entries),
            # A direct-mapped call table needs compare-and-swap (5.12+; BTF-typed loads came in 5.11).
            "-DNSG_CALL_ARRAY=%d" % int(self.call_table == "array"),
            "-DNSG_CGROUP_PATHS=%d" % DEFAULT_CGROUP_PATHS,
            "-DNSG_TASK_STORAGE=%d" % int(self.task_storage),
            "-DNSG_EXIT_GROUP_DEAD=%d" % int(tracepoint_has_field("sched", "sched_process_exit", "group_dead")),
            "-DNSG_HOOKS_FENTRY=%d" % int(fentry),
            "-DNSG_TP_BTF=%d" % int(tp_btf),
        ]
        if fentry:
            functions = trampolines.hook_functions()
            flags += ["-DNSG_FN_%s=%s" % (role.upper(), name) for role, name in sorted(functions.items())]
        return flags

    def wakeup_events(self) -> int:
        if self.options.wakeup_events is not None:
            return self.options.wakeup_events
        return wakeup_events_for(self.options.ringbuf_pages * ringbuf.mmap.PAGESIZE, os.cpu_count() or 1)

    def _choose_hooks(self) -> bool:
        """True for the fentry path; sets hook_path and hook_reason."""
        wanted = self.options.hooks
        if wanted == "tracepoint":
            self.hook_reason = "syscall tracepoints (asked for with hooks=tracepoint)"
            return False
        if self.layout.btf is None or not self.layout.features.get("NSG_HAVE_PT_REGS"):
            self.hook_reason = "syscall tracepoints: the kernel's BTF lacks what the fentry path reads"
            return False
        found = trampolines.probe(self.layout.btf)
        self.hook_reason = found.reason
        if not found.usable and wanted == "fentry":
            raise ProbeError("the fentry path was asked for but %s" % found.reason)
        return found.usable

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
        self._bpf, fentry = self._compile(BPF, text, self._choose_hooks())
        self.hook_path = "fentry" if fentry else "tracepoint"
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

    def _compile(self, bpf_class, text: str, fentry: bool):
        """Compile and attach; falls back from fentry to tracepoints, from tp_btf fork/exec/
        exit probes (typed reads; need the BTF-typed build) to tracepoints, and from task
        storage to a hash."""
        tp_btf = self.task_storage and self.use_ringbuf and bool(self.layout.features.get("NSG_HAVE_BPRM"))
        attempts = []
        for attempt in ((fentry, self.task_storage, tp_btf), (fentry, self.task_storage, False),
                        (False, self.task_storage, tp_btf), (False, self.task_storage, False), (False, False, False)):
            attempts += [attempt] if attempt not in attempts else []
        first_error = None
        cleaning_class = _detaching_on_failure(bpf_class)
        for use_fentry, use_storage, use_btf in attempts:
            self.task_storage = use_storage
            try:
                bpf = cleaning_class(text=text.encode(), cflags=self.cflags(fentry=use_fentry, tp_btf=use_btf))
            except Exception as exc:
                first_error = first_error or exc
                self.fallback_reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
                if use_fentry:
                    self.hook_reason += "; but the full program failed on the fentry path (%s): using " \
                                        "syscall tracepoints" % str(exc).splitlines()[0][:160]
                continue
            if use_btf:
                try:
                    self._attached = tpbtf.attach_all(bpf, self.layout.btf, self.options.proc_events)
                except (tpbtf.TpBtfError, OSError) as exc:
                    bpf.cleanup()
                    first_error = first_error or exc
                    self.fallback_reason = str(exc)[:300]
                    continue
            self.fork_hook = "tp_btf" if use_btf else "raw_tracepoint"
            return bpf, use_fentry
        raise ProbeError(
            "compiling or loading the probes failed: %s. Run 'nsgraph doctor' to check the "
            "kernel header tree, tracefs and BPF permissions." % first_error) from first_error

    def _ring_callback(self, _ctx, data, size):
        self._deliver([ctypes.string_at(data, size)])
        return 0

    def _deliver(self, records: list) -> None:
        try:
            self.on_records(records)
        except Exception:
            # A consumer bug must not kill the poll loop silently: counted, shown in the summary.
            self.stats.callback_errors += 1
            if self.stats.callback_errors == 1:
                import traceback
                traceback.print_exc()

    def _lost_callback(self, lost):
        self.stats.perf_lost += lost

    def poll(self, timeout_ms: int = POLL_MS, idle_ms: int = 0) -> None:
        """Wait up to timeout_ms, hand over what came; idle_ms: MappedRingBuffer.poll's."""
        if self._bpf is None:
            raise ProbeError("probes are not loaded")
        if self._mapped is not None:
            self._mapped.poll(timeout_ms, self._deliver, idle_ms, self._arm_wake)
        elif self.use_ringbuf:
            self._bpf.ring_buffer_poll(timeout_ms)
            # Events submitted without a wake-up do not end epoll_wait; pick them up here.
            self._bpf.ring_buffer_consume()
        else:
            self._bpf.perf_buffer_poll(timeout_ms)

    def _arm_wake(self) -> None:
        self._bpf[b"gates"][ctypes.c_int(abi.GATE_READER_ASLEEP)] = ctypes.c_uint64(1)

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
        if self._bpf is None:
            return None
        table = self._bpf[b"cgroup_paths"]
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
                for attached in self._attached:
                    attached.close()
                self._attached = []
                self._bpf.cleanup()
                self._bpf = None


TRACEFS = "/sys/kernel/tracing"


def tracefs_mounted() -> bool:
    return os.path.isdir(os.path.join(TRACEFS, "events"))


def tracefs_status(mountinfo: str = "/proc/self/mountinfo") -> str:
    """"ok", "unreadable" (mounted, but this user may not read it: mode 0700 is the
    kernel's default) or "absent" (not mounted).  The mount table is readable by
    anyone, so a non-root user learns which one it is."""
    if tracefs_mounted():
        return "ok"
    try:
        with open(mountinfo) as f:
            for line in f:
                fields = line.split()
                sep = fields.index("-") if "-" in fields else -1
                if len(fields) > 4 and sep > 0 and fields[4] in (TRACEFS, "/sys/kernel/debug") \
                        and fields[sep + 1] in ("tracefs", "debugfs"):
                    return "unreadable"
    except OSError:
        pass
    return "absent"


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
