"""The history database's layout (schema 2), its lock, and what happens to an old layout.

Schema 2 keys everything by run: each `nsgraph serve` (each HistoryStore.attach)
gets a run id, so the graph's input sequence, which starts again at 0 in every
process, can never overwrite another run's rows.

  runs(run_id, started, ended, node, pid)         one row per serve; ended is NULL while it runs
  checkpoints(run_id, seq, ts, version, state)    the whole graph (export_state), zlib'd JSON
  input_blocks(run_id, first_seq, last_seq, first_ts, last_ts, count, nbytes, data)
                                                  the graph's inputs, a writer batch per row:
                                                  zlib'd JSON lines [seq, ts, kind, data]
  change_blocks(run_id, first_version, last_version, ts, count, nbytes, data)
                                                  the change log (audits), a writer batch per row:
                                                  zlib'd JSON [[version, op, entity, ident], ...]
                                                  (blocks.change_records reads them)
  changes(version, ts, op, entity, ident)         the change log as files before change_blocks
                                                  wrote it, a row per change (3x the disk, and
                                                  a third of the writer's time); read, pruned,
                                                  no longer written
  meta(key, value)                                schema = 2

Schema 1 (tables `inputs`/`checkpoints` keyed by the per-run sequence, written with
INSERT OR REPLACE) mixed runs beyond repair, so a schema-1 file is moved aside,
never rewritten: the caller says where it went.

One process at a time: `lock()` takes an exclusive flock on `<db>.lock` and keeps it
while the store is open; a second serve on the same file gets a clear refusal.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
from typing import Optional

VERSION = "2"

DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS runs (run_id TEXT PRIMARY KEY, started REAL NOT NULL, ended REAL,
                                 node TEXT, pid INTEGER);
CREATE TABLE IF NOT EXISTS checkpoints (run_id TEXT NOT NULL, seq INTEGER NOT NULL, ts REAL NOT NULL,
                                        version INTEGER NOT NULL, nbytes INTEGER NOT NULL,
                                        state BLOB NOT NULL, PRIMARY KEY (run_id, seq));
CREATE INDEX IF NOT EXISTS checkpoints_ts ON checkpoints(ts);
CREATE TABLE IF NOT EXISTS input_blocks (run_id TEXT NOT NULL, first_seq INTEGER NOT NULL,
                                         last_seq INTEGER NOT NULL, first_ts REAL NOT NULL,
                                         last_ts REAL NOT NULL, count INTEGER NOT NULL,
                                         nbytes INTEGER NOT NULL, data BLOB NOT NULL,
                                         PRIMARY KEY (run_id, first_seq));
CREATE INDEX IF NOT EXISTS input_blocks_last ON input_blocks(run_id, last_seq);
CREATE INDEX IF NOT EXISTS input_blocks_ts ON input_blocks(last_ts);
CREATE TABLE IF NOT EXISTS changes (version INTEGER NOT NULL, ts REAL NOT NULL, op TEXT NOT NULL,
                                    entity TEXT NOT NULL, ident TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS changes_ts ON changes(ts);
CREATE TABLE IF NOT EXISTS change_blocks (run_id TEXT NOT NULL, first_version INTEGER NOT NULL,
                                          last_version INTEGER NOT NULL, ts REAL NOT NULL,
                                          count INTEGER NOT NULL, nbytes INTEGER NOT NULL,
                                          data BLOB NOT NULL, PRIMARY KEY (run_id, first_version));
CREATE INDEX IF NOT EXISTS change_blocks_ts ON change_blocks(ts);
"""


class SchemaError(Exception):
    """The file cannot be used as a history database; the message says what to do."""


def connect(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, check_same_thread=False, timeout=10)
    db.execute("PRAGMA busy_timeout=10000")
    return db


def _layout(db: sqlite3.Connection) -> Optional[str]:
    """None for an empty file, else the schema version it holds ("1" for the old layout)."""
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not tables:
        return None
    version = None
    if "meta" in tables:
        row = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        version = row[0] if row else None
    if version is None and "inputs" in tables:
        version = "1"
    return version or "unknown"


def open_database(path: str):
    """(connection, notice): the database at `path` in schema 2.  `notice` is None, or one line
    saying that an old file was moved aside and where to.  Raises SchemaError or OSError."""
    notice = None
    db = connect(path)
    try:
        layout = _layout(db)
    except sqlite3.DatabaseError as exc:      # not a database at all ("file is not a database")
        db.close()
        moved = _move_aside(path, "unreadable")
        return _create(path), ("%s was not a readable SQLite database (%s); moved it to %s and "
                               "started a new history" % (path, exc, moved))
    if layout not in (None, VERSION):
        db.close()
        moved = _move_aside(path, "v%s" % layout)
        notice = ("%s had the history layout of an older nsgraph (schema %s, in which restarts overwrote "
                  "each other's rows); moved it to %s and started a new history there (delete the old file "
                  "when you no longer need it)" % (path, layout, moved))
        return _create(path), notice
    if layout is None:
        db.close()
        return _create(path), None
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    return db, notice


def _create(path: str) -> sqlite3.Connection:
    db = connect(path)
    # Must precede the first table: lets retention give freed pages back to the file system.
    db.execute("PRAGMA auto_vacuum=INCREMENTAL")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(DDL)
    db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (VERSION,))
    db.commit()
    return db


def _move_aside(path: str, why: str) -> str:
    target = "%s.%s-%s" % (path, why, time.strftime("%Y%m%d-%H%M%S"))
    os.replace(path, target)
    for suffix in ("-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.replace(path + suffix, target + suffix)
    return target


def lock(path: str) -> int:
    """An exclusive lock on `<path>.lock` (the descriptor; close it to release).
    Raises SchemaError naming the holder when another process has it."""
    lock_path = path + ".lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
        except OSError:
            holder = "unknown"
        os.close(fd)
        raise SchemaError("the history database %s is in use by another nsgraph process (pid %s): give "
                          "each serve its own --db PATH, or stop the other one" % (path, holder))
    os.ftruncate(fd, 0)
    os.pwrite(fd, ("%d\n" % os.getpid()).encode(), 0)
    return fd
