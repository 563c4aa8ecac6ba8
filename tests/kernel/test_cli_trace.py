"""`nsgraph trace` as a user runs it: a subprocess, signals, exit codes, output formats.
(Usage errors and --help need no root: tests/unit/test_cli.py; the columns and filters
on recorded events: tests/unit/test_trace_format.py.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRACE = [sys.executable, "-m", "tracer.cli", "trace"]


def start_trace(*args):
    proc = subprocess.Popen(TRACE + list(args), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    started = time.monotonic()
    line = proc.stderr.readline()
    assert line.startswith("Tracing namespace events... Hit Ctrl-C to end."), line + proc.stderr.read()
    return proc, time.monotonic() - started


def stop(proc, sig=signal.SIGINT):
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    return proc.returncode, out, err


def unshare_uts():
    """A child that makes one unshare(CLONE_NEWUTS); returns its pid and new uts inode."""
    child = subprocess.run(["unshare", "--uts", "sh", "-c", "echo $$; readlink /proc/self/ns/uts"],
                           capture_output=True, text=True, check=True, timeout=10)
    pid, link = child.stdout.split()
    return int(pid), int(link.split("[")[1][:-1])


def test_json_lines_and_sigint(root):
    proc, _ = start_trace("--json")
    pid, inode = unshare_uts()
    time.sleep(0.3)
    code, out, err = stop(proc)
    assert code == 0
    events = [json.loads(line) for line in out.splitlines()]
    mine = [e for e in events if e["pid"] == pid]
    assert len(mine) == 1
    event = mine[0]
    assert event["kind"] == "unshare" and event["flags"] == ["CLONE_NEWUTS"]
    assert event["ns"]["uts"] == inode and event["ns_before"]["uts"] != inode
    assert event["errno"] is None and event["ret"] == 0
    for key in ("ts", "seq", "node", "tid", "ppid", "uid", "comm", "vpid", "ns_id", "container"):
        assert key in event
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    summary = err.strip().splitlines()[-1]
    assert "events seen" in summary and "0 lost" in summary


def test_columns_filters_and_sigterm(root):
    proc, _ = start_trace("--type", "net")
    uts_pid, _ = unshare_uts()
    net = subprocess.run(["unshare", "--net", "sh", "-c", "echo $$"], capture_output=True, text=True,
                         check=True, timeout=10)
    net_pid = int(net.stdout)
    time.sleep(0.3)
    code, out, err = stop(proc, signal.SIGTERM)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["TIME", "PID", "COMM", "CONTAINER", "EVENT", "NS", "DETAILS"]
    pids = [int(line.split()[1]) for line in lines[1:]]
    assert net_pid in pids
    assert uts_pid not in pids            # --type net hides the uts-only unshare
    row = next(line for line in lines[1:] if int(line.split()[1]) == net_pid)
    assert " unshare " in row and "new net:[" in row


def test_procs_shows_exec_and_exit(root):
    proc, _ = start_trace("--json", "--procs", "--comm", "true")
    subprocess.run(["/bin/true"], check=True)
    time.sleep(0.3)
    code, out, _err = stop(proc)
    assert code == 0
    kinds = {json.loads(line)["kind"] for line in out.splitlines()}
    assert {"exec", "exit"} <= kinds


def test_without_privileges_exits_77(root):
    """As an ordinary user: exit 77 and say what is missing."""
    out = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
                          "--bounding-set=-all"] + TRACE, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 77, out.stderr
    assert "CAP_BPF" in out.stderr and "root" in out.stderr


def test_ctrl_c_while_the_pipe_is_full_loses_no_line(root):
    """A reader that reads only after Ctrl-C: trace blocks on a full pipe, the signal lands in
    the middle of a write, and every line shown must still arrive whole (CPython's buffered
    writer dropped the rest of such a write: ~700 lines lost, one cut in two)."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    proc, _ = start_trace("--json", "--failed", "--pid", str(os.getpid()))
    for _ in range(3000):                  # ~1 MB of JSON Lines: far past a pipe's 64 KiB
        libc.setns(-1, 0x40000000)         # EBADF: a failed setns, an event of its own
    time.sleep(1.0)                        # trace is now blocked writing to the full pipe
    code, out, err = stop(proc)
    assert code == 0, err
    lines = out.splitlines()
    events = [json.loads(line) for line in lines]
    shown = int(err.strip().splitlines()[-1].split(" events seen, ")[1].split(" shown")[0])
    assert len(events) == shown >= 3000, (len(events), err[-300:])
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
