"""`nsgraph record` / `nsgraph replay` on bad files (issue 11): real files, real writes.

A recording is written by the real JsonlRecorder from a real graph (the web fixtures'
World), then damaged the ways files get damaged: garbage, non-UTF-8 bytes, JSON of the
wrong shape, unknown kinds, a cut-off last line.  The replay must use every good line,
skip and count the others on stderr, exit 1, and never print a traceback.  A full disk
is /dev/full (the kernel answers every write with ENOSPC); the tmpfs version with the
probes is in tests/kernel/test_record_disk_full.py.
"""

from __future__ import annotations

import json

from tests.unit.test_cli import run_main
from tracer.exitcodes import EXIT_FAILURE, EXIT_OK
from tracer.history.recording import JsonlRecorder
from web_fixtures import World


def _recording(path, unshares: int = 3) -> World:
    world = World()
    recorder = JsonlRecorder(str(path))
    recorder.attach(world.graph)
    for _ in range(unshares):
        world.graph.apply_batch([world.unshare_event()])
    recorder.close()
    assert recorder.error is None and recorder.written >= unshares
    return world


def _net_namespaces(out: str) -> int:
    graph = json.loads(out)
    return sum(1 for ns in graph["namespaces"] if ns["type"] == "net")


def test_a_clean_recording_replays_with_exit_0(capsys, tmp_path):
    path = tmp_path / "good.jsonl"
    _recording(path)
    code, out, err = run_main(capsys, "replay", "--json", str(path))
    assert code == EXIT_OK, err
    assert _net_namespaces(out) == 5          # the host's, myapp's and three unshares


def test_damaged_lines_are_skipped_counted_and_exit_1(capsys, tmp_path):
    path = tmp_path / "damaged.jsonl"
    _recording(path)
    clean = run_main(capsys, "replay", "--json", str(path))[1]
    with open(path, "ab") as f:
        f.write(b"\xff\xfe not utf-8 \x80\n")
        f.write(b"random garbage {{{\n")
        f.write(b"[1, 2, 3]\n")
        f.write(b'{"kind": "telepathy", "seq": 999999, "ts": 1.0, "data": {}}\n')
        f.write(b'{"kind": "event", "seq": "x", "ts": 1.0, "data": {}}\n')
        f.write(b'{"kind": "event", "seq": 1000000, "ts": 1.0, "data": [1, 2]}\n')
        f.write(b'{"kind": "ops", "seq": 1000001, "ts": 1.0, "data": "nope"}\n')
        f.write(b'{"kind": "event", "seq": 1000002, "ts": 1.0, "da')          # cut short
    code, out, err = run_main(capsys, "replay", "--json", str(path))
    assert code == EXIT_FAILURE
    assert "Traceback" not in err
    # Every good line used, nothing invented; the counters say how many were skipped.
    damaged, expected = json.loads(out), json.loads(clean)
    assert damaged["counters"].pop("replay_skipped_lines") == 7
    expected["counters"].pop("replay_skipped_lines")
    damaged.pop("time"), expected.pop("time")          # when the JSON was made
    assert damaged == expected
    summary = [l for l in err.splitlines() if l.startswith("nsgraph replay: skipped ")]
    assert len(summary) == 1, err
    assert "skipped 7 of" in summary[0]
    for reason in ("1 lines that are not UTF-8", "1 lines that are not JSON (", "1 lines that are not JSON objects",
                   "1 lines of unknown kind 'telepathy'", "1 lines with a missing or malformed seq/ts",
                   "1 event lines whose data has the wrong shape", "1 ops lines whose data has the wrong shape"):
        assert reason in summary[0], summary[0]
    assert "cut short" in err


def test_a_state_line_of_the_wrong_shape_is_one_line_and_exit_1(capsys, tmp_path):
    path = tmp_path / "state.jsonl"
    _recording(path)
    lines = path.read_bytes().split(b"\n")
    for state in (b'{"kind": "state", "data": []}', b'{"kind": "state", "data": {"input_seq": "x"}}', b"[]",
                  b'{"kind": "state", "data": {}}'):
        path.write_bytes(b"\n".join([lines[0], state] + lines[2:]))
        code, out, err = run_main(capsys, "replay", str(path))
        assert code == EXIT_FAILURE and out == ""
        assert err.startswith("nsgraph replay: ") and err.count("\n") == 1 and "Traceback" not in err, err


def test_the_recorder_on_a_full_disk_fails_at_once_with_one_line(tmp_path):
    world = World()
    recorder = JsonlRecorder("/dev/full")
    try:
        recorder.attach(world.graph)
    except OSError:
        pass
    recorder.close()
    assert recorder.failed.is_set()
    assert recorder.error == "writing /dev/full failed: No space left on device"
