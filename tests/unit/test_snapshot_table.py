"""`nsgraph snapshot`'s table (tracer/commands/snapshot.py render_table) from Graph JSON.

The input is written here, but checked against the contract (tracer/graph/schema.py
GraphJSON, with check_shape) first, so it has exactly the keys and types the model's
to_json() gives.  tests/docker/test_snapshot_cli.py runs the command on the real
system and parses the same table.
"""

from __future__ import annotations

import re

from tracer.commands.snapshot import render_table
from tracer.graph.schema import GraphJSON, check_shape, namespace_id
from tracer.nstypes import DISPLAY_ORDER

DEV = 4
HEADER = ["NS", "TYPE", "NPROCS", "PID", "USER", "CONTAINER", "COMMAND"]
ROW = re.compile(r"^( *)(└─)?(\d+) +(\w+) +(\d+) +(\S+) +(\S+) +(\S+) +(.*)$")


def ns(ns_type, inode, pids=(), parent=None, alive=True, container=None, pinned=(), holders=()):
    return {
        "id": namespace_id(ns_type, DEV, inode, 0), "type": ns_type, "inode": inode, "dev": DEV,
        "generation": 0, "ns_id": None, "alive": alive, "created": None, "ended": None if alive else 5.0,
        "creator": None, "pids": list(pids), "tids": [], "container": container, "container_id": None, "sharers": [], "sharer_ids": [],
        "owner": None, "owner_id": None,
        "parent": parent, "parent_id": namespace_id(ns_type, DEV, parent, 0) if parent else None,
        "owner_uid": None, "uid_map": None, "gid_map": None, "pinned": list(pinned), "holders": list(holders),
        "pending_end": False, "repaired": False,
    }


def proc(pid, cmdline, uid=0, comm="sh"):
    return {"pid": pid, "ppid": 1, "comm": comm, "cmdline": cmdline, "uid": uid, "ns": {},
            "container": None, "container_id": None, "repaired": False}


def graph(namespaces, processes):
    data = {"version": 1, "time": 10.0, "node": "test", "host_ns": {}, "namespaces": namespaces,
            "processes": processes, "containers": [], "joins": [], "counters": {}}
    assert check_shape(data, GraphJSON) == []
    return data


def rows(text):
    """(depth, inode, type, nprocs, pid, user, container, command) per row, after the header."""
    lines = text.rstrip("\n").split("\n")
    assert lines[0].split() == HEADER
    out = []
    for line in lines[1:]:
        m = ROW.match(line)
        assert m, "not a table row: %r" % line
        indent, branch, inode, t, n, pid, uid, container, command = m.groups()
        depth = len(indent) // 2
        assert (depth > 0) == bool(branch), line
        out.append((depth, int(inode), t, int(n), pid, uid, container, command))
    return out


def test_pid_and_user_namespaces_nest_under_their_parents():
    data = graph([
        ns("pid", 30, pids=[300], parent=20), ns("pid", 10, pids=[1, 2]), ns("pid", 20, pids=[200], parent=10),
        ns("pid", 21, pids=[210], parent=10), ns("user", 50, pids=[1]), ns("user", 51, pids=[510], parent=50),
    ], [proc(1, "/sbin/init"), proc(2, "sh"), proc(200, "unshare -p"), proc(210, "b"), proc(300, "sleep 60"),
        proc(510, "podman")])
    got = [(d, inode, t) for d, inode, t, *_ in rows(render_table(data))]
    # user before pid (owners first), each type's roots by inode, children right under their parent
    assert got == [(0, 50, "user"), (1, 51, "user"),
                   (0, 10, "pid"), (1, 20, "pid"), (2, 30, "pid"), (1, 21, "pid")]


def test_other_types_are_flat_and_in_display_order():
    data = graph([ns(t, 100 + i, pids=[1]) for i, t in enumerate(reversed(DISPLAY_ORDER))], [proc(1, "init")])
    got = rows(render_table(data))
    assert [r[2] for r in got] == list(DISPLAY_ORDER)
    assert all(r[0] == 0 for r in got)


def test_columns_come_from_the_first_member():
    data = graph([ns("net", 7, pids=[42, 43], container="myapp")],
                 [proc(42, "nginx -g daemon off;", uid=101), proc(43, "nginx: worker")])
    (row,) = rows(render_table(data))
    assert row == (0, 7, "net", 2, "42", "101", "myapp", "nginx -g daemon off;")


def test_namespaces_without_members_say_what_keeps_them():
    data = graph([
        ns("net", 1, pinned=["/run/netns/blue", "/run/netns/blue2"]),
        ns("uts", 2, holders=[77, 78]),
        ns("user", 3),
    ], [])
    got = {r[1]: r for r in rows(render_table(data))}
    assert got[1][3:] == (0, "-", "-", "-", "(pinned: /run/netns/blue, /run/netns/blue2)")
    assert got[2][7] == "(held by pid 77, 78)"
    assert got[3][7] == "(kept alive by its children)"


def test_ended_namespaces_are_left_out_and_a_missing_parent_makes_a_root():
    data = graph([ns("pid", 10, pids=[1]), ns("pid", 11, alive=False),
                  ns("pid", 12, pids=[5], parent=11),      # its parent has ended
                  ns("pid", 13, pids=[6], parent=99)],     # its parent is not in the graph (not ours to see)
                 [proc(1, "init"), proc(5, "a"), proc(6, "b")])
    got = [(d, inode) for d, inode, *_ in rows(render_table(data))]
    assert got == [(0, 10), (0, 12), (0, 13)]


def test_a_namespace_that_names_itself_as_parent_is_a_root():
    looped = ns("user", 8, pids=[1])
    looped["parent_id"] = looped["id"]
    data = graph([looped], [proc(1, "init")])
    assert [(r[0], r[1]) for r in rows(render_table(data))] == [(0, 8)]


def test_parents_that_loop_hide_nothing():
    """Only a damaged recording can say so, but the table must still list every namespace once."""
    a, b = ns("pid", 1, pids=[1], parent=2), ns("pid", 2, pids=[2], parent=1)
    data = graph([a, b, ns("pid", 3, pids=[3], parent=2)], [proc(1, "a"), proc(2, "b"), proc(3, "c")])
    got = [(d, inode) for d, inode, *_ in rows(render_table(data))]
    assert sorted(inode for _d, inode in got) == [1, 2, 3]
    assert got == [(0, 1), (1, 2), (2, 3)]


def test_hostile_command_lines_stay_on_one_line_and_are_cut():
    data = graph([ns("net", 1, pids=[9], container="x\x1b[31my")],
                 [proc(9, "evil\nsecond line\t" + "A" * 300)])
    text = render_table(data)
    assert text.count("\n") == 2 and "\x1b" not in text
    (row,) = rows(text)
    assert row[6] == "x\\x1b[31my"
    assert row[7].startswith("evil\\nsecond line\\t") and len(row[7]) == 120


def test_nprocs_is_right_aligned_and_the_other_columns_left():
    data = graph([ns("net", 1, pids=list(range(100, 112))), ns("uts", 22222222, pids=[100])],
                 [proc(p, "x") for p in range(100, 112)])
    lines = render_table(data).splitlines()
    header, first, second = lines
    end = header.index("NPROCS") + len("NPROCS")
    assert first[end - 2:end] == "12" and second[end - 1] == "1" and second[end - 2] == " "
    assert first.index("net") == second.index("uts") == header.index("TYPE")


def test_an_empty_graph_is_just_the_header():
    assert render_table(graph([], [])).split() == HEADER
