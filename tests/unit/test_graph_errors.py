"""The model's two kinds of failure: bad input (rejected, nothing applied) and its own bugs
(logged with a traceback every time, counted apart, repaired from the next snapshot)."""

from __future__ import annotations

import logging

import pytest
from synthetic import HOST, ev, fresh_graph, host_snapshot, with_

from tracer import nstypes
from tracer.graph import ops as graph_ops
from tracer.graph.processes import Processes


def _state(g):
    data = g.to_json()
    data.pop("time")
    counters = data.pop("counters")
    return data, counters


BAD_EVENTS = [
    ("unknown kind", lambda: ev("bogus", 50)),
    ("unhashable kind", lambda: ev(["exec"], 50)),
    ("garbage inode", lambda: ev("clone", 50, ns=with_(HOST, net="x"), before=HOST, child_pid=60, raw_flags=17)),
    ("unknown slot", lambda: ev("unshare", 50, ns=with_(HOST, bogus=5), before=HOST,
                                raw_flags=nstypes.CLONE_NEWUTS)),
    # The parent's namespaces are unchanged (the fast path) but the "before" map is garbage,
    # and the pid being cloned is taken: nothing may be removed before the check.
    ("bad before, fast path", lambda: ev("clone", 50, ns=HOST, before=with_(HOST, nope=1), child_pid=1,
                                         raw_flags=nstypes.CLONE_NEWUTS | 17)),
    ("child pid not a number", lambda: ev("clone", 50, ns=HOST, before=HOST, child_pid="61", raw_flags=17)),
]


@pytest.mark.parametrize("name,make", BAD_EVENTS, ids=[b[0] for b in BAD_EVENTS])
def test_a_bad_event_is_rejected_and_changes_nothing(name, make):
    g = fresh_graph(pids=(1, 50))
    g.apply(ev("exec", 50, ns=HOST, filename="/bin/sh"))    # pid 50 has its namespaces as its sig
    before, counters0 = _state(g)
    heard = []
    g.subscribe(heard.append)
    g.apply(make())
    after, counters = _state(g)
    assert after == before and heard == []
    assert counters["rejected"] == counters0["rejected"] + 1
    assert counters["internal_errors"] == 0 and not g.needs_repair
    assert g.check_invariants() == []


BAD_OPS = [
    {"op": "nonsense"},
    "not an object",
    {"op": "proc", "pid": 50, "ns": {"net": "x"}, "start_ticks": 999},      # would replace pid 50 first
    {"op": "proc", "pid": "50", "ns": HOST},
    {"op": "ns", "type": "nett", "inode": 5},
    {"op": "ns", "type": "net", "inode": 102, "holders": ["x"]},
    {"op": "ns_gone", "type": "net", "inode": 102, "ended": "yesterday"},
    {"op": "procread", "pid": 50, "cmdline": "sh -c x", "cgroup": None},
    {"op": "lost", "n": "many"},
    {"op": "container", "data": {"name": "no id"}},
    {"op": "join_command", "id": "x", "command": "ls"},
    {"op": "link", "ts": "now"},
]


@pytest.mark.parametrize("op", BAD_OPS, ids=[str(i) for i in range(len(BAD_OPS))])
def test_a_bad_op_is_rejected_and_changes_nothing(op):
    g = fresh_graph(pids=(1, 50))
    before, counters0 = _state(g)
    g.apply_ops([op])
    after, counters = _state(g)
    assert after == before
    assert counters["rejected"] == counters0["rejected"] + 1 and counters["internal_errors"] == 0
    assert g.check_invariants() == []


def test_a_bug_in_a_handler_is_logged_each_time_counted_and_repaired(monkeypatch, caplog):
    g = fresh_graph(pids=(1, 50, 51, 52))
    real_remove = Processes.remove

    def half_remove(self, proc, ts):
        # A bug: the process leaves the table but not its namespaces' member lists.
        del self.procs[proc.pid]
        raise RuntimeError("bug in remove")

    monkeypatch.setattr(Processes, "remove", half_remove)
    with caplog.at_level(logging.ERROR, logger="tracer.graph.model"):
        g.apply(ev("exit", 51))
        g.apply(ev("exit", 52))
    monkeypatch.setattr(Processes, "remove", real_remove)
    records = [r for r in caplog.records if "internal error" in r.getMessage()]
    assert len(records) == 2 and all(r.exc_info and r.exc_info[0] is RuntimeError for r in records)
    assert g.counters["internal_errors"] == 2 and g.counters["rejected"] == 0
    assert g.needs_repair and g.damaged
    assert g.check_invariants() != []              # half-applied, as the bug left it

    repaired = g.reconcile(host_snapshot(pids=(1, 50), taken_at=2000.0), since_version=g.version)
    assert repaired >= 2
    assert g.check_invariants() == []
    assert not g.needs_repair and not g.damaged
    assert g.namespace("net:102")["pids"] == [1, 50]
    # the model works on: the next exit is an ordinary one
    g.apply(ev("exit", 50))
    assert g.namespace("net:102")["pids"] == [1] and g.counters["internal_errors"] == 2


def test_a_bug_in_one_op_leaves_the_other_ops_of_the_call(monkeypatch, caplog):
    g = fresh_graph(pids=(1,))

    def broken(g, op, ts):
        raise KeyError("bug")

    monkeypatch.setitem(graph_ops.OP_HANDLERS, "container_gone", broken)
    with caplog.at_level(logging.ERROR, logger="tracer.graph.model"):
        g.apply_ops([{"op": "container", "data": {"id": "a" * 64, "name": "web"}},
                     {"op": "container_gone", "id": "a" * 64},
                     {"op": "counted", "name": "settled"}])
    assert g.counters["internal_errors"] == 1 and g.counters["rejected"] == 0
    assert g.counters["settled"] == 1
    assert [c["name"] for c in g.to_json()["containers"]] == ["web"]
    assert any(r.exc_info for r in caplog.records)


def test_the_recount_after_a_bug_replays_the_same(monkeypatch):
    from tracer.graph import NamespaceGraph
    from tracer.history.replay import replay_records
    g = fresh_graph(pids=(1, 50, 51))
    journal = []
    state = g.export_state()
    g.add_journal(lambda kind, payload, seq: journal.append((kind, payload)))

    def half_remove(self, proc, ts):
        del self.procs[proc.pid]
        raise RuntimeError("bug in remove")

    with monkeypatch.context() as m:
        m.setattr(Processes, "remove", half_remove)
        g.apply(ev("exit", 51))
        copy = NamespaceGraph.from_state(state)
        replay_records(copy, journal[:1])       # the replay meets the same bug
    g.reconcile(host_snapshot(pids=(1, 50), taken_at=2000.0), since_version=g.version)
    replay_records(copy, journal[1:])
    a, b = g.to_json(), copy.to_json()
    a.pop("time"), b.pop("time")
    assert a == b and copy.check_invariants() == []
