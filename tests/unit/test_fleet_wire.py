"""The fleet's data path without NATS: journal -> Batcher -> Outbox -> wire -> NodeReplica.

A replica fed the messages an agent's graph produced must end up as that graph,
through checkpoints, gaps, duplicates, drops and restarts; the wire decoder must
refuse what is not nsgraph wire data (versions 1 and 2), with a reason.
"""

from __future__ import annotations

import json
import zlib

import pytest

from tracer import nstypes
from tracer.fleet import wire
from tracer.fleet.nodeview import ReplicaGraphView
from tracer.fleet.outbox import Batcher, JournalTap, Outbox
from tracer.fleet.replica import NodeReplica

from test_graph import HOST, ev, fresh_graph, with_


def _strip(data):
    data = dict(data)
    data.pop("time")
    return data


class Agent:
    """A graph with the agent's journal tap, batcher and outbox (no publisher: tests drain)."""

    def __init__(self, node="n1", run="r1", limit=64 << 20, **kw):
        self.graph = fresh_graph(pids=(1, 50))
        self.tap = JournalTap()
        self.outbox = Outbox(limit)
        self.batcher = Batcher(self.graph, self.tap, self.outbox, node, run, **kw)
        with self.graph.lock:
            state = self.graph.export_state()
            self.graph.add_journal(self.tap)
        self.outbox.put_checkpoint(wire.encode_checkpoint(node, run, state, "start", 60.0))
        self.batcher.mark_checkpointed()

    def drain_raw(self):
        """Every queued message as published (OutMessage), in order."""
        out = []
        while True:
            msg = self.outbox.peek()
            if msg is None:
                return out
            self.outbox.pop(msg)
            out.append(msg)

    def drain(self):
        """Every queued message, decoded as a reader would, in order (as if published)."""
        return [wire.decode(msg.subject, msg.headers, msg.body) for msg in self.drain_raw()]


def feed(replica, messages):
    for i, item in enumerate(messages, 1):
        if isinstance(item, wire.Checkpoint):
            replica.on_checkpoint(item, i)
        else:
            replica.on_events(item, i)


def workload(g, start=300, n=20):
    cur = dict(HOST)
    for i in range(n):
        new = with_(cur, uts=start + i)
        g.apply(ev("unshare", 50, ns=new, before=cur, raw_flags=nstypes.CLONE_NEWUTS, comm="unshare"))
        cur = new
    g.apply(ev("clone", 50, ns=cur, before=cur, child_pid=60 + start, raw_flags=17))
    g.apply(ev("exec", 60 + start, ns=cur, filename="/bin/true", comm="true"))
    g.apply(ev("exit", 60 + start, ns=cur))
    return cur


def test_replica_rebuilds_the_agent_graph_exactly():
    agent = Agent()
    workload(agent.graph)
    agent.batcher.flush()
    workload(agent.graph, start=400)
    agent.batcher.flush()
    replica = NodeReplica("n1")
    messages = agent.drain()
    assert isinstance(messages[0], wire.Checkpoint) and messages[0].reason == "start"
    feed(replica, messages)
    assert replica.synced and replica.counters["missed"] == 0
    assert _strip(replica.graph.to_json()) == _strip(agent.graph.to_json())
    assert replica.counters["events"] == 46


def test_a_publisher_that_lags_gets_fewer_larger_messages_and_the_same_graph():
    agent = Agent(max_records_per_message=40)
    workload(agent.graph)                           # 23 records
    agent.batcher.flush(coalesce=True)              # only the start checkpoint queued: sent at once
    assert len(agent.outbox) == 2
    workload(agent.graph, start=400)
    agent.batcher.flush(coalesce=True)              # two unacknowledged: the records wait in the tap
    assert len(agent.outbox) == 2 and len(agent.tap) == 23
    workload(agent.graph, start=500)                # 46 waiting: more than one message's worth
    agent.batcher.flush(coalesce=True)
    assert len(agent.tap) == 0 and len(agent.outbox) == 4
    messages = agent.drain()
    assert [len(m.records) for m in messages[1:]] == [23, 40, 6]
    replica = NodeReplica("n1")
    feed(replica, messages)
    assert replica.synced and replica.counters["missed"] == 0
    assert _strip(replica.graph.to_json()) == _strip(agent.graph.to_json())
    workload(agent.graph, start=600)
    agent.outbox.put(wire.encode_events("n1", "r1", [(999, 0.0, "ops", [])]))
    agent.outbox.put(wire.encode_events("n1", "r1", [(999, 0.0, "ops", [])]))
    agent.batcher.request_checkpoint("periodic")    # a checkpoint due is never held back
    agent.batcher.flush(coalesce=True)
    assert len(agent.tap) == 0 and agent.batcher.counters["checkpoints"] == 2


def test_resent_messages_are_skipped_and_counted():
    agent = Agent()
    workload(agent.graph)
    agent.batcher.flush()
    messages = agent.drain()
    replica = NodeReplica("n1")
    feed(replica, messages + messages[1:])         # a publisher retry after a lost ack
    assert replica.counters["duplicates"] == len(messages) - 1
    assert _strip(replica.graph.to_json()) == _strip(agent.graph.to_json())


def test_a_hole_stops_the_replica_until_the_next_checkpoint_repairs_it():
    agent = Agent(max_records_per_message=5)
    workload(agent.graph)
    agent.batcher.flush()
    messages = agent.drain()
    assert len(messages) > 3
    replica = NodeReplica("n1")
    feed(replica, messages[:2] + messages[3:])     # one events message lost
    assert not replica.synced and replica.counters["missed"] == 5
    assert replica.gap_since is not None
    agent.batcher.request_checkpoint("periodic")
    workload(agent.graph, start=500)
    agent.batcher.flush()
    feed(replica, agent.drain())
    assert replica.synced and replica.counters["resets"] == 1
    assert _strip(replica.graph.to_json()) == _strip(agent.graph.to_json())


def test_overflow_drops_counts_and_the_repair_checkpoint_catches_up():
    agent = Agent(limit=4000, max_records_per_message=3)
    replica = NodeReplica("n1")
    feed(replica, agent.drain())
    for round_ in range(4):                        # NATS is down: nothing leaves the outbox
        workload(agent.graph, start=300 + 100 * round_)
        agent.batcher.flush()
    assert agent.outbox.dropping
    dropped = agent.outbox.counters["dropped_records"]
    assert dropped > 0 and agent.outbox.bytes <= 4000
    kept = agent.drain()                           # NATS is back: what was kept goes out
    agent.batcher.flush()                          # drained below low water: the repair checkpoint
    repair = agent.drain()
    assert [m.reason for m in repair if isinstance(m, wire.Checkpoint)] == ["repair"]
    assert not agent.outbox.dropping
    workload(agent.graph, start=900)
    agent.batcher.flush()
    rest = agent.drain()
    agent.batcher.flush()                          # (a 4 kB outbox may overflow again: repaired again)
    feed(replica, kept + repair + rest + agent.drain())
    assert replica.counters["missed"] > 0          # the hole was seen and counted ...
    assert replica.synced                          # ... and repaired
    assert _strip(replica.graph.to_json()) == _strip(agent.graph.to_json())


def test_batches_never_separate_an_event_from_its_nested_reads():
    agent = Agent(max_records_per_message=1)
    g = agent.graph
    # A nested /proc read journaled right after the exec that made it (as the live graph does).
    g.apply(ev("clone", 50, ns=HOST, before=HOST, child_pid=70, raw_flags=17))
    g.apply(ev("exec", 70, ns=HOST, filename="/bin/sleep", comm="sleep"))
    records = [(1, 1.0, "event", None), (2, 1.0, "op", {"op": "procread", "pid": 70, "nested": True}),
               (3, 1.0, "op", {"op": "procread", "pid": 70, "nested": True}), (4, 1.0, "event", None)]
    chunks = agent.batcher._chunks(records)
    assert [[r[0] for r in c] for c in chunks] == [[1, 2, 3], [4]]


def test_a_restarted_agent_resets_the_replica_and_versions_only_grow():
    first = Agent(run="run1")
    workload(first.graph)
    first.batcher.flush()
    replica = NodeReplica("n1")
    view = ReplicaGraphView(replica)
    feed(replica, first.drain())
    before = view.version
    assert view.diff_since(before) is not None
    second = Agent(run="run2")                     # a new graph: its versions start low again
    feed(replica, second.drain())
    assert replica.run == "run2" and replica.counters["resets"] == 1
    assert view.version > before
    assert view.diff_since(before) is None         # clients must fetch the graph again
    assert view.to_json()["version"] == view.version
    workload(second.graph, start=700)
    second.batcher.flush()
    feed(replica, second.drain())
    diff = view.diff_since(view.version - 1)
    assert diff["version"] == view.version


def test_events_of_a_run_without_its_checkpoint_wait():
    agent = Agent(run="lost")
    workload(agent.graph)
    agent.batcher.flush()
    replica = NodeReplica("n1")
    feed(replica, agent.drain()[1:])               # its start checkpoint fell out of retention
    assert replica.graph is None and replica.counters["unknown_run"] == 23


def test_history_replay_stops_at_a_time():
    agent = Agent()
    workload(agent.graph)
    agent.batcher.flush()
    messages = agent.drain()
    batch = messages[1]
    middle = batch.records[len(batch.records) // 2][1]
    replica = NodeReplica("n1")
    replica.on_checkpoint(messages[0])
    replica.on_events(batch, until=middle)
    assert replica.last_record_ts <= middle < batch.records[-1][1]


def test_new_processes_are_read_so_the_dashboard_sees_commands_and_containers():
    agent = Agent()
    reads = []
    agent.graph.process = lambda pid: reads.append(pid)
    agent.graph.apply(ev("clone", 50, ns=HOST, before=HOST, child_pid=80, raw_flags=17))
    agent.graph.apply(ev("exec", 80, ns=HOST, filename="/bin/sleep", comm="sleep"))
    agent.batcher.flush()
    assert reads == [80]


# -- the decoder ---------------------------------------------------------------------------

def _events_message():
    agent = Agent()
    workload(agent.graph, n=2)
    agent.batcher.flush()
    agent.outbox.pop(agent.outbox.peek())          # the start checkpoint
    return agent.outbox.peek()


def test_encoding_is_documented_version_2():
    msg = _events_message()
    assert msg.subject == "nsgraph.n1.events"
    assert msg.headers["Nsgraph-Wire"] == "2" and msg.headers["Content-Encoding"] == "zlib"
    assert msg.headers["Nats-Msg-Id"] == "n1.r1.e.%d" % msg.first
    body = json.loads(zlib.decompress(msg.body))
    assert body["v"] == 2 and body["node"] == "n1" and body["run"] == "r1"
    assert (body["first"], body["last"]) == (msg.first, msg.last)
    count = msg.last - msg.first + 1
    assert len(body["ts"]) == count and all(isinstance(t, float) for t in body["ts"])
    inputs = {index for index, kind, _data in body["inputs"]}
    assert all(kind in ("op", "ops") for _i, kind, _d in body["inputs"])
    events = count - len(inputs)
    column = dict(zip(body["fields"], body["columns"]))
    assert column["kind"][:2] == ["unshare", "unshare"] and len(column["seq"]) == events
    assert column["node"] == {"all": ""}                  # one value all along: written once
    assert column["container_id"] == {"all": None}
    assert body["maps"][column["ns"][0]]["uts"] == 300 and body["maps"][column["ns_before"][0]]["uts"] == 103


def _varied_events():
    g = fresh_graph(pids=(1, 50))
    tap = JournalTap()
    g.add_journal(tap)
    workload(g, n=3)
    tagged = ev("setns", 50, ns=HOST, before=HOST, raw_flags=nstypes.CLONE_NEWNET, comm="nsenter")
    tagged.container, tagged.container_id, tagged.target_container = "web", "c0ffee", "db"
    g.apply(tagged)
    g.apply(ev("exec", 50, ns=HOST, filename="/bin/sh", comm="sh", args=["sh", "-c", "true"]))
    g.apply_ops([{"op": "procread", "pid": 50, "cmdline": ["sh"]}])
    return tap.take()


def test_events_and_inputs_come_back_exactly_with_their_container_tags():
    records = _varied_events()
    msg = wire.encode_events("n1", "r1", records)
    batch = wire.decode(msg.subject, msg.headers, msg.body)
    assert (batch.first, batch.last, batch.inputs) == (records[0][0], records[-1][0], 1)
    assert [(s, t, k) for s, t, k, _p in batch.records] == [(s, t, k) for s, t, k, _p in records]
    for (_s, _t, kind, sent), (_s2, _t2, _k, got) in zip(records, batch.records):
        if kind == "event":
            assert tuple(got) == tuple(sent) and type(got) is type(sent)
            assert (got.container, got.container_id, got.target_container) == (
                sent.container, sent.container_id, sent.target_container)
        else:
            assert got == sent
    tagged = [p for k, p in zip(batch.kinds, batch.payloads) if k == "event" and p.container]
    assert [(e.container, e.container_id, e.target_container) for e in tagged] == [("web", "c0ffee", "db")]


def _v1_body(records):
    """An events body as an agent of version 1 wrote it: one list per record."""
    fields = ["kind", "seq", "ts", "pid", "tid", "ppid", "uid", "vpid", "comm", "syscall", "raw_flags", "ret",
              "fd", "child_pid", "child_vpid", "exit_code", "filename", "ns", "ns_before", "ns_id",
              "ns_id_before", "node", "cgroup_id", "args", "container"]
    maps, rows = [], []
    for seq, ts, kind, payload in records:
        if kind == "event":
            values = [getattr(payload, name) for name in fields]
            for i, name in enumerate(fields):
                if name.startswith("ns") and values[i] is not None:
                    maps.append(dict(values[i]))
                    values[i] = len(maps) - 1
            rows.append([seq, ts, kind, values])
        else:
            rows.append([seq, ts, kind, payload])
    return {"v": 1, "node": "n1", "run": "r1", "first": records[0][0], "last": records[-1][0],
            "fields": fields, "maps": maps, "records": rows}


def test_a_version_1_message_of_an_agent_not_yet_upgraded_is_still_read():
    records = _varied_events()
    body = zlib.compress(json.dumps(_v1_body(records)).encode())
    batch = wire.decode("nsgraph.n1.events", {"Nsgraph-Wire": "1"}, body)
    assert batch.kinds == [k for _s, _t, k, _p in records]
    for (_s, _t, kind, sent), got in zip(records, batch.payloads):
        if kind == "event":
            assert tuple(got)[:-1] == tuple(sent)[:-1] and got.container == sent.container
    broken = _v1_body(records)
    broken["records"].pop(1)
    with pytest.raises(wire.WireError, match="out of sequence"):
        wire.decode("nsgraph.n1.events", {}, zlib.compress(json.dumps(broken).encode()))


@pytest.mark.parametrize("mutate, reason", [
    (lambda o: o.update(v=3), "wire version 3; this nsgraph reads versions 1-2"),
    (lambda o: o.update(node="n2"), "came on node"),
    (lambda o: o.update(last=o["last"] + 1), "journal times for"),
    (lambda o: o.update(first="1"), "first and last record numbers"),
    (lambda o: o["ts"].__setitem__(0, "noon"), "malformed records"),
    (lambda o: o["columns"].pop(), "columns for"),
    (lambda o: o["columns"][1].pop(), "column seq: not"),
    (lambda o: o["columns"].__setitem__(0, {"some": 1}), "column kind"),
    (lambda o: o["columns"][o["fields"].index("ns")].__setitem__(0, 99), "malformed records"),
    (lambda o: o.update(inputs=[[0, "exec", {}]]), "no such record index or kind"),
    (lambda o: o.update(inputs=[[0, "op", "text"]]), "op data that is not an object"),
    (lambda o: o["inputs"][0].__setitem__(0, len(o["ts"])), "no such record index"),
])
def test_decoder_refuses_bad_messages_with_a_reason(mutate, reason):
    msg = wire.encode_events("n1", "r1", _varied_events())
    body = json.loads(zlib.decompress(msg.body))
    mutate(body)
    with pytest.raises(wire.WireError, match=reason):
        wire.decode(msg.subject, {}, zlib.compress(json.dumps(body).encode()))


def test_a_header_of_an_unknown_version_is_refused_before_the_body_is_read():
    with pytest.raises(wire.WireError, match="wire version '3' in the header; this nsgraph reads versions 1-2"):
        wire.decode("nsgraph.n1.events", {"Nsgraph-Wire": "3"}, b"not even zlib")


def test_decoder_refuses_garbage_bombs_and_foreign_subjects():
    with pytest.raises(wire.WireError, match="not zlib"):
        wire.decode("nsgraph.n1.events", {}, b"not compressed")
    bomb = zlib.compress(b"[" * (wire.MAX_EVENTS_BYTES + 10))
    with pytest.raises(wire.WireError, match="inflates to more than"):
        wire.decode("nsgraph.n1.events", {}, bomb)
    with pytest.raises(wire.WireError, match="not a fleet subject"):
        wire.decode("nsgraph.n1.other", {}, b"{}")
    with pytest.raises(wire.WireError, match="not JSON"):
        wire.decode("nsgraph.n1.status", {}, b"\xff")


def test_status_round_trip():
    status = wire.decode("nsgraph.n1.status", None, wire.encode_status("n1", "r1", {"state": "running"}))
    assert status.node == "n1" and status.run == "r1" and status.body["state"] == "running"


def test_a_node_is_served_through_the_web_contract():
    """NodeService and its parts are what webapp/contract.py asks of the single-host service."""
    from tracer.fleet.fleet import Fleet
    from tracer.fleet.history import NodeHistory
    from tracer.fleet.nodeview import NodeService
    from webapp.contract import EventSource, GraphReader, HistoryReader, Service

    fleet = Fleet()
    service = NodeService(fleet, "n1", history=NodeHistory(consumer=None, node="n1"))
    assert isinstance(service, Service)
    assert service.graph is None and service.status.state == "starting"
    agent = Agent()
    workload(agent.graph)
    agent.batcher.flush()
    feed(fleet.node("n1").replica, agent.drain())
    assert isinstance(service.graph, GraphReader) and isinstance(service.store, HistoryReader)
    assert isinstance(service.collector, EventSource)
    assert service.status.state == "running"
    assert service.graph.namespace("uts:4:300:0")["creator"]["comm"] == "unshare"
    seen = []
    service.collector.subscribe(seen.append)
    workload(agent.graph, start=600, n=2)
    agent.batcher.flush()
    feed(fleet.node("n1").replica, agent.drain())
    assert [e.kind for e in seen][:2] == ["unshare", "unshare"]


def test_jumping_to_a_newer_checkpoint_is_not_counted_as_loss():
    agent = Agent(max_records_per_message=5)
    replica = NodeReplica("n1")
    feed(replica, agent.drain())
    workload(agent.graph)
    agent.batcher.flush()
    first = agent.drain()                          # the dashboard falls behind these ...
    agent.batcher.request_checkpoint("periodic")
    agent.batcher.flush()
    newest = [m for m in agent.drain() if isinstance(m, wire.Checkpoint)][-1]
    replica.on_checkpoint(newest, skip=True)       # ... and jumps to the newest checkpoint
    assert replica.counters["missed"] == 0 and replica.counters["skipped_ahead"] == len(
        [r for m in first for r in m.records])
    assert _strip(replica.graph.to_json()) == _strip(agent.graph.to_json())


class _Msg:
    """What nats-py hands the consumer: subject, headers, data, metadata.sequence.stream."""

    def __init__(self, subject, headers, data, stream_seq):
        import types
        self.subject, self.headers, self.data = subject, headers, data
        self.metadata = types.SimpleNamespace(sequence=types.SimpleNamespace(stream=stream_seq))


def test_the_dashboard_counts_and_logs_unreadable_messages_in_one_line_each(caplog):
    from tracer.fleet.consumer import FleetConsumer
    from tracer.fleet.fleet import Fleet

    fleet = Fleet()
    consumer = FleetConsumer(None, [], fleet)
    replica = fleet.node("n1", create=True).replica
    agent = Agent()
    workload(agent.graph)
    agent.batcher.flush()
    start, events = [(m.subject, m.headers, m.body) for m in agent.drain_raw()]
    assert consumer.apply_message("n1", replica, _Msg(*start, 1)) == "checkpoint"
    assert consumer.apply_message("n1", replica, _Msg(*events, 2)) == "events" and replica.synced
    newer = json.loads(zlib.decompress(events[2]))
    newer["v"] = 3
    caplog.set_level("WARNING", logger="tracer.fleet.consumer")
    for i, (headers, data) in enumerate([({}, b"\x00garbage"), ({}, zlib.compress(json.dumps(newer).encode())),
                                         ({"Nsgraph-Wire": "3"}, events[2])]):
        assert consumer.apply_message("n1", replica, _Msg("nsgraph.n1.events", headers, data, 3 + i)) == "skipped"
    assert fleet.counters["bad_messages"] == 3 and replica.counters["bad_messages"] == 3
    assert not replica.synced                      # it waits for the next checkpoint
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3 and all("\n" not in line for line in lines)
    assert "body is not zlib data" in lines[0]
    assert "wire version 3; this nsgraph reads versions 1-2 (upgrade the dashboard)" in lines[1]
    assert "wire version '3' in the header" in lines[2]
