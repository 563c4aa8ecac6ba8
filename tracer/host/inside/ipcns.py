"""ipc: System V shared memory, semaphores and message queues, and POSIX message queues.

/proc/sysvipc/* lists the objects of the *reader's* ipc namespace (the file
remembers the namespace of whoever opened it), so the helper joins the
namespace first and opens them through the /proc it opened before joining.
POSIX message queues live in the namespace's mqueue filesystem: the helper
makes a detached, read-only mount of it (fsopen/fsmount, Linux 5.2+; it is
attached nowhere and gone when the helper exits) and counts its entries.
"""

from __future__ import annotations

import ctypes
import os

from .procread import optional_text_at

JOIN = True

# /proc/sysvipc file -> (name in the view, the column with the object's size).
SYSV = (("shm", "shared_memory", "size"), ("sem", "semaphores", "nsems"), ("msg", "message_queues", "qnum"))
LISTED = 20   # objects listed per kind (all are counted)

SYS_FSOPEN, SYS_FSCONFIG, SYS_FSMOUNT = 430, 431, 432    # the same number on every architecture
FSOPEN_CLOEXEC, FSMOUNT_CLOEXEC, FSCONFIG_CMD_CREATE = 0x1, 0x1, 6
MOUNT_ATTR_RDONLY_NOSUID_NODEV_NOEXEC = 0x1 | 0x2 | 0x4 | 0x8


def parse_sysvipc(text: str, size_column: str) -> dict:
    """One /proc/sysvipc file -> {"count", "objects": [{"key", "id", "uid", size_column}]}."""
    lines = text.splitlines()
    if not lines:
        return {"count": 0, "objects": []}
    header = lines[0].split()
    objects = []
    for line in lines[1:]:
        cols = line.split()
        if len(cols) != len(header):
            continue
        row = dict(zip(header, cols))
        try:
            objects.append({"key": "0x%08x" % (int(row["key"]) & 0xFFFFFFFF), "id": int(cols[1]),
                            "uid": int(row["uid"]), size_column: int(row[size_column])})
        except (KeyError, ValueError):
            continue
    return {"count": len(objects), "objects": objects[:LISTED]}


def _syscall(libc, *args) -> int:
    result = libc.syscall(*args)
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def count_posix_queues():
    """(count, None) for the caller's ipc namespace, or (None, why not)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    try:
        fs_fd = _syscall(libc, SYS_FSOPEN, b"mqueue", FSOPEN_CLOEXEC)
    except OSError as exc:
        return None, "fsopen(mqueue) failed: %s (needs Linux 5.2+ and CAP_SYS_ADMIN)" % exc.strerror
    try:
        _syscall(libc, SYS_FSCONFIG, fs_fd, FSCONFIG_CMD_CREATE, None, None, 0)
        mnt_fd = _syscall(libc, SYS_FSMOUNT, fs_fd, FSMOUNT_CLOEXEC, MOUNT_ATTR_RDONLY_NOSUID_NODEV_NOEXEC)
    except OSError as exc:
        return None, "mounting the namespace's mqueue filesystem failed: %s" % exc.strerror
    finally:
        os.close(fs_fd)
    try:
        # fsmount gives an O_PATH fd: open the mount's root for reading first.
        root = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=mnt_fd)
        try:
            return len(os.listdir(root)), None
        finally:
            os.close(root)
    finally:
        os.close(mnt_fd)


def collect(ctx) -> dict:
    """In the helper, inside the namespace."""
    out = {}
    for name, key, size_column in SYSV:
        text = optional_text_at(ctx.proc, "sysvipc/" + name)
        out[key] = parse_sysvipc(text or "", size_column)
    count, why = count_posix_queues()
    out["posix_message_queues"] = {"count": count, "error": why}
    return out


def fields(view: dict) -> list:
    rows = []
    for _name, key, size_column in SYSV:
        part = view.get(key) or {}
        listed = ", ".join("%s (id %d)" % (o["key"], o["id"]) for o in part.get("objects", [])[:5])
        rows.append((key.replace("_", " "), "%d%s" % (part.get("count", 0), (": " + listed) if listed else "")))
    posix = view.get("posix_message_queues") or {}
    rows.append(("posix message queues", str(posix["count"]) if posix.get("count") is not None
                 else "unknown (%s)" % posix.get("error")))
    return rows
