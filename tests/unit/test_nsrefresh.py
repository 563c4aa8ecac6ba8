"""Targeted refreshes (tracer/host/nsrefresh.py) and the "pins" op: the logic, without root.

The real thing (ip netns add/del, unshare --user as nobody, traced live) is
tests/kernel/test_live_refresh.py; here the rounds, coalescing and waiting rules."""

from __future__ import annotations

import os

from synthetic import HOST, ev, fresh_graph

from tracer.host.nsrefresh import MountTableWatch, TargetedRefresh, read_user_ns


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class TableChanges:
    """Stands in for the kernel's mount-table notifications (the kernel test has the real ones)."""

    def __init__(self):
        self.pending = None

    def changes(self):
        out, self.pending = self.pending, None
        return out

    def close(self):
        pass


def ns_of(g, ns_type, inode):
    return next(n for n in g.to_json()["namespaces"] if n["type"] == ns_type and n["inode"] == inode
                and n["alive"])


def test_ip_netns_add_then_del_pins_then_ends_the_namespace():
    g = fresh_graph(pids=(1, 50))
    g.apply(ev("unshare", 50, ns={"net": 401}, before={"net": HOST["net"]}, comm="ip", raw_flags=0x40000000))
    g.apply(ev("exit", 50, brief=True, exit_code=0))
    assert ns_of(g, "net", 401)["pending_end"]
    g.apply_ops([{"op": "pins", "type": "net", "inode": 401, "local": ["/run/netns/x"]}])
    n = ns_of(g, "net", 401)
    assert n["pinned"] == ["/run/netns/x"] and not n["pending_end"]
    g.apply_ops([{"op": "pins", "type": "net", "inode": 401, "local": []}])
    assert not any(n["inode"] == 401 and n["alive"] for n in g.to_json()["namespaces"])


def test_unpinning_keeps_a_namespace_with_members_and_other_mount_namespaces_pins():
    g = fresh_graph(pids=(1, 60))
    g.apply(ev("unshare", 60, ns={"net": 402}, before={"net": HOST["net"]}, raw_flags=0x40000000))
    g.apply_ops([{"op": "ns", "type": "net", "inode": 402, "pinned": ["mnt:[9]/var/run/elsewhere"]},
                 {"op": "pins", "type": "net", "inode": 402, "local": ["/run/netns/y"]}])
    assert ns_of(g, "net", 402)["pinned"] == ["mnt:[9]/var/run/elsewhere", "/run/netns/y"]
    g.apply_ops([{"op": "pins", "type": "net", "inode": 402, "local": []}])
    n = ns_of(g, "net", 402)
    assert n["pinned"] == ["mnt:[9]/var/run/elsewhere"] and n["pids"] == [60]
    # A copy of a removed mount point in another mount namespace went with it (propagation).
    g.apply_ops([{"op": "pins", "type": "net", "inode": 402, "local": ["/run/netns/w"]},
                 {"op": "ns", "type": "net", "inode": 402,
                  "pinned": ["mnt:[9]/var/run/elsewhere", "mnt:[9]/run/netns/w", "/run/netns/w"]},
                 {"op": "pins", "type": "net", "inode": 402, "local": []}])
    assert ns_of(g, "net", 402)["pinned"] == ["mnt:[9]/var/run/elsewhere"]
    # Unpinning a namespace the model does not have adds nothing; a bad op changes nothing.
    before = g.version
    g.apply_ops([{"op": "pins", "type": "net", "inode": 999, "local": []},
                 {"op": "pins", "type": "bogus", "inode": 1, "local": []}])
    assert g.version == before and g.counters_snapshot()["rejected"] == 1


def test_a_new_pin_waits_for_its_namespace_then_rounds_coalesce():
    clock, table = Clock(), TableChanges()
    live = set()
    r = TargetedRefresh(lambda t, i: (t, i) in live, watch=table, clock=clock, min_interval=0.2, pin_wait=1.0)
    table.pending = {("net", 401): ("/run/netns/x",)}
    assert r.ops() == []                   # its unshare event has not reached the model yet
    clock.now += 0.1
    assert r.ops() == []                   # under min_interval: no round at all
    live.add(("net", 401))
    clock.now += 0.15
    ops = r.ops()
    assert [op.pop("ts") > 0 for op in ops] == [True]      # the wall time, for replays
    assert ops == [{"op": "pins", "type": "net", "inode": 401, "local": ["/run/netns/x"]}]
    table.pending = {("net", 402): ("/run/netns/z",)}
    clock.now += 0.25
    assert r.ops() == []
    clock.now += 1.0                       # waited long enough: a pin is a namespace
    assert r.ops()[0]["inode"] == 402
    assert r.stats()["rounds"] == 4


def test_user_namespaces_are_read_through_their_member_and_bounded():
    clock = Clock()
    r = TargetedRefresh(lambda t, i: True, clock=clock, max_users=2, user_deadline=1.0)
    mine = os.stat("/proc/self/ns/user").st_ino
    r.note_event(ev("unshare", os.getpid(), ns={"user": mine}, raw_flags=0x10000000))
    r.note_event(ev("setns", os.getpid(), ns={"user": mine}))               # joined, not made
    r.note_event(ev("unshare", os.getpid(), ns={"user": 77}, ret=-1))     # failed
    r.note_event(ev("unshare", 2 ** 22 + 5, ns={"user": 78}))            # gone before the read
    ops = r.ops()
    assert [op.pop("ts") > 0 for op in ops] == [True]
    with open("/proc/self/uid_map") as f:
        assert ops == [{"op": "ns", "type": "user", "inode": mine, "owner_uid": read_user_ns(
            os.getpid(), mine)["owner_uid"], "uid_map": f.read(), "gid_map": open("/proc/self/gid_map").read()}]
    assert r.stats()["user_dropped"] == 1 and r.stats()["pending_users"] == 0
    assert read_user_ns(os.getpid(), mine + 1) is None     # another namespace by now: not read as it


def test_the_real_mount_table_reports_no_change_when_nothing_changed():
    watch = MountTableWatch()
    try:
        assert watch.changes() is None
        assert all(isinstance(paths, tuple) and paths for paths in watch.pins.values())
    finally:
        watch.close()
