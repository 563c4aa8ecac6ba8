"""webapp/eventloop.py: the server's epoll loop asks idle connections nothing, and misses nothing.

Real sockets (socketpairs) and a minimal dispatcher with waitress's interface
(readable/writable/accepting/requests and the handle_*_event methods).
"""

from __future__ import annotations

import socket

from webapp.eventloop import EpollLoop


class Dispatcher:
    accepting = False

    def __init__(self, sock, busy=False):
        self.socket = sock
        self.requests = ["r"] if busy else []
        self.asked = 0
        self.read = b""
        self.want_write = False
        self.closed = False

    def readable(self):
        self.asked += 1
        return not self.requests

    def writable(self):
        return self.want_write

    def handle_read_event(self):
        self.read += self.socket.recv(100)

    def handle_write_event(self):
        self.socket.send(b"w")
        self.want_write = False

    def handle_expt_event(self):
        pass

    def handle_close(self):
        self.closed = True

    def handle_error(self):
        raise AssertionError("handle_error")


def _pairs(n):
    return [socket.socketpair() for _ in range(n)]


def test_idle_connections_are_asked_on_the_full_pass_only_and_still_get_their_input():
    pairs = _pairs(50)
    socket_map = {}
    idle = [Dispatcher(ours) for ours, _theirs in pairs[:49]]
    busy = Dispatcher(pairs[49][0], busy=True)
    for d in idle + [busy]:
        socket_map[d.socket.fileno()] = d
    loop = EpollLoop(socket_map, full_every_s=3600)
    for _ in range(5):
        loop.run_once(0.01)
    assert [d.asked for d in idle] == [1] * 49          # the first (full) pass only
    assert busy.asked == 1                               # being served, but nobody said it changed
    pairs[7][1].send(b"hello")
    loop.run_once(0.5)
    assert idle[7].read == b"hello"
    loop.run_once(0.01)
    assert idle[7].asked == 2 and idle[8].asked == 1     # asked again after its event, once
    loop.run_once(0.01)
    assert idle[7].asked == 2
    for ours, theirs in pairs:
        ours.close()
        theirs.close()
    loop.close()


def test_a_touched_connection_is_asked_again_and_its_new_interest_registered():
    (ours, theirs), = _pairs(1)
    d = Dispatcher(ours)
    socket_map = {ours.fileno(): d}
    loop = EpollLoop(socket_map, full_every_s=3600)
    loop.run_once(0.01)
    d.want_write = True             # the loop thread changed it outside an event (will_close...)
    loop.run_once(0.05)
    assert not _readable(theirs)     # an idle connection is not asked again by itself
    loop.touch(ours.fileno())
    loop.run_once(0.5)               # asked: registers POLLOUT, and writes
    theirs.settimeout(1)
    assert theirs.recv(10) == b"w"
    ours.close()
    theirs.close()
    loop.close()


def test_a_connection_a_worker_thread_changed_is_asked_at_the_next_pass():
    import threading
    pairs = _pairs(3)
    socket_map = {}
    ds = [Dispatcher(ours, busy=True) for ours, _ in pairs]
    for d in ds:
        socket_map[d.socket.fileno()] = d
    loop = EpollLoop(socket_map, full_every_s=3600)
    loop.run_once(0.01)
    loop.run_once(0.01)
    assert [d.asked for d in ds] == [1, 1, 1]

    def worker():                    # a response written but not all sent (write_soon)
        ds[1].want_write = True
        loop.changed(ds[1].socket.fileno())
    t = threading.Thread(target=worker)
    t.start()
    t.join()
    loop.run_once(0.01)              # asked: registers POLLOUT
    loop.run_once(0.5)               # and the socket's readiness writes
    theirs = pairs[1][1]
    theirs.settimeout(1)
    assert theirs.recv(10) == b"w"
    assert ds[0].asked == 1 and ds[2].asked == 1
    for ours, theirs in pairs:
        ours.close()
        theirs.close()
    loop.close()


def _readable(sock):
    import select
    return bool(select.select([sock], [], [], 0)[0])


def test_a_descriptor_closed_and_reused_by_a_new_connection_is_registered_again():
    (a, a_peer), = _pairs(1)
    first = Dispatcher(a)
    fd = a.fileno()
    socket_map = {fd: first}
    loop = EpollLoop(socket_map, full_every_s=3600)
    loop.run_once(0.01)
    del socket_map[fd]
    a.close()                        # epoll forgets the descriptor with the socket
    b, b_peer = socket.socketpair()
    if b.fileno() != fd:             # make the new socket take the old number
        b2 = socket.socket(fileno=__import__("os").dup2(b.fileno(), fd))
        b.detach()
        b = b2
    second = Dispatcher(b)
    socket_map[fd] = second
    loop.touch(fd)                   # what the server does for every accepted connection
    loop.run_once(0.01)
    b_peer.send(b"again")
    loop.run_once(0.5)
    assert second.read == b"again" and first.read == b""
    for s in (a_peer, b, b_peer):
        s.close()
    loop.close()


def test_the_full_pass_asks_everyone_again():
    pairs = _pairs(3)
    socket_map = {}
    ds = [Dispatcher(ours) for ours, _ in pairs]
    for d in ds:
        socket_map[d.socket.fileno()] = d
    loop = EpollLoop(socket_map, full_every_s=0.0)
    loop.run_once(0.01)
    loop.run_once(0.01)
    assert [d.asked for d in ds] == [2, 2, 2] and loop.full_passes == 2
    for ours, theirs in pairs:
        ours.close()
        theirs.close()
    loop.close()
