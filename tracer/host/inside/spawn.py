"""Starting the inside-view helper (helper.py): bounded in time and output, and counted.

The helper is a fresh Python (`-E -S`: no environment variables, no site
packages, so it starts in ~10-20 ms) running `-m tracer.host.inside.helper`
from nsgraph's own source tree, with an empty environment, no shell, nothing
in argv but that, and the namespace fds the caller opened passed by
inheritance.  The request goes to its stdin; its JSON answer comes back on
stdout.  A helper that runs longer than the timeout is killed; an answer larger
than the cap is refused.  Every start is counted (`STATS`): the API's
hostile-id tests and the idle benchmark read these numbers.

The timeout is 5 s, or NSGRAPH_INSIDE_TIMEOUT seconds (a machine that emulates
its CPU, like the kernel-matrix VM under qemu TCG, starts Python that slowly).
"""

from __future__ import annotations

import collections
import json
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from typing import Optional


# The folder that holds the tracer package (this file is tracer/host/inside/spawn.py).
CODE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
HELPER_MODULE = "tracer.host.inside.helper"
TIMEOUT_S = 5.0
MAX_OUTPUT_BYTES = 32 << 20
MAX_STDERR_BYTES = 8 << 10
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8"}


class HelperError(Exception):
    """The helper could not give an answer; `reason` is timeout, failed, oversize or malformed."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class HelperStats:
    """Process-wide counters of helper runs (thread-safe)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.counts = collections.Counter()
        self.durations_ms = collections.deque(maxlen=256)

    def add(self, key: str, duration_ms=None) -> None:
        with self._lock:
            self.counts[key] += 1
            if duration_ms is not None:
                self.durations_ms.append(duration_ms)

    def snapshot(self) -> dict:
        with self._lock:
            recent = sorted(self.durations_ms)
            out = {k: self.counts[k] for k in ("started", "succeeded", "failed", "timeouts", "oversize")}
        out["median_ms"] = round(recent[len(recent) // 2], 1) if recent else None
        return out


STATS = HelperStats()


def helper_argv() -> list:
    return [sys.executable, "-E", "-S", "-m", HELPER_MODULE]


def helper_timeout() -> float:
    try:
        value = float(os.environ.get("NSGRAPH_INSIDE_TIMEOUT", TIMEOUT_S))
    except ValueError:
        return TIMEOUT_S
    return value if 0 < value <= 600 else TIMEOUT_S


def run_helper(jobs: list, timeout: Optional[float] = None) -> list:
    """Run one helper for jobs [{"type", "fd", "extra": {name: fd}}]; its results, in job order.

    The fds stay open here (the caller closes them).  Raises HelperError.
    """
    timeout = timeout or helper_timeout()
    pass_fds = sorted({job["fd"] for job in jobs} | {fd for job in jobs for fd in job.get("extra", {}).values()})
    request = json.dumps({"jobs": [{"type": j["type"], "fd": j["fd"], "extra": j.get("extra", {})}
                                   for j in jobs]}).encode()
    started = time.monotonic()
    proc = subprocess.Popen(helper_argv(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, pass_fds=pass_fds, cwd=CODE_ROOT, env=ENV,
                            close_fds=True, start_new_session=True)
    STATS.add("started")
    try:
        out, err = _exchange(proc, request, started + timeout)
    except HelperError as exc:
        STATS.add("timeouts" if exc.reason == "timeout" else exc.reason)
        _reap(proc, grace=0)
        raise
    _reap(proc, grace=1.0)
    elapsed = (time.monotonic() - started) * 1000
    try:
        answer = json.loads(out)
    except ValueError:
        STATS.add("failed", elapsed)
        raise HelperError("failed", "the inside-view helper exited with status %s and no answer: %s"
                          % (proc.returncode, err.decode("utf-8", "replace").strip()[-500:] or "(no output)"))
    if not isinstance(answer, dict) or not isinstance(answer.get("results"), list) \
            or len(answer["results"]) != len(jobs):
        STATS.add("failed", elapsed)
        raise HelperError("malformed", "the inside-view helper refused the request: %s"
                          % (answer.get("error") if isinstance(answer, dict) else "malformed answer"))
    STATS.add("succeeded", elapsed)
    return answer["results"]


def _exchange(proc, request: bytes, deadline: float) -> tuple:
    """Write the request, read both pipes to their end, within the deadline and the caps."""
    out, err = bytearray(), bytearray()
    try:
        proc.stdin.write(request)
        proc.stdin.close()
    except BrokenPipeError:
        pass
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ, out)
        sel.register(proc.stderr, selectors.EVENT_READ, err)
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                raise HelperError("timeout", "the inside-view helper did not answer in time (raise "
                                  "NSGRAPH_INSIDE_TIMEOUT on a very slow machine)")
            for key, _ in sel.select(left):
                data = os.read(key.fd, 65536)
                if not data:
                    sel.unregister(key.fileobj)
                    continue
                key.data.extend(data)
                if len(out) > MAX_OUTPUT_BYTES:
                    raise HelperError("oversize", "the inside-view helper's answer is over %d bytes"
                                      % MAX_OUTPUT_BYTES)
                if len(err) > MAX_STDERR_BYTES:
                    del err[:-MAX_STDERR_BYTES]
    return bytes(out), bytes(err)


def _reap(proc, grace: float) -> None:
    """Wait for the helper (it exits right after its answer); kill it after `grace` seconds."""
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None and not pipe.closed:
            pipe.close()
