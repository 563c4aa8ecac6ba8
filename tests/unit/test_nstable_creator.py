"""A creating event applied after a snapshot already found its namespace (nstable.create)."""

from __future__ import annotations

from tracer.graph.changelog import ChangeLog
from tracer.graph.nstable import NamespaceTable

CREATOR = {"pid": 42, "tid": 42, "comm": "unshare", "syscall": "unshare"}


def table():
    return NamespaceTable(dev=4, changes=ChangeLog(), counters={"repaired": 0})


def test_the_event_fills_in_the_creator_a_snapshot_could_not_know():
    t = table()
    t.changes.begin()
    found = t.add("uts", 4026532900, 77, None, None)         # the snapshot: no creator, no time
    t.changes.finish()
    t.changes.begin()
    made = t.create("uts", 4026532900, 77, 1000.5, dict(CREATOR))
    assert t.changes.finish(), "filling in the creator is a change clients must see"
    assert made is found and made.gen == 0 and made.id == found.id
    assert made.creator == CREATOR and made.created == 1000.5
    assert made.version == t.changes.version
    assert t.changes.since(t.changes.version - 1)[-1][1:] == ("update", "namespace", made.id)


def test_a_known_creator_is_kept_and_nothing_changes():
    t = table()
    first = t.create("uts", 4026532901, 78, 10.0, dict(CREATOR))
    t.changes.begin()
    again = t.create("uts", 4026532901, 78, 20.0, dict(CREATOR, pid=99))
    assert not t.changes.finish()
    assert again is first and again.creator["pid"] == 42 and again.created == 10.0


def test_another_ns_id_is_a_recycled_inode_not_the_same_namespace():
    t = table()
    old = t.add("uts", 4026532902, 79, None, None)
    new = t.create("uts", 4026532902, 80, 30.0, dict(CREATOR))
    assert new is not old and new.gen == old.gen + 1 and new.creator == CREATOR
    assert old.ended is not None and old.creator is None
