"""The unit lane runs without root, and leaves the checkout as it found it.

CI runs everything as root, so a unit test that quietly needs root (reads another
user's /proc entries, loads a probe, writes next to the sources) would pass there and
fail on a contributor's laptop.  This test runs `pytest tests/unit` as it runs there:
uid and gid 65534 (nobody), no capabilities, the checkout mounted read-only (a bind
mount in a mount namespace of its own, so nothing outside sees it), HOME and every
cache in a fresh directory.  The inner run's summary is printed, its time included.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time

from tests.conftest import REPO, require

NOBODY = 65534


def world_traversable(path: str) -> bool:
    """Every directory from / down to path lets others in (path itself: read too)."""
    path = os.path.abspath(path)
    while True:
        if not os.stat(path).st_mode & 0o001:
            return False
        parent = os.path.dirname(path)
        if parent == path:
            return True
        path = parent


def test_unit_lane_passes_as_nobody_on_a_read_only_checkout(root):
    for tool in ("unshare", "setpriv", "mount"):
        require(shutil.which(tool) is not None, "%s is missing (util-linux / mount)" % tool)
    # The checkout is reached through the bind mount; the venv through it when it lives
    # inside the checkout (scripts/setup.sh puts it at .venv), else where it is.
    repo = os.path.realpath(REPO)
    prefix = os.path.realpath(sys.prefix)
    inside = prefix == repo or prefix.startswith(repo + os.sep)
    require(os.stat(repo).st_mode & 0o005 == 0o005,
            "the checkout %s is not readable by other users (a umask of 077?)" % repo)
    if not inside:
        require(world_traversable(prefix), "the venv %s is not readable by other users" % prefix)
    scratch = tempfile.mkdtemp(prefix="nsgtest-unitlane-")
    try:
        os.chmod(scratch, 0o755)
        mount = os.path.join(scratch, "checkout")
        home = os.path.join(scratch, "home")
        os.mkdir(mount)
        os.mkdir(home)
        os.chown(home, NOBODY, NOBODY)
        executable = os.path.join(os.path.realpath(os.path.dirname(sys.executable)), os.path.basename(sys.executable))
        python = os.path.join(mount, os.path.relpath(executable, repo)) if inside else sys.executable
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home, "CI": "true", "LANG": "C.UTF-8",
               "TMPDIR": home, "PYTHONDONTWRITEBYTECODE": "1",
               "HYPOTHESIS_STORAGE_DIRECTORY": os.path.join(home, "hypothesis")}
        inner = ["setpriv", "--reuid=%d" % NOBODY, "--regid=%d" % NOBODY, "--clear-groups",
                 "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs",
                 python, "-m", "pytest", "tests/unit", "-q", "-p", "no:cacheprovider"]
        script = 'mount --bind "$1" "$2" && mount -o remount,bind,ro "$2" && cd "$2" && shift 2 && exec "$@"'
        started = time.monotonic()
        proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
                               repo, mount] + inner, env=env, capture_output=True, text=True, timeout=600)
        seconds = time.monotonic() - started
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    summary = (proc.stdout.strip().splitlines() or ["(no output)"])[-1]
    print("unit lane as uid %d on a read-only checkout: %s; %.1f s in all" % (NOBODY, summary, seconds))
    assert proc.returncode == 0, proc.stdout[-20000:] + proc.stderr[-5000:]
    assert " passed" in summary and "skipped" not in summary and "failed" not in summary, summary
