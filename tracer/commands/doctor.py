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
  sudo nsgraph doctor --cost     # what the running tracers' probes cost, measured by the kernel
  sudo nsgraph doctor --cost --seconds 30 --json

Each line is OK, WARN (tracing works, something optional is missing) or FAIL
(tracing cannot work); FAIL lines say how to fix it. Exit status %d when tracing
can work, %d when it cannot.
""" % (EXIT_OK, EXIT_FAILURE)

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


def kernel_config(option: str, paths: Optional[List[str]] = None) -> Optional[str]:
    """The value of a kernel config option from /proc/config.gz or /boot/config-*, if readable:
    "y", "m", a string, "n" (unset or absent from a readable config), None (no config readable)."""
    if paths is None:
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
        except (OSError, EOFError, UnicodeDecodeError):
            continue
    return None


def check_privileges() -> Check:
    from ..kernel.probes import missing_privileges
    problem = missing_privileges()
    if problem:
        return Check("privileges", FAIL, problem, "run with sudo, or grant CAP_BPF and CAP_PERFMON")
    return Check("privileges", OK, "uid %d with the capabilities to load tracing BPF programs" % os.geteuid())


def check_kernel(release: Optional[str] = None) -> Check:
    """Linux 5.5 or newer (`release` as `uname -r` prints it; the running kernel's by default)."""
    release = release or platform.release()
    try:
        major, minor = (int(x) for x in release.split("-")[0].split(".")[:2])
    except ValueError:
        return Check("kernel", WARN, "cannot parse kernel release %r" % release)
    if (major, minor) < (5, 5):
        return Check("kernel", FAIL, "Linux %s is too old: nsgraph needs 5.5 or newer (BTF, "
                     "bpf_probe_read_kernel, raw tracepoints)" % release, "boot a newer kernel")
    return Check("kernel", OK, "Linux %s (%s)" % (release, platform.machine()))


def check_btf() -> tuple:
    from ..kernel.probes import ProbeError, resolve_layout
    try:
        layout = resolve_layout()
    except ProbeError as exc:
        return Check("btf", FAIL, str(exc), "use a kernel built with CONFIG_DEBUG_INFO_BTF=y"), None
    return Check("btf", OK, "/sys/kernel/btf/vmlinux: %d struct offsets resolved (e.g. ns_common.inum at %d)"
                 % (len(layout.offsets), layout.offsets["OFF_NS_COMMON_INUM"])), layout


def check_tracefs() -> Check:
    from ..kernel.probes import TRACEFS, ProbeError, ensure_tracefs, tracefs_status
    status = tracefs_status()
    if status == "ok":
        return Check("tracefs", OK, "mounted at %s" % TRACEFS)
    if status == "unreadable":
        return Check("tracefs", FAIL, "mounted at %s, but uid %d may not read it (the kernel makes it "
                     "root-only)" % (TRACEFS, os.geteuid()), "run nsgraph with sudo")
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


def check_headers(release: Optional[str] = None, modules: str = "/lib/modules") -> Check:
    """A kernel header tree at <modules>/<release>/build for BCC's compiler."""
    release = release or platform.release()
    build = os.path.join(modules, release, "build")
    if not os.path.isdir(os.path.join(build, "include")):
        return Check("headers", FAIL, "no kernel header tree at %s: BCC needs one to compile the probes" % build,
                     "apt-get install linux-headers-%s, or where the distribution has none for this kernel, "
                     "the generic headers package and links as scripts/setup.sh makes them" % release)
    target = os.path.realpath(build)
    if release not in target:
        return Check("headers", OK, "%s -> %s (another kernel's headers: used only to compile; "
                     "struct layouts come from BTF)" % (build, target))
    return Check("headers", OK, "%s (%s)" % (build, os.path.basename(target)))


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
        return docker_problem(exc)


def docker_problem(exc: BaseException) -> Check:
    """The WARN for an engine that did not answer, with the real cause: refused, or absent."""
    text = str(exc)
    where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    if "Permission denied" in text or "PermissionError" in text:
        return Check("docker", WARN, "the Docker socket (%s) refused uid %d: permission denied (tracing does "
                     "not need Docker; container names and demos do)" % (where, os.geteuid()),
                     "run nsgraph with sudo (the docker group would also do, and is root-equivalent)")
    if any(s in text for s in ("No such file", "FileNotFoundError", "Connection refused",
                               "ConnectionRefusedError")):
        return Check("docker", WARN, "no Docker engine answers at %s: tracing works, container names and "
                     "demos need it" % where,
                     "start it: systemctl start docker, or 'dockerd >/var/log/dockerd.log 2>&1 &'")
    first_line = text.splitlines()[0][:160] if text else type(exc).__name__
    return Check("docker", WARN, "Docker engine not reachable (%s): tracing works, container names "
                 "and demos need it" % first_line, "check that dockerd runs and answers: docker info")


def feature_checks(layout, try_loads: bool = True) -> List[Check]:
    """What the running kernel offers beyond the basics, and whether nsgraph uses it.
    try_loads: load trial fentry/fexit programs rather than only read the kernel config."""
    from ..kernel.layout import kernel_has_ringbuf
    from ..kernel.probes import TRACEFS
    checks = [ringbuf_check(kernel_has_ringbuf())]
    if layout is not None:
        checks.extend(layout_feature_checks(layout.features))
    checks.append(kprobes_check(kernel_config("CONFIG_KPROBES"),
                                os.path.exists(os.path.join(TRACEFS, "kprobe_events"))))
    checks.append(fentry_check(kernel_config("CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS"), probe_trampolines(layout) if try_loads else None))
    return checks


def ringbuf_check(available: bool) -> Check:
    return Check("feature ringbuf", INFO, "BPF ring buffer %s; the tracer uses %s" % (
        "available" if available else "not available (Linux < 5.8)",
        "the ring buffer" if available else "a perf buffer"))


def layout_feature_checks(features: dict) -> List[Check]:
    """The optional struct members BTF showed (KernelLayout.features)."""
    has_id = features.get("NSG_HAVE_NS_ID", False)
    checks = [Check("feature ns_id", INFO, (
        "ns_common.ns_id present: events carry the kernel's 64-bit namespace ids (used)" if has_id else
        "ns_common.ns_id absent (before Linux 6.18): events carry inode numbers only; "
        "identity falls back to (type, device, inode, generation)"))]
    for feature, label in (("NSG_HAVE_TIME_NS", "time namespaces"), ("NSG_HAVE_CGROUP_NS", "cgroup namespaces")):
        checks.append(Check("feature %s" % label.split()[0], INFO, "%s %s" % (
            label, "traced" if features.get(feature) else "not in this kernel")))
    return checks


def kprobes_check(config_kprobes: Optional[str], kprobe_events: bool) -> Check:
    """config_kprobes: kernel_config("CONFIG_KPROBES"); kprobe_events: tracefs has the file."""
    if config_kprobes is None:
        text = "unknown (no readable kernel config)" + ("; kprobe_events exists" if kprobe_events else "")
    else:
        text = "available" if config_kprobes == "y" else "not in this kernel (CONFIG_KPROBES off)"
    return Check("feature kprobes", INFO, "kprobes %s; not used (tracepoints, or fentry where it loads)" % text)


def probe_trampolines(layout):
    """Load a two-instruction fentry/fexit on each hooked function (root and BTF needed), or None."""
    from ..kernel.probes import missing_privileges
    if layout is None or layout.btf is None or missing_privileges():
        return None
    from ..kernel import trampolines
    return trampolines.probe(layout.btf)


def fentry_check(config_direct_calls: Optional[str], found) -> Check:
    """config_direct_calls: kernel_config("CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS");
    found: trampolines.probe()'s answer, None when it could not be asked (not root, no BTF)."""
    config = ("the kernel config has BPF trampolines" if config_direct_calls == "y" else
              "the kernel config lacks CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS" if config_direct_calls == "n" else
              "kernel config unknown")
    if found is None:
        return Check("feature fentry", INFO, "fentry/fexit not probed (needs root and BTF); %s" % config)
    tried = ", ".join("%s %s: %s" % (label, fn, "ok" if not err else errno.errorcode.get(err, str(err)))
                      for fn, label, err in found.tried)
    hint = ""
    if found.tried and found.tried[-1][2] == errno.EPERM:
        # Seen on a platform's 6.18 kernel that refuses trampoline programs to every process but PID 1.
        hint = "; EPERM as root: the kernel or its platform forbids BPF trampolines (README: How it works)"
    return Check("feature fentry", INFO, "%s (%s, tried %s%s)" % (found.reason, config, tried or "nothing", hint))


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
    return Check("probes", OK, "compiled and attached every probe in %.1f s; hooks: %s; fork/exec/exit: %s" % (
        time.monotonic() - started, "fentry/fexit (untraced system calls pay nothing)" if probes.hook_path == "fentry"
        else "syscall tracepoints (%s)" % probes.hook_reason.split(";")[0],
        "tp_btf (typed reads)" if probes.fork_hook == "tp_btf"
        else "raw tracepoint" + (" (%s)" % probes.fallback_reason[:120] if probes.fallback_reason else "")))


def gather_checks(quick: bool) -> List[Check]:
    """Every check, in the order printed; the probe load only when nothing failed before it."""
    checks = [check_privileges(), check_kernel()]
    btf_check, layout = check_btf()
    checks.append(btf_check)
    checks.append(check_tracefs())
    checks.append(check_bcc())
    checks.append(check_headers())
    checks.append(check_docker())
    checks.extend(feature_checks(layout, try_loads=not quick))
    if not quick and not any(c.status == FAIL for c in checks):
        checks.append(check_probe_load(layout))
    return checks


def report(checks: List[Check], as_json: bool, out=None, err=None) -> int:
    """Print the checks (text or JSON Lines) and a verdict; the exit code: 1 when any FAILed."""
    out = out or sys.stdout
    err = err or sys.stderr
    for check in checks:
        if as_json:
            print(json.dumps(asdict(check)), file=out)
        else:
            line = "[%-4s] %-18s %s" % (check.status, check.name, check.detail)
            if check.fix:
                line += "\n       %-18s fix: %s" % ("", check.fix)
            print(line, file=out)
    failed = [c for c in checks if c.status == FAIL]
    if not as_json:
        print("tracing can work" if not failed else
              "tracing cannot work: %d check(s) failed" % len(failed), file=err)
    return EXIT_FAILURE if failed else EXIT_OK


def run(args) -> int:
    if args.cost:
        from .cost import run_cost
        return run_cost(args)
    return report(gather_checks(args.quick), args.json)
