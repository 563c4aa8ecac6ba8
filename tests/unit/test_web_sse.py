"""Server-Sent Events: framing, reconnects with Last-Event-ID, slow and vanished clients.

On the real app and a real NamespaceGraph (tests/web_fixtures.py); events are
real tracer Events handed to the hub's collector callback.  Disconnects are
tested over real loopback sockets against werkzeug's threaded server (the one
`nsgraph serve` uses): the server only learns that a tab closed when its next
write fails, and must then free the stream (open count back to 0).  The run
against the real tracer service is in tests/kernel/test_web_live.py.
"""

from __future__ import annotations

import collections

import json

import pytest

from tracer.service import NsgraphService
from webapp import create_app
from webapp.config import WebConfig
from web_fixtures import TOKEN, LoopbackServer, World, authed, parse_sse, read_until, serving, wait_for


def _next(it) -> str:
    chunk = next(it)
    return chunk.decode() if isinstance(chunk, bytes) else chunk


def _first(it, n=3) -> list:
    return parse_sse("".join(_next(it) for _ in range(n)))


def apply_diff(graph: dict, diff: dict) -> dict:
    """The browser's upsert semantics (webapp/static/js/model.js), for namespaces."""
    spaces = {n["id"]: n for n in graph["namespaces"]}
    for change in diff["changes"]:
        if change["entity"] != "namespace":
            continue
        if change["op"] == "remove":
            spaces.pop(change["id"], None)
        else:
            spaces[change["id"]] = change["data"]
    return dict(graph, namespaces=list(spaces.values()), version=diff["version"])


def namespace_changes(diff: dict) -> list:
    return [c["id"] for c in diff["changes"] if c["entity"] == "namespace"]


# -- framing and content, through the test client -------------------------------------------

def test_stream_sends_status_then_diffs_events_and_demo_runs():
    world = World()
    app, client = authed(serving(world))
    hub = app.extensions["nsgraph"].hub
    hub.pump()  # attach; first sight of the graph (a resync for pages that got 503)
    r = client.get("/stream")
    assert r.status_code == 200 and r.mimetype == "text/event-stream"
    assert r.headers["Cache-Control"] == "no-store"
    it = iter(r.response)
    kinds = [k for k, _, _ in _first(it)]
    assert kinds[:2] == ["retry", "status"] and kinds[2] == "comment"
    ns_id = world.new_namespace("uts")
    event = world.unshare_event()
    hub.on_event(event)
    hub.pump()
    hub.publish("demo", {"id": "r1", "status": "running"})
    msgs = parse_sse(_next(it))
    kinds = [k for k, _, _ in msgs]
    assert "diff" in kinds and "event" in kinds and kinds[-1] == "demo"
    diff_msg = next(m for m in msgs if m[0] == "diff")
    assert diff_msg[1] == str(world.graph.version)
    diff = json.loads(diff_msg[2])
    assert namespace_changes(diff) == [ns_id]
    assert diff["counters"]["namespaces_by_type"]["uts"] == 3     # host, myapp, the new one
    sent = json.loads(next(m for m in msgs if m[0] == "event")[2])
    assert sent["kind"] == "unshare" and sent["seq"] == event.seq and sent["flags"] == ["CLONE_NEWNET"]
    r.close()
    assert hub.open_streams == 0


def test_heartbeat_when_idle():
    _, client = authed(serving(World()), sse_heartbeat_s=0.05)
    r = client.get("/stream")
    it = iter(r.response)
    for _ in range(3):
        _next(it)
    assert _next(it).startswith(": heartbeat")
    r.close()


def test_closing_the_response_frees_the_stream():
    app, client = authed(serving(World()))
    hub = app.extensions["nsgraph"].hub
    responses = [client.get("/stream") for _ in range(3)]
    for r in responses:
        next(iter(r.response))
    assert hub.open_streams == 3
    assert "nsgraph_sse_clients 3" in client.get("/metrics").data.decode()
    for r in responses:
        r.close()
    assert hub.open_streams == 0
    assert "nsgraph_sse_clients 0" in client.get("/metrics").data.decode()


def test_with_no_tab_connected_nothing_is_encoded_and_a_tab_that_connects_catches_up():
    world = World()
    app, client = authed(serving(world))
    hub = app.extensions["nsgraph"].hub
    hub.pump()                                  # first sight: the "graph is ready" resync
    published = hub.published
    browser = client.get("/api/graph").get_json()
    early = world.new_namespace("uts")
    hub.on_event(world.unshare_event())
    hub.pump()
    assert hub.published == published and hub.graph_version == world.graph.version   # no JSON for nobody
    assert len(hub.events) == 1                                  # /api/events still has it
    r = client.get("/stream?since=%d" % browser["version"])      # the page reconnects from its version
    it = iter(r.response)
    diffs = [m for m in _first(it) if m[0] == "diff"]
    late = world.new_namespace("net")
    hub.pump()
    diffs += [m for m in parse_sse(_next(it)) if m[0] == "diff"]
    for _, _, data in diffs:
        browser = apply_diff(browser, json.loads(data))
    ids = sorted(n["id"] for n in browser["namespaces"])
    assert early in ids and late in ids
    assert ids == sorted(n["id"] for n in world.graph.to_json()["namespaces"])
    r.close()


# -- reconnects ----------------------------------------------------------------------------------

def test_reconnect_with_last_event_id_gets_a_consistent_state():
    world = World()
    app, client = authed(serving(world))
    hub = app.extensions["nsgraph"].hub
    hub.pump()
    browser = client.get("/api/graph").get_json()
    r = client.get("/stream")
    it = iter(r.response)
    _first(it)
    world.new_namespace("uts")
    hub.pump()
    msgs = [m for m in parse_sse(_next(it)) if m[0] == "diff"]
    last_id = msgs[-1][1]
    for _, _, data in msgs:
        browser = apply_diff(browser, json.loads(data))
    r.close()                                   # the tab loses its connection ...
    world.new_namespace("net")                  # ... while the graph moves on
    world.new_namespace("ipc")
    r = client.get("/stream", headers={"Last-Event-ID": last_id})
    diffs = [m for m in _first(iter(r.response)) if m[0] == "diff"]
    assert len(diffs) == 1 and diffs[0][1] == str(world.graph.version)
    browser = apply_diff(browser, json.loads(diffs[0][2]))
    truth = world.graph.to_json()
    assert sorted(n["id"] for n in browser["namespaces"]) == sorted(n["id"] for n in truth["namespaces"])
    assert browser["version"] == truth["version"]
    r.close()


@pytest.mark.parametrize("last_id", ["0", "garbage", "-5", "999999"])
def test_reconnect_too_old_or_unreadable_gets_resync(last_id):
    world = World(changelog_size=64)
    for _ in range(40):                         # more changes than the change log keeps
        world.new_namespace("uts")
    _, client = authed(serving(world))
    r = client.get("/stream", headers={"Last-Event-ID": last_id})
    msgs = _first(iter(r.response))
    assert msgs[-1][0] == "resync"
    assert json.loads(msgs[-1][2])["version"] == world.graph.version
    r.close()


def test_reconnect_at_current_version_gets_nothing_to_apply():
    world = World()
    _, client = authed(serving(world))
    r = client.get("/stream?since=%d" % world.graph.version)
    msgs = _first(iter(r.response))
    assert msgs[-1][0] == "comment" and "up to date" in msgs[-1][2]
    r.close()


def test_a_page_that_connected_while_starting_converges_after_the_ready_resync():
    """Changes made before the hub first sees the graph are in no diff: the
    "graph is ready" resync sends the page to /api/graph, and diffs continue from there."""
    service = NsgraphService()                  # not started: no graph yet
    app, client = authed(service)
    hub = app.extensions["nsgraph"].hub
    hub.pump()
    assert client.get("/api/graph").status_code == 503
    r = client.get("/stream")
    it = iter(r.response)
    msgs = _first(it)
    assert msgs[-1][0] == "resync" and json.loads(msgs[-1][2])["version"] is None
    world = World()
    service.use_graph(world.graph)
    early = world.new_namespace("uts")          # before the hub's first sight
    hub.pump()
    msgs = parse_sse(_next(it))
    assert [m[0] for m in msgs if m[0] in ("diff", "resync")] == ["resync"]
    assert json.loads([m for m in msgs if m[0] == "resync"][0][2])["version"] == world.graph.version
    assert [json.loads(m[2])["state"] for m in msgs if m[0] == "status"] == ["running"]
    browser = client.get("/api/graph").get_json()       # what the page does on resync
    late = world.new_namespace("net")
    hub.pump()
    diffs = [m for m in parse_sse(_next(it)) if m[0] == "diff"]
    assert len(diffs) == 1 and namespace_changes(json.loads(diffs[0][2])) == [late]
    browser = apply_diff(browser, json.loads(diffs[0][2]))
    ids = sorted(n["id"] for n in browser["namespaces"])
    assert early in ids and late in ids
    assert ids == sorted(n["id"] for n in world.graph.to_json()["namespaces"])
    r.close()


# -- slow clients ----------------------------------------------------------------------------------

def test_a_stalled_client_is_resynced_and_memory_stays_bounded():
    app, client = authed(serving(World()), sse_ring_size=16)
    hub = app.extensions["nsgraph"].hub
    hub.pump()
    r = client.get("/stream")
    it = iter(r.response)
    _first(it)
    for i in range(200):  # the client reads nothing meanwhile
        hub.publish("demo", {"i": i})
    assert hub.backlog == 16
    msgs = parse_sse(_next(it))
    assert [m[0] for m in msgs] == ["resync"]
    assert "fell behind" in json.loads(msgs[0][2])["reason"]
    hub.publish("demo", {"i": "after"})
    msgs = parse_sse(_next(it))
    assert [json.loads(m[2])["i"] for m in msgs] == ["after"]
    assert hub.resyncs_sent == 1
    r.close()


def test_an_event_storm_faster_than_encoding_still_lets_diffs_out():
    """The collector keeps adding while the hub encodes: one step takes what was
    pending when it began (it used to drain "until empty" and never return), and past
    one ring of messages the oldest are skipped and counted, not encoded."""
    world = World()
    app, _client = authed(serving(world), sse_ring_size=16)
    hub = app.extensions["nsgraph"].hub
    hub.pump()

    class Racing(collections.deque):   # each event the step keeps lets the collector add one more
        left = 10_000

        def append(self, item):
            super().append(item)
            if Racing.left:
                Racing.left -= 1
                hub.on_event(world.unshare_event())

    hub.events = Racing(maxlen=hub.events.maxlen)
    hub.on_event(world.unshare_event())
    hub.pump()
    assert len(hub.events) == 1 and Racing.left == 10_000 - 1    # one event, and the step returned
    for _ in range(100):
        hub.on_event(world.unshare_event())
    hub.pump()
    assert hub.events_skipped == 100 + 1 - 16 and len(hub.events) == 1 + 16


# -- a real server, real sockets ---------------------------------------------------------------------

def test_closed_tabs_are_cleaned_up_over_real_sockets():
    world = World()
    app = create_app(WebConfig(token=TOKEN, sse_heartbeat_s=0.2), service=serving(world))
    state = app.extensions["nsgraph"]
    state.start()
    server = LoopbackServer(app)
    try:
        socks = [server.open_stream() for _ in range(5)]
        for s in socks:
            head = read_until(s, b"event: status")
            assert b"200 OK" in head and b"text/event-stream" in head
        assert wait_for(lambda: state.hub.open_streams == 5)
        for s in socks[:3]:
            s.close()
        # Noticed at the next write (a heartbeat within 0.2 s), freed in `finally`.
        assert wait_for(lambda: state.hub.open_streams == 2), state.hub.open_streams
        world.new_namespace("uts")      # the graph tells the service, the service the hub
        for s in socks[3:]:
            assert b"event: diff" in read_until(s, b"event: diff")
            s.close()
        assert wait_for(lambda: state.hub.open_streams == 0)
    finally:
        server.close()
        state.stop()


def test_publishing_steps_space_out_with_many_open_streams():
    from webapp.stream import StreamHub
    config = WebConfig(sse_min_interval_s=0.03, sse_streams_at_min_interval=16, sse_max_interval_s=0.1)
    hub = StreamHub(None, config, lambda: {})
    intervals = []
    for streams in (0, 16, 32, 200):
        while hub.open_streams < streams:
            assert hub.try_open()
        intervals.append(hub.publish_interval())
    assert intervals == [0.03, 0.03, pytest.approx(0.06), 0.1]
    while hub.open_streams:
        hub.release()
    assert hub.publish_interval() == 0.03
