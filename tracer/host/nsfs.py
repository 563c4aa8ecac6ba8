"""nsfs ioctls: what the kernel knows about a namespace given an fd to it.

Every function takes an fd opened on a namespace file (`/proc/<pid>/ns/<type>`,
an nsfs bind mount, or a `/proc/<pid>/fd/<n>` that refers to one).  The
ioctls that return a namespace hand back a *new* fd; it is fstat'ed for its
(dev, inode) and closed here unless the caller asks to keep it.

Errors are reported as None, with the reason in the caller's Counter, because
"no parent" (EPERM at the top of the hierarchy, or outside the caller's
scope) and "not supported" (EINVAL/ENOTTY on older kernels or the wrong type)
are ordinary answers, not failures.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from collections import Counter
from dataclasses import dataclass
from typing import Optional

from ..nstypes import NS_FLAG_TYPES

NSIO = 0xB7


def _IO(nr: int) -> int:
    return (NSIO << 8) | nr


def _IOR(nr: int, size: int) -> int:
    # _IOC_READ is 2 in the generic ioctl layout used by x86 and arm64.
    return (2 << 30) | (size << 16) | (NSIO << 8) | nr


NS_GET_USERNS = _IO(0x1)
NS_GET_PARENT = _IO(0x2)
NS_GET_NSTYPE = _IO(0x3)
NS_GET_OWNER_UID = _IO(0x4)
NS_GET_ID = _IOR(13, 8)          # Linux 6.18+: a 64-bit id that is never reused

# Types with a parent (NS_GET_PARENT); for the others the kernel says EINVAL.
HIERARCHICAL = ("pid", "user")

_UNSUPPORTED = (errno.EINVAL, errno.ENOTTY, errno.EOPNOTSUPP)


@dataclass
class NsMeta:
    """The ioctl answers for one namespace; None where the kernel gave none."""
    type: Optional[str]
    dev: int
    inode: int
    ns_id: Optional[int]
    owner: Optional[tuple]         # (dev, inode) of the owning user namespace
    parent: Optional[tuple]        # (dev, inode) of the parent (pid, user)
    owner_uid: Optional[int]       # user namespaces only


def _count(errors: Optional[Counter], key: str) -> None:
    if errors is not None:
        errors[key] += 1


def nstype(fd: int) -> Optional[str]:
    """The namespace type of fd, or None when fd is not a namespace."""
    try:
        flag = fcntl.ioctl(fd, NS_GET_NSTYPE)
    except OSError:
        return None
    return NS_FLAG_TYPES.get(flag)   # NS_GET_NSTYPE answers with the CLONE_NEW* flag


def ns_id(fd: int, errors: Optional[Counter] = None) -> Optional[int]:
    """NS_GET_ID, or None on kernels without it (before 6.18)."""
    buf = bytearray(8)
    try:
        fcntl.ioctl(fd, NS_GET_ID, buf, True)
    except OSError as exc:
        if exc.errno not in _UNSUPPORTED:
            _count(errors, "ioctl_ns_id")
        return None
    return struct.unpack("=Q", buf)[0]


def owner_uid(fd: int, errors: Optional[Counter] = None) -> Optional[int]:
    """NS_GET_OWNER_UID of a user namespace (as seen from the caller's user namespace)."""
    buf = bytearray(4)
    try:
        fcntl.ioctl(fd, NS_GET_OWNER_UID, buf, True)
    except OSError as exc:
        if exc.errno not in _UNSUPPORTED:
            _count(errors, "ioctl_owner_uid")
        return None
    return struct.unpack("=I", buf)[0]


def _related(fd: int, request: int, errors: Optional[Counter], what: str,
             keep: bool = False):
    """Run an ioctl that returns a namespace fd; give its (dev, inode) [and the fd]."""
    try:
        new_fd = fcntl.ioctl(fd, request)
    except OSError as exc:
        # EPERM: the top of the hierarchy, or an ancestor outside our scope.
        if exc.errno not in (errno.EPERM,) + _UNSUPPORTED:
            _count(errors, "ioctl_" + what)
        return (None, None) if keep else None
    try:
        st = os.fstat(new_fd)
    except OSError:
        os.close(new_fd)
        _count(errors, "ioctl_" + what)
        return (None, None) if keep else None
    ref = (st.st_dev, st.st_ino)
    if keep:
        return ref, new_fd
    os.close(new_fd)
    return ref


def get_userns(fd: int, errors: Optional[Counter] = None, keep: bool = False):
    """(dev, inode) of the owning user namespace; for a user namespace, its parent."""
    return _related(fd, NS_GET_USERNS, errors, "userns", keep)


def get_parent(fd: int, errors: Optional[Counter] = None, keep: bool = False):
    """(dev, inode) of the parent of a pid or user namespace; None at the top."""
    return _related(fd, NS_GET_PARENT, errors, "parent", keep)


def describe(fd: int, type_hint: Optional[str] = None,
             errors: Optional[Counter] = None) -> NsMeta:
    """Everything the ioctls tell about the namespace behind fd.

    type_hint skips NS_GET_NSTYPE when the caller already knows the type (the
    name of the /proc link it opened).
    """
    st = os.fstat(fd)
    ns_type = type_hint or nstype(fd)
    parent = get_parent(fd, errors) if ns_type in HIERARCHICAL else None
    return NsMeta(
        type=ns_type,
        dev=st.st_dev,
        inode=st.st_ino,
        ns_id=ns_id(fd, errors),
        owner=get_userns(fd, errors),
        parent=parent,
        owner_uid=owner_uid(fd, errors) if ns_type == "user" else None,
    )
