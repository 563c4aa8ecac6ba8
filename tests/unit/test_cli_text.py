"""What the commands print and accept, without root: trace's columns, the one
--type syntax of every command, and doctor's causes for tracefs and Docker."""

from __future__ import annotations

import pytest

from tracer.commands import doctor, trace
from tracer.events.event import Event
from tracer.nstypes import NS_SLOTS, parse_type_list

HOST = {slot: 4026531830 + i for i, slot in enumerate(NS_SLOTS)}


def event(kind="unshare", raw_flags=0, changed=(), **extra):
    after = dict(HOST)
    for i, slot in enumerate(changed):
        after[slot] = 4026532200 + i
    fields = dict(kind=kind, seq=1, ts=1764470000.0, node="t", pid=4242, tid=4242, ppid=1, uid=0,
                  comm="runc:[1:CHILD]", vpid=4242, syscall=kind, raw_flags=raw_flags, ret=0,
                  ns=after, ns_before=dict(HOST), ns_id={}, container="myapp")
    fields.update(extra)
    return Event(**fields)


def details_column(line: str) -> int:
    return line.index("new ") if "new " in line else line.index("joined ")


def test_a_long_ns_list_keeps_details_in_its_column():
    header = trace.header()
    start = header.index("DETAILS")
    runc = event(raw_flags=0x6C020000, changed=("mnt", "pid_for_children", "net", "uts", "ipc", "cgroup"))
    pid = event(raw_flags=0x20000000, changed=("pid_for_children",), comm="unshare", container=None)
    net = event(kind="setns", raw_flags=0x40000000, changed=("net",))
    for ev in (runc, pid, net):
        line = trace.format_columns(ev)
        assert details_column(line) == start, (header, line)
    # types, not slots: unshare(CLONE_NEWPID) is about pid; DETAILS names the slot
    assert trace.format_columns(pid).split()[5] == "pid"
    assert "pid_for_children:[" in trace.format_columns(pid)
    # what does not fit is counted, not cut off mid-word
    assert trace.format_columns(runc).split()[5] == "mnt,pid,net,uts+2"


def test_fit_list():
    assert trace._fit_list([], 18) == "-"
    assert trace._fit_list(["net", "uts"], 18) == "net,uts"
    assert trace._fit_list(["mnt", "pid", "net", "uts", "ipc", "cgroup", "time", "user"], 18) == "mnt,pid,net,uts+4"


@pytest.mark.parametrize("values, want", [
    (["net,pid"], {"net", "pid"}),
    (["net", "pid"], {"net", "pid"}),
    (["net,pid", "uts", " ipc , "], {"net", "pid", "uts", "ipc"}),
    (None, set()),
])
def test_type_lists_repeat_or_comma(values, want):
    assert parse_type_list(values) == want


def test_type_lists_name_the_unknown():
    with pytest.raises(ValueError, match="unknown namespace type bogus"):
        parse_type_list(["pid,bogus"])
    # trace also takes the *_for_children slots; snapshot lists namespaces, so it does not
    assert trace.parse_types(["pid_for_children,net"]) == {"pid_for_children", "net"}
    with pytest.raises(ValueError):
        parse_type_list(["pid_for_children"])


def test_both_commands_parse_type_the_same_way():
    import argparse
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    trace.add_parser(sub)
    from tracer.commands import snapshot
    snapshot.add_parser(sub)
    for command in ("trace", "snapshot"):
        args = parser.parse_args([command, "--type", "pid,net", "--type", "uts"])
        assert parse_type_list(args.type) == {"pid", "net", "uts"}, command


MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
45 23 0:13 / /sys/kernel/tracing rw,relatime - tracefs nodev rw
"""


def test_tracefs_unreadable_is_told_from_absent(tmp_path, monkeypatch):
    from tracer.kernel import probes
    monkeypatch.setattr(probes, "tracefs_mounted", lambda: False)    # as a non-root user sees it
    mounted = tmp_path / "mountinfo"
    mounted.write_text(MOUNTINFO)
    assert probes.tracefs_status(str(mounted)) == "unreadable"
    absent = tmp_path / "mountinfo-without"
    absent.write_text("".join(line + "\n" for line in MOUNTINFO.splitlines() if "tracefs" not in line))
    assert probes.tracefs_status(str(absent)) == "absent"
    monkeypatch.setattr(probes, "tracefs_mounted", lambda: True)
    assert probes.tracefs_status(str(absent)) == "ok"


def test_docker_causes():
    denied = doctor.docker_problem(Exception(
        "Error while fetching server API version: ('Connection aborted.', PermissionError(13, 'Permission denied'))"))
    assert "permission denied" in denied.detail and "sudo" in denied.fix and "start" not in denied.fix
    gone = doctor.docker_problem(Exception(
        "Error while fetching server API version: ('Connection aborted.', FileNotFoundError(2, 'No such file or "
        "directory'))"))
    assert "no Docker engine answers" in gone.detail and "start it" in gone.fix
    odd = doctor.docker_problem(Exception("500 Server Error: Internal Server Error"))
    assert "500 Server Error" in odd.detail and odd.status == doctor.WARN
