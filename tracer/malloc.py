"""glibc allocator settings for a long-running, many-threaded process (`nsgraph serve`).

Measured (issue 11): serve's RSS grew by ~150 MB in two minutes of 2 000 events/s with
five dashboards open, with no growth in Python objects.  glibc gave each busy thread
its own heap arena (up to 8 per CPU) and, after the first large buffer was freed,
raised its mmap threshold so that later large buffers (stream chunks, checkpoints,
JSON documents) were carved from those arenas and fragmented them.  Two arenas and a
fixed 128 KiB threshold kept the same run flat (+30 MB, levelling off); a periodic
malloc_trim hands freed heap pages back.  Elsewhere (musl, macOS) these are no-ops.

Python's cyclic garbage collector: a full collection walks every object the process
holds (the live graph, the stream and history rings: millions), holding the GIL for
hundreds of milliseconds, and under a steady event stream the objects that churn
through the rings trigger one every few seconds.  `tune_gc` keeps the cheap young
collections automatic, makes the full one happen only when `collect_fully` is called
(serve: once a minute, with the trim), and `freeze_startup` moves what exists after
start-up (modules, BCC, the first graph) out of every later collection.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

_libc = None


def _glibc():
    global _libc
    if _libc is None:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _libc = libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else False
        except OSError:
            _libc = False
    return _libc or None


def tune(arenas: int = 2, mmap_threshold: int = 128 * 1024) -> bool:
    """Call before starting threads.  True when the settings took."""
    libc = _glibc()
    if libc is None:
        return False
    ok = libc.mallopt(M_ARENA_MAX, arenas) == 1
    ok &= libc.mallopt(M_MMAP_THRESHOLD, mmap_threshold) == 1   # also stops its dynamic growth
    ok &= libc.mallopt(M_TRIM_THRESHOLD, 4 * mmap_threshold) == 1
    return bool(ok)


def trim() -> None:
    """Give freed heap memory back to the system (a few ms; call now and then, not per request)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


FULL_COLLECTION_NEVER = 1 << 30


def tune_gc() -> None:
    """Young collections as usual; the full one only from collect_fully()."""
    young, middle, _old = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_NEVER)


def freeze_startup() -> None:
    """Leave everything allocated so far out of later collections (call once, after start-up)."""
    gc.collect()
    gc.freeze()


def collect_fully() -> int:
    """A full collection now (what tune_gc stopped from happening by itself); objects freed."""
    return gc.collect()


TRACE_ENV = "NSGRAPH_TRACEMALLOC"


def trace_from_env() -> bool:
    """Diagnosis of memory growth (off unless $NSGRAPH_TRACEMALLOC names a file prefix): trace
    allocations from now on and write a tracemalloc snapshot to PREFIX.N on each SIGUSR2, to
    compare two moments (`Snapshot.load(...).compare_to(...)`).  Costs CPU and memory: not for
    normal runs.  Call from the main thread."""
    prefix = os.environ.get(TRACE_ENV)
    if not prefix:
        return False
    import itertools
    import signal
    import tracemalloc
    tracemalloc.start(1)
    numbers = itertools.count()

    def dump(_signum, _frame):
        tracemalloc.take_snapshot().dump("%s.%d" % (prefix, next(numbers)))
    signal.signal(signal.SIGUSR2, dump)
    return True
