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
    assert len(record) == abi.EVENT_SIZE
    size_field, version = struct.unpack_from("<HB", record, 0)
    assert size_field == abi.EVENT_SIZE
    assert version == abi.ABI_VERSION
