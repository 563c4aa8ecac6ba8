"""A byte relay between stdin/stdout and a TCP address on this host's loopback.

qemu's user-mode network runs it for each connection the guest opens to a forwarded
address (`guestfwd=tcp:10.0.2.100:PORT-cmd:python3 stdio_relay.py 127.0.0.1 PORT`), so
the kernel-matrix VM reaches the fleet's NATS servers and the test's control socket,
and nothing else (the network is `restrict=on`).
"""

from __future__ import annotations

import os
import selectors
import socket
import sys


def main(host: str, port: int) -> int:
    if host not in ("127.0.0.1", "::1", "localhost"):
        print("stdio_relay: only loopback addresses", file=sys.stderr)
        return 2
    try:
        sock = socket.create_connection((host, port), timeout=10)
    except OSError:
        return 1
    sock.settimeout(None)
    sel = selectors.DefaultSelector()
    sel.register(0, selectors.EVENT_READ, "in")
    sel.register(sock, selectors.EVENT_READ, "sock")
    while True:
        for key, _ in sel.select():
            if key.data == "in":
                data = os.read(0, 65536)
                if not data:
                    sock.shutdown(socket.SHUT_WR)
                    sel.unregister(0)
                    continue
                sock.sendall(data)
            else:
                data = sock.recv(65536)
                if not data:
                    return 0
                view = memoryview(data)
                while view:
                    view = view[os.write(1, view):]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2])))
