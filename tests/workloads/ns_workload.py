"""A known namespace workload with its own ground truth.

Every operation is made with a raw system call (ctypes), and right after it the
process that made it reads /proc/self/ns/* itself.  One JSON object per
operation goes to stdout.  The tracer tests compare these with the events the
probes report; nothing here uses nsgraph code.

Run as root: python3 ns_workload.py [--unshare-count N]
"""

import argparse
import ctypes
import json
import os
import signal
import struct
import sys
import threading
import time

NS_TYPES = ("mnt", "pid", "pid_for_children", "net", "uts", "ipc", "user", "cgroup",
            "time", "time_for_children")

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000
CLONE_FS = 0x00000200
SIGCHLD = 17

SYS_CLONE = 56
SYS_CLONE3 = 435
SYS_SETNS = 308
SYS_UNSHARE = 272
if os.uname().machine == "aarch64":
    SYS_CLONE, SYS_CLONE3, SYS_SETNS, SYS_UNSHARE = 220, 435, 268, 97

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


def syscall(number, *args):
    ctypes.set_errno(0)
    ret = libc.syscall(ctypes.c_long(number), *[ctypes.c_ulong(a) if isinstance(a, int) else a for a in args])
    if ret < 0:
        return -ctypes.get_errno()
    return ret


def own_ns(pid="self", types=NS_TYPES):
    """type -> inode of a process's namespaces, as /proc shows them (default: our own)."""
    out = {}
    for t in types:
        try:
            link = os.readlink("/proc/%s/ns/%s" % (pid, t))
        except OSError:
            continue
        out[t] = int(link[link.index("[") + 1:-1])
    return out


NS_GET_ID = (2 << 30) | (8 << 16) | (0xB7 << 8) | 13  # _IOR(0xb7, 13, __u64), Linux 6.18+


def own_ns_ids(pid="self", types=NS_TYPES):
    """The kernel's 64-bit namespace ids, where it has them (empty before 6.18)."""
    import fcntl
    out = {}
    for t in types:
        try:
            fd = os.open("/proc/%s/ns/%s" % (pid, t), os.O_RDONLY)
        except OSError:
            continue
        try:
            buf = bytearray(8)
            fcntl.ioctl(fd, NS_GET_ID, buf)
            out[t] = int.from_bytes(buf, "little")
        except OSError:
            pass
        finally:
            os.close(fd)
    return out


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def do_unshare(flags, op="unshare"):
    before = own_ns()
    ret = syscall(SYS_UNSHARE, flags)
    after = own_ns()
    emit({"op": op, "pid": os.getpid(), "tid": threading_tid(), "flags": flags,
          "ret": ret if ret >= 0 else -1, "errno": -ret if ret < 0 else None,
          "before": before, "after": after, "after_ids": own_ns_ids()})


def threading_tid():
    return threading.get_native_id()


def host_pid():
    """Our pid as the host sees it (/proc is the host's mount), even inside a new pid namespace."""
    return int(os.readlink("/proc/self"))


def child_report(write_fd, extra):
    """In a raw-cloned child: report our namespaces through the pipe and leave."""
    try:
        data = json.dumps(dict(extra, pid=host_pid(), vpid=os.getpid(), ns=own_ns(), ns_ids=own_ns_ids())).encode()
        os.write(write_fd, data)
    finally:
        os._exit(0)


def do_clone(flags, use_clone3, op=None):
    op = op or ("clone3" if use_clone3 else "clone")
    parent_ns = own_ns()
    read_fd, write_fd = os.pipe()
    if use_clone3:
        # struct clone_args: flags, pidfd, child_tid, parent_tid, exit_signal, stack,
        # stack_size, tls, set_tid, set_tid_size, cgroup (11 x u64).
        args = ctypes.create_string_buffer(struct.pack("<11Q", flags, 0, 0, 0, SIGCHLD, 0, 0, 0, 0, 0, 0))
        ret = syscall(SYS_CLONE3, ctypes.addressof(args), 88)
    else:
        # stack 0: the child runs on a copy of our stack, like fork().
        ret = syscall(SYS_CLONE, flags | SIGCHLD, 0, 0, 0, 0)
    if ret == 0:
        os.close(read_fd)
        child_report(write_fd, {})
    os.close(write_fd)
    if ret < 0:
        emit({"op": op, "pid": os.getpid(), "flags": flags,
              "ret": -1, "errno": -ret, "parent_ns": parent_ns})
        return
    chunks = []
    while True:
        chunk = os.read(read_fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(read_fd)
    _, status = os.waitpid(ret, 0)
    child = json.loads(b"".join(chunks))
    emit({"op": op, "pid": os.getpid(), "flags": flags,
          "ret": ret, "errno": None, "child_pid": child["pid"], "child_vpid": child["vpid"],
          "child_ns": child["ns"], "child_ns_ids": child["ns_ids"],
          "parent_ns": parent_ns, "child_status": status})


def do_setns_into_other():
    """setns() into the network namespace of another process."""
    read_fd, write_fd = os.pipe()
    holder = os.fork()
    if holder == 0:
        os.close(read_fd)
        before = own_ns()
        rc = syscall(SYS_UNSHARE, CLONE_NEWNET)
        os.write(write_fd, json.dumps({"op": "unshare_holder", "pid": os.getpid(), "tid": threading_tid(),
                                       "flags": CLONE_NEWNET, "ret": rc if rc >= 0 else -1,
                                       "errno": -rc if rc < 0 else None, "before": before,
                                       "after": own_ns()}).encode())
        os.close(write_fd)
        time.sleep(30)
        os._exit(0)
    os.close(write_fd)
    holder_report = json.loads(os.read(read_fd, 65536))
    os.close(read_fd)
    emit(holder_report)
    if holder_report["ret"] != 0:
        raise SystemExit("the setns target could not unshare its network namespace")
    holder_net = int(os.readlink("/proc/%d/ns/net" % holder).split("[")[1][:-1])
    fd = os.open("/proc/%d/ns/net" % holder, os.O_RDONLY)
    before = own_ns()
    ret = syscall(SYS_SETNS, fd, CLONE_NEWNET)
    after = own_ns()
    emit({"op": "setns", "pid": os.getpid(), "tid": threading_tid(), "fd": fd, "flags": CLONE_NEWNET,
          "ret": ret if ret >= 0 else -1, "errno": -ret if ret < 0 else None,
          "before": before, "after": after, "after_ids": own_ns_ids(),
          "target_pid": holder, "target_net": holder_net})
    os.close(fd)
    os.kill(holder, signal.SIGKILL)
    os.waitpid(holder, 0)


def do_failed_clone():
    """clone(CLONE_NEWUSER | CLONE_FS) is refused (EINVAL) before any namespace is made."""
    ret = syscall(SYS_CLONE, CLONE_NEWUSER | CLONE_FS | SIGCHLD, 0, 0, 0, 0)
    if ret == 0:
        os._exit(1)
    emit({"op": "clone_failed", "pid": os.getpid(), "ret": ret, "errno": -ret if ret < 0 else None})


def do_unprivileged_unshare():
    """An unprivileged process asking for a network namespace gets EPERM."""
    read_fd, write_fd = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read_fd)
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
        before = own_ns()
        ret = syscall(SYS_UNSHARE, CLONE_NEWNET)
        after = own_ns()
        os.write(write_fd, json.dumps({"op": "unshare_eperm", "pid": os.getpid(), "tid": threading_tid(),
                                       "flags": CLONE_NEWNET, "ret": ret if ret >= 0 else -1,
                                       "errno": -ret if ret < 0 else None, "uid": os.getuid(),
                                       "before": before, "after": after}).encode())
        os._exit(0)
    os.close(write_fd)
    data = b""
    while True:
        chunk = os.read(read_fd, 65536)
        if not chunk:
            break
        data += chunk
    os.close(read_fd)
    os.waitpid(child, 0)
    emit(json.loads(data))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--unshare-count", type=int, default=23)
    args = parser.parse_args()
    # Work in a child so that our namespace changes never leak into the test runner.
    emit({"op": "start", "pid": os.getpid(), "ns": own_ns()})
    for _ in range(args.unshare_count):
        do_unshare(CLONE_NEWUTS)
    do_unshare(CLONE_NEWNET | CLONE_NEWIPC)
    do_clone(CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWNS, use_clone3=False)
    do_clone(CLONE_NEWNET, use_clone3=True)
    # A user namespace alone: the child keeps its parent's nsproxy, only its credentials differ.
    do_clone(CLONE_NEWUSER, use_clone3=False, op="clone_user")
    do_failed_clone()
    do_setns_into_other()
    do_unprivileged_unshare()
    emit({"op": "end", "pid": os.getpid()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
