"""EventTagging: which execs are looked up as a join session's command (no root)."""

from tracer.event_tags import JOIN_EXEC_WINDOW, JOINING_LIMIT, EventTagging
from tracer.events.event import Event
from tracer.events.kinds import EventKind


class RecordingTagger:
    def __init__(self):
        self.tagged = []

    def tag(self, event):
        self.tagged.append((event.kind, event.pid))


def event(kind, pid, ts, **fields):
    return Event(kind=kind, seq=0, ts=ts, pid=pid, tid=pid, ppid=1, uid=0, vpid=pid, comm="x", **fields)


def test_the_exec_of_a_successful_setns_caller_and_of_its_child_is_tagged():
    tagger = RecordingTagger()
    tagging = EventTagging(tagger)
    tagging(event(EventKind.SETNS, 100, 1.0, syscall="setns", ret=0))
    tagging(event(EventKind.CLONE, 100, 1.1, child_pid=101))
    tagging(event(EventKind.EXEC, 101, 1.2))
    tagging(event(EventKind.EXEC, 100, 1.3))
    tagging(event(EventKind.EXEC, 100, 1.4))       # only the first exec after the join
    assert tagger.tagged == [(EventKind.EXEC, 101), (EventKind.EXEC, 100)]


def test_a_failed_setns_starts_no_session():
    tagger = RecordingTagger()
    tagging = EventTagging(tagger)
    tagging(event(EventKind.SETNS, 100, 1.0, syscall="setns", ret=-9))      # EBADF
    tagging(event(EventKind.CLONE, 100, 1.1, child_pid=101))
    tagging(event(EventKind.EXEC, 101, 1.2))
    assert tagger.tagged == [] and tagging.joining == {}


def test_a_caller_that_exits_without_exec_is_forgotten():
    tagging = EventTagging(RecordingTagger())
    tagging(event(EventKind.SETNS, 100, 1.0, syscall="setns", ret=0))
    tagging(event(EventKind.EXIT, 100, 1.5, exit_code=0))
    assert tagging.joining == {}


def test_a_fork_storm_of_a_joined_process_keeps_the_table_bounded_and_the_newest():
    tagger = RecordingTagger()
    tagging = EventTagging(tagger)
    tagging(event(EventKind.SETNS, 100, 0.0, syscall="setns", ret=0))
    children = range(1000, 1000 + 10 * JOINING_LIMIT)
    for n, child in enumerate(children):
        tagging(event(EventKind.CLONE, 100, 0.001 * n, child_pid=child))
        assert len(tagging.joining) <= 2 * JOINING_LIMIT + 1
    newest = children[-1]
    tagging(event(EventKind.EXEC, newest, 0.001 * len(children)))
    assert tagger.tagged == [(EventKind.EXEC, newest)]


def test_callers_past_the_exec_window_are_dropped_first():
    tagging = EventTagging(RecordingTagger())
    for pid in range(2 * JOINING_LIMIT):
        tagging(event(EventKind.SETNS, pid, 0.0, syscall="setns", ret=0))
    late = JOIN_EXEC_WINDOW + 1.0
    tagging(event(EventKind.SETNS, 99999, late, syscall="setns", ret=0))
    tagging(event(EventKind.SETNS, 99998, late, syscall="setns", ret=0))
    assert set(tagging.joining) == {99999, 99998}
