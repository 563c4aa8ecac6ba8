"""A node's graph at an earlier time, from the NSGRAPH stream (the fleet's history).

The stream keeps every node's checkpoints, journal records and heartbeats for as long as its
retention allows (`nsgraph fleet streams --max-age/--max-bytes`).  The graph at time T
is the last checkpoint at or before T plus the records after it up to T, read with a
short-lived (ephemeral, memory-stored) consumer that starts a little more than one
checkpoint interval before T; when that window holds no checkpoint, it looks further
back (x4 each time) up to the start of the stream.
"""

from __future__ import annotations

import asyncio
import datetime
import uuid
from typing import Optional

from .replica import NodeReplica
from .subjects import STREAM, node_filter
from .wire import Checkpoint, Status, WireError, decode

DEFAULT_WINDOW_S = 90.0
ATTEMPTS = 4


async def graph_at(js, node: str, at: float, window_s: Optional[float] = None, fetch_batch: int = 512):
    """The node's NamespaceGraph as it was at `at`, or None before its history."""
    window = max(10.0, window_s or DEFAULT_WINDOW_S)
    for _ in range(ATTEMPTS):
        replica = NodeReplica(node)
        await _replay_window(js, node, at - window, at, replica, fetch_batch)
        if replica.graph is not None:
            return replica.graph
        window *= 4
    return None


async def _replay_window(js, node: str, start: float, at: float, replica: NodeReplica, fetch_batch: int) -> None:
    from nats.errors import TimeoutError as NatsTimeout
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
    name = "fleet_history_%s" % uuid.uuid4().hex[:12]
    config = ConsumerConfig(name=name, filter_subject=node_filter(node), deliver_policy=DeliverPolicy.BY_START_TIME,
                            opt_start_time=datetime.datetime.fromtimestamp(max(0.0, start), datetime.timezone.utc),
                            ack_policy=AckPolicy.NONE, inactive_threshold=30.0, mem_storage=True,
                            num_replicas=1, max_ack_pending=-1)
    await js.add_consumer(STREAM, config)
    sub = await js.pull_subscribe_bind(consumer=name, stream=STREAM)
    try:
        while True:
            try:
                msgs = await sub.fetch(fetch_batch, timeout=1.0)
            except (NatsTimeout, asyncio.TimeoutError):
                return
            for msg in msgs:
                try:
                    item = decode(msg.subject, msg.headers, msg.data)
                except WireError:
                    replica.bad_message()
                    continue
                if isinstance(item, Status):
                    continue
                if isinstance(item, Checkpoint):
                    if item.ts > at:
                        return
                    replica.on_checkpoint(item)
                else:
                    if item.ts[0] > at:
                        return
                    replica.on_events(item, until=at)
            if not msgs or msgs[-1].metadata.num_pending == 0:
                return
    finally:
        try:
            await sub.unsubscribe()
            await js.delete_consumer(STREAM, name)
        except Exception:
            pass        # the server removes it after inactive_threshold anyway


class NodeHistory:
    """HistoryReader for one node (webapp/contract.py): graph_at(T) from the stream."""

    def __init__(self, consumer, node: str, timeout_s: float = 30.0):
        self.consumer = consumer
        self.node = node
        self.timeout_s = timeout_s
        self.reads = 0

    def graph_at(self, at: float):
        if self.consumer.js is None:
            return None
        entry = self.consumer.fleet.node(self.node)
        interval = entry.replica.checkpoint_interval if entry is not None else None
        window = (interval * 1.5 + 10.0) if interval else None
        self.reads += 1
        return self.consumer.thread.call(graph_at(self.consumer.js, self.node, at, window), timeout=self.timeout_s)

    def graph_json_at(self, at: float) -> Optional[dict]:
        graph = self.graph_at(at)
        return graph.to_json() if graph is not None else None

    def stats(self) -> dict:
        return {"source": "NATS stream %s" % STREAM, "node": self.node, "reads": self.reads}
