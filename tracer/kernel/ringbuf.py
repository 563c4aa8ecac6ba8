"""Reading a BPF ring buffer straight from its memory map.

BCC's ring buffer reader calls back into Python through ctypes once per record,
which costs about as much as decoding the record.  This reader walks the shared
pages itself (the layout libbpf's ringbuf.c reads: a consumer page, a producer
page, then the data pages mapped twice so that a record never wraps) and hands
out memoryview slices, without a per-record foreign call.

It relies on x86's ordered loads for the producer/record-header protocol, so
probes.py uses it on x86-64 only and BCC's reader elsewhere.
"""

from __future__ import annotations

import mmap
import os
import select
from typing import Callable, Optional

BUSY_BIT = 1 << 31
DISCARD_BIT = 1 << 30
HEADER_SIZE = 8
# Records handed over per call: enough to make per-call costs vanish, few enough
# that the space they hold goes back to the producer quickly.
BATCH = 1024
# Records handed over per poll at most.  A consumer slower than the producer (a machine
# too busy to schedule it) never found the ring empty, so one poll never returned: the
# poller's other duties (loss counters, sync markers) waited for as long as the overload.
POLL_RECORDS = 16 * BATCH
# A caller that allows it (poll's idle_ms) sleeps up to idle_ms once this many polls in a
# row found nothing, and the probes wake it with their next record (they batch wake-ups
# otherwise): an idle machine's reader wakes once per idle_ms instead of 50 times a second.
EMPTY_POLLS_BEFORE_SLEEP = 25


class RingBufferError(Exception):
    pass


class MappedRingBuffer:
    """Consumer side of one BPF_MAP_TYPE_RINGBUF map, given its fd and data size."""

    def __init__(self, map_fd: int, data_size: int):
        if data_size <= 0 or data_size & (data_size - 1):
            raise RingBufferError("ring buffer size %d is not a power of two" % data_size)
        page = mmap.PAGESIZE
        self.data_size = data_size
        self.mask = data_size - 1
        try:
            self._consumer = mmap.mmap(map_fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
            self._producer = mmap.mmap(map_fd, page + 2 * data_size, mmap.MAP_SHARED, mmap.PROT_READ,
                                       offset=page)
        except (OSError, ValueError) as exc:
            raise RingBufferError("cannot map the ring buffer: %s" % exc) from exc
        self._page = page
        self._view = memoryview(self._producer)
        # Positions and record headers are read and written as whole native words
        # (memoryview item access is one load or store): struct.pack_into writes
        # byte by byte, and the kernel reading a half-written consumer position
        # sees a full buffer and drops events.
        self._consumer_pos = memoryview(self._consumer).cast("Q")
        self._words64 = self._view.cast("Q")
        self._words32 = self._view.cast("I")
        self._epoll = select.epoll()
        self._epoll.register(map_fd, select.EPOLLIN)
        self.empty_polls = 0   # polls in a row that found the ring empty

    def consume(self, callback: Callable[[list], None], limit: Optional[int] = None) -> int:
        """Hand the committed records to callback, as lists of up to BATCH memoryviews
        in ring order, until the ring is empty or `limit` (default POLL_RECORDS) were
        handed over; returns how many records there were.

        The views are only valid during the callback (their space goes back to the
        producer right after it returns): copy one (bytes(view)) to keep it.
        """
        consumer_pos = self._consumer_pos
        words64 = self._words64
        words32 = self._words32
        view = self._view
        page = self._page
        mask = self.mask
        cons_pos = consumer_pos[0]
        count = 0
        if limit is None:
            limit = POLL_RECORDS
        while True:
            prod_pos = words64[0]
            batch = []
            append = batch.append
            while cons_pos < prod_pos and len(batch) < BATCH:
                offset = page + (cons_pos & mask)
                length = words32[offset >> 2]
                if length & BUSY_BIT:
                    # Reserved but not yet submitted: everything after it waits too.
                    break
                size = length & ~(BUSY_BIT | DISCARD_BIT)
                cons_pos += (size + HEADER_SIZE + 7) & ~7
                if not length & DISCARD_BIT:
                    start = offset + HEADER_SIZE
                    append(view[start:start + size])
            if batch:
                count += len(batch)
                callback(batch)
            if cons_pos == consumer_pos[0]:
                return count
            # One store per batch, not per record: the producer reads this word on
            # every reserve, and each store moves its cache line to this CPU.
            consumer_pos[0] = cons_pos
            if (len(batch) < BATCH and cons_pos >= prod_pos) or count >= limit:
                return count

    def poll(self, timeout_ms: int, callback: Callable[[list], None], idle_ms: int = 0,
             arm: Optional[Callable[[], None]] = None) -> int:
        """Wait up to timeout_ms for a wake-up, then consume what is there (POLL_RECORDS at
        most: the next poll finds the rest at once, the ring's readiness is level-triggered).

        With idle_ms and arm, after EMPTY_POLLS_BEFORE_SLEEP empty polls: arm() asks the
        probes to wake the reader with their next record, then, if the ring is still empty,
        the wait is up to idle_ms.  arm() must be a system call (its atomics order the
        flag's store before this look at the producer position)."""
        wait_ms = timeout_ms
        if idle_ms and arm is not None and self.empty_polls >= EMPTY_POLLS_BEFORE_SLEEP:
            arm()
            wait_ms = idle_ms if self._words64[0] == self._consumer_pos[0] else 0
        try:
            self._epoll.poll(wait_ms / 1000.0)
        except InterruptedError:
            pass
        got = self.consume(callback)
        self.empty_polls = 0 if got else self.empty_polls + 1
        return got

    def close(self) -> None:
        self._epoll.close()
        try:
            for view in (self._consumer_pos, self._words64, self._words32, self._view):
                view.release()
            self._producer.close()
            self._consumer.close()
        except BufferError:
            pass  # a consumer still holds a record view: the maps go when it does


def usable() -> bool:
    """Whether this reader's memory-ordering assumptions hold on this machine."""
    return os.uname().machine in ("x86_64", "amd64")
