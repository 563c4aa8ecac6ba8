"""What a running tracer's BPF programs cost, measured by the kernel: the live
half of `nsgraph doctor --cost` (bench/bench_probe_cost.py is the lab half).

A tracer is any process holding BPF programs whose names are nsgraph's probes
(BCC names them after their hooks: tracepoint__syscalls__sys_enter_unshare,
raw_tracepoint__sched_process_fork, kfunc__ksys_unshare...; tpbtf.full_name gives
the tp_btf fork probe the name tp_btf__sched_process_fork).  Its programs are
sampled twice with the kernel's statistics switched on in between; the
difference is each program's runs and run time over the window, and the
records it sent come from its `counters` map.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

from . import abi, bpfstats

# Every hook nsgraph's probes use, as the suffix of the BCC program name.
PROBE_HOOKS = ("sched_process_fork", "sched_process_exec", "sched_process_exit", "cgroup_mkdir",
               "sys_enter_clone", "sys_exit_clone", "sys_enter_clone3", "sys_exit_clone3",
               "sys_enter_unshare", "sys_exit_unshare", "sys_enter_setns", "sys_exit_setns",
               "ksys_unshare", "__x64_sys_setns", "__x64_sys_clone", "__x64_sys_clone3")


def is_probe_name(name: str) -> bool:
    return name.endswith(PROBE_HOOKS) and name.startswith(("tracepoint__", "raw_tracepoint__", "tp_btf__",
                                                           "kfunc__", "kretfunc__"))


@dataclass
class Tracer:
    pid: int
    command: str
    prog_ids: List[int]


def _command(pid: int) -> str:
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            argv = [a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return "?"
    # "python -m tracer.cli serve" and ".venv/bin/nsgraph serve" both read as "nsgraph serve".
    for i, arg in enumerate(argv):
        if arg == "tracer.cli" or os.path.basename(arg) == "nsgraph":
            return " ".join(["nsgraph"] + argv[i + 1:i + 2])
    return " ".join(argv)[:60]


def find_tracers() -> List[Tracer]:
    """Processes holding nsgraph's probe programs."""
    found = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        pid = int(entry)
        ids = bpfstats.prog_ids_of(pid)
        if not ids:
            continue
        samples = bpfstats.sample_all(ids)
        mine = [i for i, s in samples.items() if is_probe_name(s.name)]
        if mine:
            found.append(Tracer(pid, _command(pid), sorted(samples)))
    return found


@dataclass
class CostReport:
    tracer: Tracer
    seconds: float
    programs: List[bpfstats.ProgramCost] = field(default_factory=list)
    records: Optional[int] = None      # records the probes handed to the buffer meanwhile
    lost: Optional[int] = None

    @property
    def total_ns(self) -> int:
        return sum(p.run_time_ns for p in self.programs)

    def cpu_share(self) -> float:
        """BPF time as a fraction of one CPU."""
        return self.total_ns / (self.seconds * 1e9) if self.seconds else 0.0

    def ns_per_record(self) -> Optional[float]:
        return self.total_ns / self.records if self.records else None


def _counters(samples: Dict[int, bpfstats.ProgramSample]) -> Optional[List[int]]:
    map_ids = sorted({m for s in samples.values() for m in s.map_ids})
    return bpfstats.percpu_array_sums(map_ids, "counters")


def measure(tracers: List[Tracer], seconds: float, sleep: Callable[[float], None] = time.sleep,
            on_open: Callable[[], None] = lambda: None) -> List[CostReport]:
    """Sample every tracer's programs `seconds` apart, statistics on in between.

    on_open() is called once the statistics are on and the first sample taken: what
    happens from then on is in the window (before it, a run may be counted or not)."""
    with bpfstats.enabled():
        before = {t.pid: bpfstats.sample_all(t.prog_ids) for t in tracers}
        counters_before = {t.pid: _counters(before[t.pid]) for t in tracers}
        started = time.monotonic()
        on_open()
        sleep(seconds)
        after = {t.pid: bpfstats.sample_all(t.prog_ids) for t in tracers}
        elapsed = time.monotonic() - started
    reports = []
    for t in tracers:
        report = CostReport(t, elapsed)
        for c in bpfstats.diff(before[t.pid], after[t.pid]):
            report.programs.append(bpfstats.ProgramCost(c.id, bpfstats.short_name(c.name), c.runs, c.run_time_ns))
        c0, c1 = counters_before[t.pid], _counters(after[t.pid])
        if c0 and c1:
            report.records = c1[abi.CNT_EVENTS] - c0[abi.CNT_EVENTS]
            report.lost = (c1[abi.CNT_RINGBUF_FULL] - c0[abi.CNT_RINGBUF_FULL]) + \
                (c1[abi.CNT_PENDING_FULL] - c0[abi.CNT_PENDING_FULL])
        reports.append(report)
    return reports
