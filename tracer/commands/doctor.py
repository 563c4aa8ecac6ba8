"""`nsgraph doctor`: can this machine trace namespaces, and if not, how to fix it."""

from __future__ import annotations

import argparse
import errno
import gzip
import json
import os
import platform
import sys
from dataclasses import asdict, dataclass
from typing import List, Optional

from ..exitcodes import EXIT_FAILURE, EXIT_OK

EXAMPLES = """\
examples:
  sudo nsgraph doctor            # every check, including a real probe load (about a second)
  sudo nsgraph doctor --quick    # skip the probe load
  nsgraph doctor --json          # one JSON object per check
  sudo nsgraph doctor --cost     # what the running tracer's probes cost, measured by the kernel
  sudo nsgraph doctor --cost --seconds 30 --json

Each line is OK, WARN (tracing works, something optional is missing) or FAIL
(tracing cannot work); FAIL lines say how to fix it. Exit status 0 when tracing
can work, 1 when it cannot.
"""

OK, WARN, FAIL, INFO = "OK", "WARN", "FAIL", "INFO"


@dataclass
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "doctor", help="check that this machine can trace namespaces, with fixes",
        description="Check root/capabilities, kernel, BTF, tracefs, BCC, kernel headers, Docker "
                    "and the kernel's optional eBPF features.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="do not compile and attach the probes")
    parser.add_argument("--json", action="store_true", help="JSON Lines output")
    parser.add_argument("--cost", action="store_true",
                        help="measure the BPF programs of running nsgraph tracers (serve, trace) with the "
                             "kernel's own counters instead of checking the machine")
    parser.add_argument("--seconds", type=float, default=5.0, metavar="S",
                        help="how long --cost measures (default 5)")
    parser.set_defaults(func=run)
    return parser


def kernel_config(option: str) -> Optional[str]:
    """The value of a kernel config option from /proc/config.gz or /boot/config-*, if readable."""
    paths = ["/proc/config.gz", "/boot/config-%s" % platform.release()]
    for path in paths:
        try:
            opener = gzip.open if path.endswith(".gz") else open
            with opener(path, "rt") as f:
                for line in f:
                    if line.startswith(option + "="):
                        return line.strip().split("=", 1)[1]
                    if line.startswith("# %s is not set" % option):
                        return "n"
            return "n"
        except OSError:
            continue
    return None


def check_privileges() -> Check:
    from ..kernel.probes import missing_privileges
    problem = missing_privileges()
    if problem:
        return Check("privileges", FAIL, problem, "run with sudo, or grant CAP_BPF and CAP_PERFMON")
    return Check("privileges", OK, "uid %d with the capabilities to load tracing BPF programs" % os.geteuid())


def check_kernel() -> Check:
    release = platform.release()
    try:
        major, minor = (int(x) for x in release.split("-")[0].split(".")[:2])
    except ValueError:
        return Check("kernel", WARN, "cannot parse kernel release %r" % release)
    if (major, minor) < (5, 5):
        return Check("kernel", FAIL, "Linux %s is too old: nsgraph needs 5.5 or newer (BTF, "
                     "bpf_probe_read_kernel, raw tracepoints)" % release, "boot a newer kernel")
    return Check("kernel", OK, "Linux %s (%s)" % (release, platform.machine()))


def check_btf() -> tuple:
    from ..kernel.layout import ProbeError, resolve_layout
    try:
        layout = resolve_layout()
    except ProbeError as exc:
        return Check("btf", FAIL, str(exc), "use a kernel built with CONFIG_DEBUG_INFO_BTF=y"), None
    return Check("btf", OK, "/sys/kernel/btf/vmlinux: %d struct offsets resolved (e.g. ns_common.inum at %d)"
                 % (len(layout.offsets), layout.offsets["OFF_NS_COMMON_INUM"])), layout


def check_tracefs() -> Check:
    from ..kernel.probes import TRACEFS, ProbeError, ensure_tracefs, tracefs_mounted
    if tracefs_mounted():
        return Check("tracefs", OK, "mounted at %s" % TRACEFS)
    if os.geteuid() == 0:
        try:
            ensure_tracefs()
            return Check("tracefs", OK, "was not mounted; mounted it at %s" % TRACEFS)
        except ProbeError as exc:
            return Check("tracefs", FAIL, str(exc), "mount -t tracefs nodev %s" % TRACEFS)
    return Check("tracefs", FAIL, "not mounted at %s" % TRACEFS, "sudo mount -t tracefs nodev %s" % TRACEFS)


def check_bcc() -> Check:
    try:
        import bcc
    except ImportError as exc:
        return Check("bcc", FAIL, "BCC is not importable from %s (%s)" % (sys.executable, exc),
                     "apt-get install python3-bpfcc, and run nsgraph from a venv made with "
                     "'/usr/bin/python3 -m venv --system-site-packages' (scripts/setup.sh does both); "
                     "never 'pip install bcc' (an unrelated package)")
    version = getattr(bcc, "__version__", "unknown version")
    return Check("bcc", OK, "BCC %s importable from %s" % (version, sys.executable))


def check_headers() -> Check:
    release = platform.release()
    build = "/lib/modules/%s/build" % release
    if not os.path.isdir(os.path.join(build, "include")):
        return Check("headers", FAIL, "no kernel header tree at %s: BCC needs one to compile the probes" % build,
                     "apt-get install linux-headers-%s, or where the distribution has none for this kernel, "
                     "the generic headers package and links as scripts/setup.sh makes them" % release)
    target = os.path.realpath(build)
    version_hint = os.path.basename(target)
    if release not in target:
        return Check("headers", OK, "%s -> %s (another kernel's headers: used only to compile; "
                     "struct layouts come from BTF)" % (build, target))
    return Check("headers", OK, "%s (%s)" % (build, version_hint))


def check_docker() -> Check:
    try:
        import docker  # noqa: F401  (only to tell a missing SDK from an unreachable engine)
    except ImportError as exc:
        return Check("docker", WARN, "the Docker SDK is not importable from %s (%s): tracing works, container "
                     "names and demos need it" % (sys.executable, exc),
                     "run nsgraph from the venv scripts/setup.sh makes (it installs the 'docker' package)")
    from ..containers.docker_client import docker_client
    try:
        client = docker_client()
        info = client.version()
        return Check("docker", OK, "Docker engine %s reachable" % info.get("Version", "?"))
    except Exception as exc:
        return Check("docker", WARN, "Docker engine not reachable (%s): tracing works, container names "
                     "and demos need it" % str(exc).splitlines()[0][:120],
                     "start it: systemctl start docker, or 'dockerd >/var/log/dockerd.log 2>&1 &'")


def feature_checks(layout) -> List[Check]:
    from ..kernel.layout import kernel_has_ringbuf
    checks = []
    ringbuf = kernel_has_ringbuf()
    checks.append(Check("feature ringbuf", INFO, "BPF ring buffer %s; the tracer uses %s" % (
        "available" if ringbuf else "not available (Linux < 5.8)",
        "the ring buffer" if ringbuf else "a perf buffer")))
    if layout is not None:
        has_id = layout.features.get("NSG_HAVE_NS_ID", False)
        checks.append(Check("feature ns_id", INFO, (
            "ns_common.ns_id present: events carry the kernel's 64-bit namespace ids (used)" if has_id else
            "ns_common.ns_id absent (before Linux 6.18): events carry inode numbers only; "
            "identity falls back to (type, device, inode, generation)")))
        for feature, label in (("NSG_HAVE_TIME_NS", "time namespaces"), ("NSG_HAVE_CGROUP_NS", "cgroup namespaces")):
            checks.append(Check("feature %s" % label.split()[0], INFO, "%s %s" % (
                label, "traced" if layout.features.get(feature) else "not in this kernel")))
    kprobes = kernel_config("CONFIG_KPROBES")
    if kprobes is None:
        kprobes_text = "unknown (no readable kernel config)" + (
            "; kprobe_events exists" if os.path.exists("/sys/kernel/tracing/kprobe_events") else "")
    else:
        kprobes_text = "available" if kprobes == "y" else "not in this kernel (CONFIG_KPROBES off)"
    checks.append(Check("feature kprobes", INFO, "kprobes %s; not used (tracepoints only)" % kprobes_text))
    checks.append(check_trampolines(layout))
    return checks


def check_trampolines(layout) -> Check:
    """Whether fentry/fexit load on the functions behind unshare, setns and clone."""
    config = kernel_config("CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS")
    config_text = {"y": "kernel config has BPF trampolines", "n": "kernel config lacks "
                   "CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS"}.get(config, "kernel config unknown")
    from ..kernel.probes import missing_privileges
    if layout is None or layout.btf is None or missing_privileges():
        return Check("feature fentry", INFO, "fentry/fexit not probed (needs root and BTF); %s" % config_text)
    from ..kernel import trampolines
    found = trampolines.probe(layout.btf)
    tried = ", ".join("%s %s: %s" % (label, fn, "ok" if not err else errno.errorcode.get(err, str(err)))
                      for fn, label, err in found.tried)
    hint = ""
    if found.tried and found.tried[-1][2] == errno.EPERM:
        # Seen on a vendor 6.18 kernel that refuses trampoline programs to every process but PID 1.
        hint = "; EPERM as root means the kernel or its platform forbids BPF trampolines (README: How it works)"
    return Check("feature fentry", INFO, "%s (%s; tried %s%s)" % (found.reason, config_text, tried or "nothing", hint))


def check_probe_load(layout) -> Check:
    import time

    from ..kernel.probes import ProbeError, ProbeOptions, Probes
    started = time.monotonic()
    try:
        probes = Probes(lambda data: None, options=ProbeOptions(proc_events=True), layout=layout)
        probes.load()
        probes.close()
    except ProbeError as exc:
        return Check("probes", FAIL, str(exc), "fix the FAIL lines above first; then see the message")
    return Check("probes", OK, "compiled and attached every probe in %.1f s; hooks: %s" % (
        time.monotonic() - started, "fentry/fexit (untraced system calls pay nothing)" if probes.hook_path == "fentry"
        else "syscall tracepoints (%s)" % probes.hook_reason.split(";")[0]))


def run(args) -> int:
    if args.cost:
        return run_cost(args)
    checks = [check_privileges(), check_kernel()]
    btf_check, layout = check_btf()
    checks.append(btf_check)
    checks.append(check_tracefs())
    checks.append(check_bcc())
    checks.append(check_headers())
    checks.append(check_docker())
    checks.extend(feature_checks(layout))
    if not args.quick and not any(c.status == FAIL for c in checks):
        checks.append(check_probe_load(layout))
    for check in checks:
        if args.json:
            print(json.dumps(asdict(check)))
        else:
            line = "[%-4s] %-18s %s" % (check.status, check.name, check.detail)
            if check.fix:
                line += "\n       %-18s fix: %s" % ("", check.fix)
            print(line)
    failed = [c for c in checks if c.status == FAIL]
    if not args.json:
        print("tracing can work" if not failed else
              "tracing cannot work: %d check(s) failed" % len(failed), file=sys.stderr)
    return EXIT_FAILURE if failed else EXIT_OK


def run_cost(args) -> int:
    """`nsgraph doctor --cost`: per-program BPF time of the running tracers."""
    from ..kernel import probecost
    from ..kernel.bpfstats import BPFStatsError
    from ..kernel.probes import missing_privileges
    problem = missing_privileges()
    if problem:
        print("nsgraph doctor: --cost reads BPF statistics: %s" % problem, file=sys.stderr)
        return EXIT_FAILURE
    if not args.seconds > 0:
        print("nsgraph doctor: --seconds must be positive", file=sys.stderr)
        return EXIT_FAILURE
    tracers = probecost.find_tracers()
    if not tracers:
        print("nsgraph doctor: no nsgraph tracer is running (start `nsgraph serve` or `nsgraph trace`, "
              "then measure it with --cost)", file=sys.stderr)
        return EXIT_FAILURE
    print("measuring %d tracer(s) for %.0f s with the kernel's BPF statistics switched on..."
          % (len(tracers), args.seconds), file=sys.stderr, flush=True)
    try:
        reports = probecost.measure(tracers, args.seconds)
    except BPFStatsError as exc:
        print("nsgraph doctor: %s" % exc, file=sys.stderr)
        return EXIT_FAILURE
    for report in reports:
        if args.json:
            for p in report.programs:
                print(json.dumps({"pid": report.tracer.pid, "command": report.tracer.command, "program": p.name,
                                  "prog_id": p.id, "runs": p.runs, "run_time_ns": p.run_time_ns, "ns_per_run": p.ns_per_run,
                                  "seconds": round(report.seconds, 3)}))
            print(json.dumps({"pid": report.tracer.pid, "command": report.tracer.command, "program": "total",
                              "run_time_ns": report.total_ns, "cpu_share": report.cpu_share(),
                              "records": report.records, "ns_per_record": report.ns_per_record(),
                              "lost": report.lost, "seconds": round(report.seconds, 3)}))
            continue
        print("pid %d (%s), %.1f s:" % (report.tracer.pid, report.tracer.command, report.seconds))
        print("  %-7s %-26s %10s %9s %9s" % ("ID", "PROGRAM", "RUNS/S", "NS/RUN", "CPU%"))
        for p in report.programs:
            per_run = p.ns_per_run
            print("  %-7d %-26s %10.0f %9s %9.3f" % (p.id, p.name, p.runs / report.seconds,
                                                 "-" if per_run is None else "%.0f" % per_run,
                                                 100.0 * p.run_time_ns / (report.seconds * 1e9)))
        per_record = report.ns_per_record()
        print("  total: %.3f %% of one CPU; %s records/s%s%s" % (
            100.0 * report.cpu_share(), "?" if report.records is None else "%.0f" % (report.records / report.seconds),
            "" if per_record is None else ", %.0f ns of BPF time per record" % per_record,
            ", %d lost" % report.lost if report.lost else ""))
    return EXIT_OK
