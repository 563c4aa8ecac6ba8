"""A record the running kernel produced has the size and version tracer/kernel/abi.py mirrors
(the header and the mirror agree on paper: tests/unit/test_abi_header.py)."""

from __future__ import annotations

import ctypes
import os
import struct
import time

from tracer import nstypes
from tracer.kernel import abi


def test_live_event_has_the_mirrored_size(root):
    """The kernel side's compiled size, on a record it really produced."""
    from tracer.kernel.probes import ProbeOptions, Probes

    records = []
    probes = Probes(lambda record: records.append(bytes(record)), options=ProbeOptions(proc_events=False))
    probes.load()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pid = os.fork()
        if pid == 0:
            os._exit(0 if libc.unshare(nstypes.CLONE_NEWUTS) == 0 else 1)
        _, status = os.waitpid(pid, 0)
        assert status == 0
        deadline = time.time() + 3
        while time.time() < deadline and not records:
            probes.poll(50)
    finally:
        probes.close()
    mine = [r for r in records if struct.unpack_from("<I", r, 16)[0] == pid]
    assert mine, "no record from the unsharing child"
    record = mine[0]
    size_field, version, kind, _syscall, nchanges = struct.unpack_from("<HBBBB", record, 0)
    # unshare(CLONE_NEWUTS): the header and one change (the uts slot).
    assert (kind, nchanges) == (abi.KIND_UNSHARE, 1)
    assert len(record) == size_field == abi.EVENT_SIZE + abi.CHANGE_SIZE
    assert version == abi.ABI_VERSION
    _id_before, _id_after, inum_before, inum_after, slot = abi.CHANGE.unpack_from(record, abi.EVENT_SIZE)
    assert abi.NS_SLOTS[slot] == "uts" and inum_before != inum_after
