"""History across restarts, a second instance, old layouts and retention by age (real SQLite files).

Issue 11: the sequence that keys a run's inputs restarts at 0 in every process, so
schema 1 let a restarted (or a second) serve overwrite history and show a dead run's
graph as current.  Each test here failed on that layout.
"""

from __future__ import annotations

import os
import sqlite3
import time

import pytest

from tracer import nstypes
from tracer.graph.model import NamespaceGraph
from tracer.history import retention
from tracer.history.store import HistoryStore, StoreError

from test_graph import DEV, HOST, ev, host_snapshot, with_


def _strip(data):
    data = dict(data)
    data.pop("time")
    return data


def _graph(pids):
    g = NamespaceGraph(dev=DEV)
    g.load_snapshot(host_snapshot(pids=pids))
    return g


def _run(path, pids, children, **kw):
    """A 'serve': a store attached to a fresh graph (input_seq from 0), some clones; returns both."""
    g = _graph(pids)
    store = HistoryStore(path, **kw).open()
    store.attach(g)
    store.start()
    for child in children:
        g.apply(ev("clone", pids[-1], ns=HOST, before=HOST, child_pid=child, raw_flags=17))
    store.flush()
    return g, store


def test_a_restart_keeps_the_old_runs_history_and_graph_at_picks_the_run(tmp_path):
    path = str(tmp_path / "h.db")
    g1, s1 = _run(path, (1, 50), [100, 101, 102])
    old = _strip(g1.to_json())
    time.sleep(0.05)
    t_old = time.time()
    s1.close()
    time.sleep(0.05)
    g2, s2 = _run(path, (1, 60), [200])          # the same input sequence numbers again
    time.sleep(0.05)
    t_new = time.time()
    try:
        new = _strip(g2.to_json())
        assert old != new
        assert _strip(s2.graph_at(t_old).to_json()) == old
        assert _strip(s2.graph_at(t_new).to_json()) == new
        db = sqlite3.connect(path)
        runs = db.execute("SELECT run_id, ended FROM runs ORDER BY started").fetchall()
        assert len(runs) == 2 and runs[0][0] == s1.run_id and runs[1][0] == s2.run_id
        assert runs[0][1] is not None and runs[1][1] is None
        per_run = dict(db.execute("SELECT run_id, count(*) FROM input_blocks GROUP BY run_id").fetchall())
        assert per_run[s1.run_id] >= 1 and per_run[s2.run_id] >= 1
    finally:
        s2.close()


def test_a_second_instance_is_refused_with_the_holder_and_a_fix(tmp_path):
    path = str(tmp_path / "h.db")
    g, first = _run(path, (1, 50), [100])
    try:
        with pytest.raises(StoreError) as info:
            HistoryStore(path).open()
        message = str(info.value)
        assert "in use by another nsgraph process (pid %d)" % os.getpid() in message and "--db" in message
    finally:
        first.close()
    second = HistoryStore(path).open()           # free again once the first closed
    second.close()


SCHEMA_1 = """
CREATE TABLE inputs (seq INTEGER PRIMARY KEY, ts REAL NOT NULL, kind TEXT NOT NULL, data TEXT NOT NULL);
CREATE TABLE changes (version INTEGER NOT NULL, ts REAL NOT NULL, op TEXT NOT NULL, entity TEXT NOT NULL,
                      ident TEXT NOT NULL);
CREATE TABLE checkpoints (seq INTEGER PRIMARY KEY, ts REAL NOT NULL, version INTEGER NOT NULL, state TEXT NOT NULL);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
INSERT INTO meta VALUES ('schema', '1');
INSERT INTO inputs VALUES (1, 1.0, 'event', '{}');
"""


def test_a_schema_1_database_from_main_is_moved_aside_with_a_message(tmp_path):
    path = str(tmp_path / "history.db")
    old = sqlite3.connect(path)
    old.executescript(SCHEMA_1)
    old.commit()
    old.close()
    g, store = _run(path, (1, 50), [100])
    try:
        assert store.notice and "older nsgraph (schema 1" in store.notice
        moved = store.notice.split("moved it to ")[1].split(" and ")[0]
        assert moved.startswith(path + ".v1-") and os.path.exists(moved)
        assert sqlite3.connect(moved).execute("SELECT count(*) FROM inputs").fetchone()[0] == 1
        assert _strip(store.graph_at(time.time()).to_json()) == _strip(g.to_json())
    finally:
        store.close()
    reopened = HistoryStore(path).open()         # schema 2 now: no notice the second time
    assert reopened.notice is None
    reopened.close()


def test_a_file_that_is_not_a_database_is_moved_aside(tmp_path):
    path = tmp_path / "h.db"
    path.write_bytes(os.urandom(4096))
    store = HistoryStore(str(path)).open()
    try:
        assert "not a readable SQLite database" in store.notice
    finally:
        store.close()


def test_retention_by_age_cuts_at_a_checkpoint_and_stays_exact(tmp_path):
    path = str(tmp_path / "h.db")
    g, store = _run(path, (1, 50), [], checkpoint_every_inputs=10, batch=5)
    try:
        cur = dict(HOST)
        for i in range(60):
            new = with_(cur, uts=400 + i)
            g.apply(ev("unshare", 50, ns=new, before=cur, raw_flags=nstypes.CLONE_NEWUTS, comm="unshare"))
            cur = new
            if i % 10 == 0:
                store.flush()
        store.flush()
        store.checkpoint()
        db = sqlite3.connect(path)
        checkpoints = db.execute("SELECT count(*) FROM checkpoints").fetchone()[0]
        assert checkpoints > 3
        # An hour from now, with a 30-minute limit: everything before the newest checkpoint goes.
        result = retention.prune(db, max_bytes=None, max_age_s=1800, keep_run=store.run_id,
                                 now=time.time() + 3600)
        assert result["checkpoints"] == checkpoints - 1 and result["blocks"] > 0
        assert _strip(store.graph_at(time.time()).to_json()) == _strip(g.to_json())
    finally:
        store.close()
