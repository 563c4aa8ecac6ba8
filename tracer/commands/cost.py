"""`nsgraph doctor --cost`: what the running tracers' BPF programs cost, measured by
the kernel (tracer/kernel/probecost.py measures; this module prints)."""

from __future__ import annotations

import json
import sys
from typing import List

from ..exitcodes import EXIT_FAILURE, EXIT_NO_PRIVILEGES, EXIT_OK, EXIT_USAGE


def format_reports(reports, as_json: bool) -> List[str]:
    """The lines `doctor --cost` prints: a table per tracer, or JSON Lines (one per program, then a total)."""
    lines = []
    for report in reports:
        if as_json:
            for p in report.programs:
                lines.append(json.dumps({
                    "pid": report.tracer.pid, "command": report.tracer.command, "program": p.name,
                    "prog_id": p.id, "runs": p.runs, "run_time_ns": p.run_time_ns, "ns_per_run": p.ns_per_run,
                    "seconds": round(report.seconds, 3)}))
            lines.append(json.dumps({
                "pid": report.tracer.pid, "command": report.tracer.command, "program": "total",
                "run_time_ns": report.total_ns, "cpu_share": report.cpu_share(), "records": report.records,
                "ns_per_record": report.ns_per_record(), "lost": report.lost, "seconds": round(report.seconds, 3)}))
            continue
        lines.append("pid %d (%s), %.1f s:" % (report.tracer.pid, report.tracer.command, report.seconds))
        lines.append("  %-7s %-26s %10s %9s %9s" % ("ID", "PROGRAM", "RUNS/S", "NS/RUN", "CPU%"))
        for p in report.programs:
            per_run = p.ns_per_run
            lines.append("  %-7d %-26s %10.0f %9s %9.3f" % (
                p.id, p.name, p.runs / report.seconds, "-" if per_run is None else "%.0f" % per_run,
                100.0 * p.run_time_ns / (report.seconds * 1e9)))
        per_record = report.ns_per_record()
        lines.append("  total: %.3f %% of one CPU; %s records/s%s%s" % (
            100.0 * report.cpu_share(),
            "?" if report.records is None else "%.0f" % (report.records / report.seconds),
            "" if per_record is None else ", %.0f ns of BPF time per record" % per_record,
            ", %d lost" % report.lost if report.lost else ""))
    return lines


def run_cost(args) -> int:
    """Per-program BPF time of the running tracers over args.seconds."""
    from ..kernel import probecost
    from ..kernel.bpfstats import BPFStatsError
    from ..kernel.probes import missing_privileges
    problem = missing_privileges()
    if problem:
        print("nsgraph doctor: --cost reads BPF statistics: %s" % problem, file=sys.stderr)
        return EXIT_NO_PRIVILEGES
    if not args.seconds > 0:
        print("nsgraph doctor: --seconds must be positive", file=sys.stderr)
        return EXIT_USAGE
    tracers = probecost.find_tracers()
    if not tracers:
        print("nsgraph doctor: no nsgraph tracer is running (start `nsgraph serve` or `nsgraph trace`, "
              "then measure it with --cost)", file=sys.stderr)
        return EXIT_FAILURE
    def window_open() -> None:
        # Printed once the statistics are on and sampled: tests start their workload on it.
        print("measuring %d tracer(s) for %.0f s with the kernel's BPF statistics switched on..."
              % (len(tracers), args.seconds), file=sys.stderr, flush=True)

    try:
        reports = probecost.measure(tracers, args.seconds, on_open=window_open)
    except BPFStatsError as exc:
        print("nsgraph doctor: %s" % exc, file=sys.stderr)
        return EXIT_FAILURE
    for line in format_reports(reports, args.json):
        print(line)
    return EXIT_OK
