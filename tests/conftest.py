"""Shared test fixtures, and the markers of each test lane.

Tests live in lanes, one folder each, by their heaviest requirement; the lane
decides the markers (pytest_collection_modifyitems below), so that `-m` selects
what a machine can run:
  tests/unit     pure logic: no root, Docker, browser or VM (`pytest tests/unit`,
                 under a minute, as any user)
  tests/kernel   the running kernel (eBPF, /proc, nsfs, its BTF): kernel
  tests/docker   a running Docker engine: docker
  tests/browser  Chromium and Playwright: browser
  tests/infra    the Vagrantfile and a real `vagrant up`, provisioning, the VM kernel matrix (their own vm /
                 provision markers, set in the files), and the unit lane run as nobody
  tests/fleet    a NATS JetStream cluster, agents on this host and in the 6.1 VM, the
                 fleet dashboard: fleet (and root, through the root fixture)
`root` means "needs root", and is derived, not declared: a test gets it when it
uses the `root` fixture (directly or through live_events, docker_client...), the
one place that checks for root, or boots a VM (`vm`: debootstrap and chroot).
So `pytest -m "not root"` runs, as an ordinary user, everything that can.
The kernel lane also runs inside the Debian 12 VM (scripts/vm/guest-run.sh),
except tests marked host_only.

Root, Docker and browser tests must run in CI: when CI=true a missing
prerequisite fails the test instead of skipping it.  Outside CI (a developer's
laptop without root, say) they skip with the reason.
"""

from __future__ import annotations

import os
import shutil
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


# Lane folder -> the markers every test in it gets.
LANE_MARKERS = {
    "unit": (),
    "kernel": ("kernel",),
    "docker": ("docker",),
    "browser": ("browser",),
    "infra": (),
    "fleet": ("fleet",),
}
# Fixtures that need root, Docker or a browser: a unit test using one is in the wrong lane.
HEAVY_FIXTURES = ("root", "live_events", "docker_client", "chromium_path")
# Markers whose tests need root without the `root` fixture (its BCC check does not apply).
ROOT_MARKERS = ("vm",)
TESTS = os.path.dirname(os.path.abspath(__file__))


@pytest.hookimpl(tryfirst=True)  # before -m deselects by the markers added here
def pytest_collection_modifyitems(items):
    misplaced = []
    for item in items:
        lane = os.path.relpath(str(item.path), TESTS).split(os.sep, 1)[0]
        if lane not in LANE_MARKERS:
            raise pytest.UsageError("%s is in no test lane: move it into one of tests/%s/"
                                    % (item.path, "/, tests/".join(LANE_MARKERS)))
        for name in LANE_MARKERS[lane]:
            item.add_marker(name)
        fixtures = getattr(item, "fixturenames", ())
        if lane == "unit" and any(f in fixtures for f in HEAVY_FIXTURES):
            misplaced.append(item.nodeid)
        if "root" in fixtures or any(item.get_closest_marker(m) for m in ROOT_MARKERS):
            item.add_marker("root")
    if misplaced:
        raise pytest.UsageError("unit tests that need root, Docker or a browser (move them to "
                                "tests/kernel, tests/docker or tests/browser): %s" % ", ".join(misplaced))


_prefetch = None     # vm_prefetch.Prefetch while the VM cache is built in the background


def pytest_collection_finish(session):
    global _prefetch
    if session.config.option.collectonly:
        return
    import vm_prefetch
    _prefetch = vm_prefetch.start(session.items, os.path.join(REPO, "test-artifacts"))


def pytest_terminal_summary(terminalreporter):
    global _prefetch
    if _prefetch is not None:
        terminalreporter.write_line(_prefetch.finish())
        _prefetch = None


def pytest_unconfigure(config):
    global _prefetch
    if _prefetch is not None:       # a run that ended before its summary
        _prefetch.finish()
        _prefetch = None


def wait_until(predicate, timeout=15.0, step=0.2):
    """predicate()'s first true value within timeout seconds, else its last value."""
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


def stderr_until_banner(proc, timeout=60.0) -> list:
    """The stderr lines of a running `nsgraph trace` up to its "Tracing" banner (or its end,
    or timeout seconds), for the test's messages: events made after it are traced."""
    import time
    deadline, lines = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        lines.append(line)
        if not line or "Tracing" in line:
            break
    return lines


def require(condition: bool, reason: str) -> None:
    """Skip outside CI, fail in CI, when a prerequisite is missing."""
    if condition:
        return
    if IN_CI:
        pytest.fail("prerequisite missing in CI: %s" % reason, pytrace=False)
    pytest.skip(reason)


def inode(path: str) -> int:
    """The inode of a namespace link such as /proc/<pid>/ns/net."""
    return os.stat(path).st_ino


def wait_for(predicate, what: str, timeout: float = 10.0):
    """predicate()'s first truthy value, polled; an AssertionError naming `what` on timeout."""
    import time
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("timed out waiting for " + what)


def _bcc_importable() -> bool:
    try:
        import bcc  # noqa: F401
        return True
    except ImportError:
        return False


@pytest.fixture(scope="session")
def root():
    """Root with a working BCC: the real-kernel tests."""
    require(os.geteuid() == 0, "needs root to load eBPF probes")
    require(_bcc_importable(), "bcc is not importable from %s (run scripts/setup.sh test)" % sys.executable)
    return True


@pytest.fixture(scope="session")
def docker_client(root):
    """A client for a running Docker engine."""
    from tracer.containers.docker_client import WORK_TIMEOUT, docker_client as make_client
    try:
        client = make_client(WORK_TIMEOUT, ping=True)
    except Exception as exc:  # docker.errors.DockerException, connection errors
        require(False, "Docker engine not reachable (%s); scripts/setup.sh test starts dockerd" % exc)
    return client


@pytest.fixture(scope="session")
def chromium_path():
    path = shutil.which("chromium") or "/usr/bin/chromium"
    require(os.path.exists(path), "Debian's chromium is not installed (apt-get install chromium)")
    return path


@pytest.fixture(scope="module")
def playwright_browser(chromium_path):
    """One Chromium (Debian's, never a downloaded one) per test module."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - the venv has it
        require(False, "playwright is not installed in the venv (pip install -e '.[test]')")
    from tests.workloads.pagetools import CHROMIUM_ARGS
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class EventLog:
    """The events a live Collector delivered between a test's mark() and its since().

    The collector sees every process on the host for the whole session; on a busy
    host that is millions of events, so only those after a mark still to be read are
    kept (a session-long list once grew pytest to 12 GB and the OOM killer took it).
    """

    def __init__(self, collector):
        import threading
        self.collector = collector
        self._lock = threading.Lock()
        self._events = []       # the events from absolute index self._base on
        self._base = 0
        self._seen = 0          # absolute index of the next event
        self._open = set()      # marks handed out and not read yet
        collector.subscribe(self._add)

    def _add(self, event):
        with self._lock:
            self._seen += 1
            if self._open:
                self._events.append(event)
            else:
                self._base = self._seen

    def mark(self) -> int:
        with self._lock:
            self._open.add(self._seen)
            return self._seen

    def since(self, mark: int):
        """Events after mark, once the buffer has been drained; the mark is then spent."""
        with self._lock:
            assert mark in self._open, "mark %d was read already (each mark is read once)" % mark
        self.collector_drain()
        with self._lock:
            out = list(self._events[mark - self._base:])
            self._open.discard(mark)
            self._trim()
            return out

    def close_marks(self) -> None:
        """Forget the marks a test took and never read (it failed before since())."""
        with self._lock:
            self._open.clear()
            self._trim()

    def _trim(self) -> None:
        keep_from = min(self._open) if self._open else self._seen
        self._events = self._events[keep_from - self._base:]
        self._base = keep_from

    def collector_drain(self):
        # Every event the kernel recorded before now has been delivered (on a busy host
        # the buffer is never quiet, so waiting for quiet would not do).
        assert self.collector.sync(), "the collector delivered no sync marker within 30 s"


@pytest.fixture(scope="session")
def live_events(root):
    """One set of probes for the whole session (compiling costs about a second)."""
    from tracer.kernel.collector import Collector
    from tracer.kernel.probes import ProbeOptions

    collector = Collector(options=ProbeOptions(proc_events=True))
    log = EventLog(collector)
    collector.start()
    yield log
    collector.stop()


@pytest.fixture(autouse=True)
def _unread_marks(request):
    """A test that took a live_events mark and failed before reading it must not leave
    the log keeping every event for the rest of the session."""
    yield
    log = request.node.funcargs.get("live_events") if hasattr(request.node, "funcargs") else None
    if log is not None:
        log.close_marks()
