"""The HTTP server's event loop: waitress's wasyncore loop on a persistent epoll set.

waitress's own loop (wasyncore.poll2) builds a new poll set on every pass: it asks
every connection readable() and writable() and registers it again, so one pass over
1 100 idle + 500 slow-header + 200 streaming connections costs milliseconds of
Python, holding the GIL, and under that abuse the loop makes hundreds of passes a
second (every byte a slow client sends, every stream write that wakes the loop).
That starved the threads serving the real user (bench/bench_serve.py).

This loop keeps one epoll set and asks only the connections whose interest may have
changed: those that had an event in the last pass, new ones and those the loop
thread changed outside an event (`touch`), those a worker thread changed (`changed`:
a response written but not all sent, a request finished), and the listening socket
and waitress's trigger, every pass.  A connection being served is not asked every
pass: with 200 event streams open, that alone was 200 readable()/writable() calls
per pass, hundreds of passes a second (a slow-header client wakes the loop with every
byte), half of the loop's time.  Every `full_every_s` all connections are asked,
which bounds the delay of any change this bookkeeping might not see.  Events are
dispatched exactly as wasyncore.poll2 does (wasyncore.readwrite), so waitress's
channels behave the same.
"""

from __future__ import annotations

import collections
import select
import time

from waitress import wasyncore

_IN = select.POLLIN | select.POLLPRI
_OUT = select.POLLOUT


class EpollLoop:
    def __init__(self, socket_map: dict, full_every_s: float = 1.0):
        self.map = socket_map
        self.full_every_s = full_every_s
        self._epoll = select.epoll()
        self._registered = {}        # fd -> (dispatcher, mask) as registered with epoll
        self._hot = set()            # fds to ask again at the next pass (loop thread only)
        self._changed = collections.deque()   # fds worker threads changed (deque: thread-safe)
        self._full_due = 0.0
        self.passes = 0
        self.full_passes = 0

    def touch(self, fd: int) -> None:
        """Ask this descriptor's dispatcher again at the next pass (a new connection, or one
        whose state the loop thread changed outside an event: will_close by the server)."""
        self._hot.add(fd)

    def changed(self, fd: int) -> None:
        """From any thread: ask this descriptor's dispatcher at the next pass.  The caller
        then wakes the loop (waitress's trigger), so that pass comes after this call."""
        self._changed.append(fd)

    def close(self) -> None:
        self._epoll.close()

    def run(self, timeout: float = 1.0) -> None:
        """Passes until the map is empty (waitress's close_all at shutdown)."""
        try:
            while self.map:
                self.run_once(timeout)
        finally:
            self.close()

    def run_once(self, timeout: float) -> None:
        self.passes += 1
        now = time.monotonic()
        if now >= self._full_due:
            self._full_due = now + self.full_every_s
            self.full_passes += 1
            for fd in [fd for fd in self._registered if fd not in self.map]:
                self._forget(fd)
            fds = list(self.map)
        else:
            fds = self._hot
            changed = self._changed
            while changed:
                fds.add(changed.popleft())
        self._hot = set()
        for fd in fds:
            obj = self.map.get(fd)
            if obj is None:
                self._forget(fd)
            elif self._update(fd, obj):
                self._hot.add(fd)
        try:
            events = self._epoll.poll(timeout)
        except InterruptedError:
            events = ()
        for fd, flags in events:
            obj = self.map.get(fd)
            if obj is None:
                self._forget(fd)
                continue
            wasyncore.readwrite(obj, flags)
            self._hot.add(fd)

    def _update(self, fd: int, obj) -> bool:
        """Register what obj wants now; True when it must be asked again next pass."""
        flags = 0
        if obj.readable():
            flags |= _IN
        if obj.writable() and not obj.accepting:
            flags |= _OUT
        old = self._registered.get(fd)
        if old is None or old[0] is not obj or old[1] != flags:
            if flags:
                self._register(fd, obj, flags, known=old is not None)
            else:
                self._forget(fd)
        # A connection is asked again when something happens to it: an event, `touch`, or
        # `changed` from the worker serving it.  The server socket and the trigger (no
        # `requests`) are asked every pass.
        return not hasattr(obj, "requests")

    def _register(self, fd: int, obj, flags: int, known: bool) -> None:
        try:
            if known:
                self._epoll.modify(fd, flags)
            else:
                self._epoll.register(fd, flags)
        except FileNotFoundError:       # closed and reused since: the kernel forgot it
            self._epoll.register(fd, flags)
        except FileExistsError:
            self._epoll.modify(fd, flags)
        self._registered[fd] = (obj, flags)

    def _forget(self, fd: int) -> None:
        if self._registered.pop(fd, None) is not None:
            try:
                self._epoll.unregister(fd)
            except OSError:             # already closed: epoll dropped it itself
                pass
