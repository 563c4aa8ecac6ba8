#!/usr/bin/python3
"""Which Debian packages did the test run use, and does scripts/setup.sh install them all?

CI runs the suite on whatever machine it gets.  A test that passes only because
that machine happens to have a package (vagrant-libvirt arrived with someone
else's install; `--no-install-recommends` never brings it) turns red on a fresh
machine.  This tool makes that visible on the machine CI happens to run on:

  package_audit.py run --named "PKG ..." --report FILE -- COMMAND ...

runs COMMAND (the pytest run) in a mount namespace of its own, with a fanotify
mark on that namespace's copies of the mounts that hold installed files, so the
kernel reports every file that COMMAND and its descendants open or execute, and
nothing that other users of the machine do meanwhile.  Each opened file is
mapped to the packages that own it (/var/lib/dpkg/info/*.list, with usr-merge
aliases), and each owner must be in the closure of what set-up installs:
the packages it names (--named), every Essential or Priority: required package
(a fresh Debian has those), and their Depends/Pre-Depends, recursively
(Recommends do not count: set-up installs with --no-install-recommends).

Exit status: COMMAND's own status when it failed; otherwise 0 when every
package used is in the closure, 3 when some are not (listed, with a file and
the program that opened it, and how to fix it).

Not seen: files opened by processes in mount namespaces the run creates
itself (`unshare -m`, `ip netns exec`, containers, chroots) and packages that
only contribute a symlink on the way to the opened file.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import glob
import json
import os
import re
import select
import signal
import struct
import subprocess
import sys
from typing import Dict, Iterable, List, Optional, Set

# Packages whose files a program opens when they happen to be installed, without
# needing them: using them proves nothing about a fresh machine.  Each needs a reason.
USED_WHEN_PRESENT = {
    "xz-utils": "debootstrap (the VM root file system) fetches Packages.xz and runs unxz when it is on "
                "the PATH, Packages.gz otherwise; it unpacks .debs with dpkg-deb (Essential), not xzcat",
    "locales": "glibc reads /etc/locale.alias when it exists; the tests need no locale",
    "fonts-dejavu-extra": "fontconfig hands Chromium the closest installed face (an oblique one); "
                          "fonts-dejavu-core, which set-up names, serves when it is absent",
    "libnss-systemd": "nsswitch.conf names the systemd NSS module; glibc skips it when absent",
    "lsb-release": "pip's vendored distro module runs lsb_release when it exists (for its user agent)",
    "libpam-cap": "pam-auth-update adds pam_cap to /etc/pam.d/common-auth only when it is installed; "
                  "runuser (the unit lane as nobody) works without it",
}

# Files read because a program lists everything of a kind that is installed (every
# gem's specification, every Python distribution's metadata), not because the run
# needs that package: such a read alone does not make a package "used".
INVENTORY_READS = [
    (re.compile(r"^/usr/(share|lib/[^/]+)/rubygems-integration/[^/]+/specifications/[^/]+\.gemspec$"),
     "RubyGems reads every installed gem's specification at start-up"),
    (re.compile(r"^/usr/lib/python3/dist-packages/[^/]+\.(dist|egg)-info(/[^/]+)?$"),
     "importlib.metadata (pytest's plugin discovery) reads every installed distribution's metadata"),
    (re.compile(r"^/(usr/)?lib/systemd/system/[^/]+$"),
     "systemd-analyze verify loads every installed unit to resolve the one it checks"),
    (re.compile(r"^/etc/apt/apt\.conf\.d/[^/]+$"),
     "apt reads every file in apt.conf.d, whichever package put it there"),
]


def inventory_read(path: str) -> bool:
    return any(pattern.match(path) for pattern, _ in INVENTORY_READS)

# --- the dpkg database (pure functions over its files) -----------------------------------


def parse_paragraphs(text: str) -> Iterable[dict]:
    """RFC 822 paragraphs of /var/lib/dpkg/status: field -> value (continuations joined)."""
    fields: dict = {}
    last = None
    for line in text.splitlines():
        if not line.strip():
            if fields:
                yield fields
            fields, last = {}, None
            continue
        if line[0] in " \t" and last is not None:
            fields[last] += "\n" + line.strip()
            continue
        name, _, value = line.partition(":")
        last = name.strip().lower()
        fields[last] = value.strip()
    if fields:
        yield fields


_VERSION = re.compile(r"\s*\(.*?\)|\s*\[.*?\]|\s*<.*?>")


def parse_relation(value: str) -> List[List[str]]:
    """'a (>= 1), b:any | c' -> [['a'], ['b', 'c']]: alternatives per clause, names only."""
    clauses = []
    for clause in (value or "").split(","):
        names = []
        for alternative in clause.split("|"):
            name = _VERSION.sub("", alternative).strip().split(":")[0]
            if name:
                names.append(name)
        if names:
            clauses.append(names)
    return clauses


class Installed:
    """The installed packages of a dpkg database: names, relations, priorities."""

    def __init__(self, status_text: str):
        self.packages: Dict[str, dict] = {}
        self.providers: Dict[str, Set[str]] = {}
        for fields in parse_paragraphs(status_text):
            name = fields.get("package")
            if not name or fields.get("status", "").split()[-1:] != ["installed"]:
                continue
            self.packages[name] = {
                "depends": parse_relation(fields.get("depends", "")) + parse_relation(fields.get("pre-depends", "")),
                "essential": fields.get("essential", "").lower() == "yes",
                "priority": fields.get("priority", "").lower(),
            }
            for clause in parse_relation(fields.get("provides", "")):
                for virtual in clause:
                    self.providers.setdefault(virtual, set()).add(name)

    @classmethod
    def from_root(cls, root: str = "/") -> "Installed":
        with open(os.path.join(root, "var/lib/dpkg/status"), encoding="utf-8", errors="replace") as f:
            return cls(f.read())

    def base(self) -> Set[str]:
        """What every Debian system has: Essential: yes and Priority: required."""
        return {n for n, p in self.packages.items() if p["essential"] or p["priority"] == "required"}

    def satisfying(self, clause: List[str]) -> List[str]:
        """The installed packages that satisfy one Depends clause: the first alternative that
        is installed (directly or through Provides), as apt on a fresh machine would choose."""
        for name in clause:
            if name in self.packages:
                return [name]
            providers = sorted(self.providers.get(name, ()))
            if providers:
                return providers
        return []

    def closure(self, roots: Iterable[str]) -> Set[str]:
        seen: Set[str] = set()
        todo = [r for r in roots if r in self.packages]
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            for clause in self.packages[name]["depends"]:
                todo.extend(n for n in self.satisfying(clause) if n not in seen)
        return seen


def file_owners(info_dir: str = "/var/lib/dpkg/info", resolve=os.path.realpath) -> Dict[str, Set[str]]:
    """path -> owning packages, from dpkg's *.list files.  Paths are indexed as listed and as
    reached through the real directory (usr-merge: /bin/sh is /usr/bin/sh), because the
    kernel reports the path of the file actually opened."""
    owners: Dict[str, Set[str]] = {}
    real_dirs: Dict[str, str] = {}
    for list_path in glob.glob(os.path.join(info_dir, "*.list")):
        package = os.path.basename(list_path)[:-len(".list")].split(":")[0]
        try:
            with open(list_path, encoding="utf-8", errors="surrogateescape") as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        for path in lines:
            if not path.startswith("/") or path == "/.":
                continue
            owners.setdefault(path, set()).add(package)
            directory, base = os.path.split(path)
            real = real_dirs.get(directory)
            if real is None:
                real = real_dirs[directory] = resolve(directory)
            if real != directory:
                owners.setdefault(os.path.join(real, base), set()).add(package)
    return owners


def find_unnamed(opened: Dict[str, dict], owners: Dict[str, Set[str]], allowed: Set[str],
                 used_when_present: Optional[dict] = None) -> Dict[str, List[dict]]:
    """package -> the opened files (with their opener) of every package outside `allowed`.
    A file owned by several packages is fine when any owner is allowed."""
    used_when_present = USED_WHEN_PRESENT if used_when_present is None else used_when_present
    missing: Dict[str, List[dict]] = {}
    for path, opener in sorted(opened.items()):
        pkgs = owners.get(path)
        if not pkgs or pkgs & allowed or inventory_read(path):
            continue
        for pkg in sorted(pkgs):
            if pkg not in used_when_present:
                missing.setdefault(pkg, []).append(dict(opener, path=path))
    return missing


def used_packages(opened: Dict[str, dict], owners: Dict[str, Set[str]]) -> Set[str]:
    return {pkg for path in opened if not inventory_read(path) for pkg in owners.get(path, ())}


# --- recording what a command opens (fanotify, root) -------------------------------------

FAN_CLOEXEC, FAN_NONBLOCK, FAN_UNLIMITED_QUEUE = 0x1, 0x2, 0x10
FAN_MARK_ADD, FAN_MARK_MOUNT = 0x1, 0x10
FAN_OPEN, FAN_OPEN_EXEC, FAN_Q_OVERFLOW = 0x20, 0x1000, 0x4000
CLONE_NEWNS, MS_REC, MS_SLAVE = 0x20000, 0x4000, 1 << 19
AT_FDCWD = -100
EVENT = struct.Struct("IBBHQii")
# Where installed files live; each one's mount (in our namespace) gets a mark.
INSTALL_ROOTS = ("/", "/usr", "/etc", "/var", "/opt", "/lib", "/bin", "/sbin")


class AuditError(Exception):
    pass


def _libc():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.fanotify_mark.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_uint64, ctypes.c_int, ctypes.c_char_p]
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
    return libc


def _fail(what: str) -> AuditError:
    code = ctypes.get_errno()
    return AuditError("%s failed: %s (%s)" % (what, errno.errorcode.get(code, code), os.strerror(code)))


class OpenRecorder:
    """Every file opened through this process's own mount namespace (entered by
    start()), by this process's descendants; path -> first opener {pid, comm}."""

    def __init__(self):
        self.opened: Dict[str, dict] = {}
        self._programs: Dict[int, str] = {}     # pid -> what it last executed
        self.events = 0
        self.overflows = 0
        self._fd = -1
        self._me = os.getpid()

    def start(self) -> "OpenRecorder":
        libc = _libc()
        if libc.unshare(CLONE_NEWNS) != 0:
            raise _fail("unshare(CLONE_NEWNS) (needs root)")
        # Mounts made on the host still show up here; ours stay here.
        if libc.mount(b"none", b"/", None, MS_REC | MS_SLAVE, None) != 0:
            raise _fail("making / a slave mount")
        flags = os.O_RDONLY | os.O_LARGEFILE | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOATIME
        fd = libc.fanotify_init(FAN_CLOEXEC | FAN_NONBLOCK | FAN_UNLIMITED_QUEUE, flags)
        if fd < 0:
            raise _fail("fanotify_init (needs CAP_SYS_ADMIN and CONFIG_FANOTIFY)")
        self._fd = fd
        for path in INSTALL_ROOTS:
            if os.path.isdir(path) and not os.path.islink(path):
                if libc.fanotify_mark(fd, FAN_MARK_ADD | FAN_MARK_MOUNT, FAN_OPEN | FAN_OPEN_EXEC,
                                      AT_FDCWD, path.encode()) != 0:
                    raise _fail("fanotify_mark(%s)" % path)
        return self

    def pump(self, timeout: float) -> bool:
        """Read what is queued (waiting up to timeout); False when nothing was."""
        ready, _, _ = select.select([self._fd], [], [], timeout)
        if not ready:
            return False
        try:
            data = os.read(self._fd, 256 * 1024)
        except BlockingIOError:
            return False
        offset = 0
        while offset + EVENT.size <= len(data):
            length, _version, _reserved, _meta, mask, fd, pid = EVENT.unpack_from(data, offset)
            offset += length or EVENT.size
            self.events += 1
            if mask & FAN_Q_OVERFLOW:
                self.overflows += 1
            if fd < 0:
                continue
            try:
                path = os.readlink("/proc/self/fd/%d" % fd)
            except OSError:
                path = None
            finally:
                os.close(fd)
            if not path or pid == self._me:
                continue
            if mask & FAN_OPEN_EXEC:
                self._programs[pid] = os.path.basename(path)
            if path not in self.opened:
                # An exec is reported before the process takes the new name, and a
                # short-lived process is often gone before /proc can be asked.
                comm = self._programs.get(pid) if mask & FAN_OPEN_EXEC else None
                self.opened[path] = {"pid": pid, "comm": comm or _comm(pid) or self._programs.get(pid)}
        return True

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _comm(pid: int) -> Optional[str]:
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return None     # gone already: the path still counts


def record(argv: List[str]) -> tuple:
    """Run argv under an OpenRecorder: (its exit status, the recorder)."""
    recorder = OpenRecorder().start()
    try:
        child = subprocess.Popen(argv)
    except OSError as exc:
        recorder.close()
        raise AuditError("cannot run %s: %s" % (argv[0], exc))
    forward = lambda signum, _frame: child.send_signal(signum)  # noqa: E731
    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while child.poll() is None:
            recorder.pump(0.2)
        while recorder.pump(0.05):     # what was queued before the child ended
            pass
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        recorder.close()
    return child.returncode, recorder


# --- the verdict ---------------------------------------------------------------------------

def verdict(opened: Dict[str, dict], named: List[str], root: str = "/") -> dict:
    installed = Installed.from_root(root)
    owners = file_owners(os.path.join(root, "var/lib/dpkg/info"))
    not_installed = sorted(n for n in named if n not in installed.packages)
    allowed = installed.closure(set(named) | installed.base())
    missing = find_unnamed(opened, owners, allowed)
    used = used_packages(opened, owners)
    return {"named": sorted(named), "named_not_installed": not_installed,
            "closure_size": len(allowed), "packages_used": sorted(used),
            "used_when_present": sorted(used & set(USED_WHEN_PRESENT)),
            "missing": missing,
            "package_files_opened": {p: dict(o, packages=sorted(owners[p]))
                                     for p, o in opened.items() if p in owners}}


def explain(result: dict, out=sys.stderr) -> bool:
    """Print the verdict; True when the set-up installs everything the run used."""
    say = lambda text: print("[package-audit] " + text, file=out)  # noqa: E731
    say("the run opened files of %d packages; set-up's closure has %d (%d named, plus Essential/"
        "required and dependencies)" % (len(result["packages_used"]), result["closure_size"], len(result["named"])))
    for name in result["used_when_present"]:
        say("used when present, not needed: %s (%s)" % (name, USED_WHEN_PRESENT[name]))
    ok = True
    if result["named_not_installed"]:
        ok = False
        say("FAIL: set-up names packages that are not installed: %s" % " ".join(result["named_not_installed"]))
    missing = result["missing"]
    if missing:
        ok = False
        say("FAIL: the run used %d package(s) that scripts/setup.sh does not install; a fresh machine "
            "does not have them:" % len(missing))
        for pkg, files in sorted(missing.items()):
            first = files[0]
            say("  %-28s %d file(s), e.g. %s opened by %s (pid %s)" % (
                pkg, len(files), first["path"], first.get("comm") or "?", first.get("pid")))
        say("fix: add each to the package lists in scripts/setup.sh (test mode: TEST_PACKAGES); "
            "only if a program merely uses it when present, list it with the reason in "
            "USED_WHEN_PRESENT in .ci/package_audit.py")
    elif ok:
        say("OK: every package the run used is installed by scripts/setup.sh")
    return ok


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a command and audit the packages it used")
    run.add_argument("--named", required=True, help="the packages set-up installs by name (space-separated)")
    run.add_argument("--report", help="write the verdict and the opened package files here (JSON)")
    run.add_argument("argv", nargs=argparse.REMAINDER, help="-- COMMAND ...")
    args = parser.parse_args(argv)
    command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not command:
        parser.error("no command to run (put it after --)")
    try:
        status, recorder = record(command)
    except AuditError as exc:
        print("[package-audit] error: %s" % exc, file=sys.stderr)
        return 1
    named = args.named.split()
    result = verdict(recorder.opened, named)
    result["events"], result["overflows"] = recorder.events, recorder.overflows
    if args.report:
        with open(args.report, "w") as f:
            json.dump(result, f, indent=1, sort_keys=True)
    ok = explain(result)
    if recorder.overflows:
        print("[package-audit] FAIL: the kernel dropped %d batches of events" % recorder.overflows, file=sys.stderr)
        ok = False
    if status != 0:
        return status
    return 0 if ok else 3


if __name__ == "__main__":
    sys.exit(main())
