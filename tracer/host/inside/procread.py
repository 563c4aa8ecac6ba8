"""Bounded reads through directory fds, shared by the readers and the helper.

Everything here opens relative to a directory fd: a /proc/<pid> directory
opened once (it stays bound to that process: if it exits and its pid is
reused, reads through the old fd fail instead of reading the newcomer), or the
helper's /proc opened before it joins a namespace (so a container's own /proc
mount is never consulted).  Stdlib only: the helper imports this module.
"""

from __future__ import annotations

import errno
import os

O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
O_FILE = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY

# The largest file any reader takes in (a mountinfo of ~20 000 mounts); more is cut.
MAX_FILE_BYTES = 4 << 20

GONE = (errno.ENOENT, errno.ESRCH)


def read_at(dirfd: int, name: str, cap: int = MAX_FILE_BYTES) -> bytes:
    """The content of dirfd/name, at most cap bytes."""
    fd = os.open(name, O_FILE, dir_fd=dirfd)
    try:
        return read_fd(fd, cap)
    finally:
        os.close(fd)


def read_fd(fd: int, cap: int = MAX_FILE_BYTES) -> bytes:
    """Up to cap bytes.  A /proc file hands over all it has in the first read when it
    fits, so a short first read is the whole file (one syscall for status, cmdline)."""
    first = os.read(fd, min(65536, cap))
    if len(first) < min(65536, cap):
        return first
    chunks, size = [first], len(first)
    while size < cap:
        data = os.read(fd, min(65536, cap - size))
        if not data:
            break
        chunks.append(data)
        size += len(data)
    return b"".join(chunks)


def text_at(dirfd: int, name: str, cap: int = MAX_FILE_BYTES) -> str:
    return read_at(dirfd, name, cap).decode("utf-8", "replace")


def optional_text_at(dirfd: int, name: str, cap: int = MAX_FILE_BYTES):
    """text_at, or None when the file does not exist (a kernel without IPv6, say)."""
    try:
        return text_at(dirfd, name, cap)
    except FileNotFoundError:
        return None
