"""The dashboard's NATS side: one durable pull consumer per node, plus heartbeats.

For each node (found from the checkpoint subjects in the NSGRAPH stream, or from a
heartbeat), the consumer `fleet_<dashboard>_<node>` reads `nsgraph.<node>.*` of the
NSGRAPH stream, i.e. that node's checkpoints and events in the order the agent
published them.  At start (and whenever the dashboard restarts) it is made anew at the
node's last checkpoint, so a node's graph is rebuilt from that checkpoint plus the tail
after it, and then the same consumer goes on live.  Being durable (and replicated like
the stream), it outlives a NATS server failure or a reconnect: reading resumes where
the acknowledgements stopped.

A hole in a node's records makes the loop read again from just after the last message
applied (the hole may be ours: messages in flight during a reconnect); a hole that is
still there is the agent's (it dropped records) and waits for its next checkpoint.

Heartbeats (nsgraph.*.status, in the same stream) come through one more consumer that
starts with the last heartbeat of every node (deliver last-per-subject).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from typing import Dict, Optional

from .fleet import Fleet
from .monitor import AuthMonitor
from .natsconn import Credentials, ErrorNotes, connect_options, connect_until
from .runner import LoopThread
from .subjects import (PREFIX, STREAM, consumer_name, node_filter, parse_subject, status_consumer_name,
                       subject)
from .wire import HEADER_RUN, HEADER_SEQ, Checkpoint, Status, WireError, decode

log = logging.getLogger(__name__)

SKIP_CHECK_S = 5.0          # how often a node's loop compares its position with the newest checkpoint
SKIP_RECORDS = 50_000       # further behind than this, it starts again from that checkpoint
STALL_S = 10.0              # no message for this long while the node's heartbeat is ahead: re-create the consumer
NO_STREAM = ("the NATS servers have no %s stream: create it once with the admin credentials "
             "(nsgraph fleet streams --nats URL --creds /etc/nsgraph/fleet/admin)" % STREAM)


class FleetConsumer:
    def __init__(self, creds: Credentials, servers: list, fleet: Fleet, *, dashboard: str = "dashboard",
                 fetch_batch: int = 256, discover_s: float = 2.0, ack_wait_s: float = 30.0,
                 monitor_creds: Optional[Credentials] = None):
        self.creds = creds
        self.servers = servers
        self.fleet = fleet
        self.dashboard = dashboard
        self.fetch_batch = fetch_batch
        self.discover_s = discover_s
        self.ack_wait_s = ack_wait_s
        self.thread = LoopThread("nsgraph-fleet-consumer")
        self._nc = None
        self.js = None
        self._tasks: Dict[str, asyncio.Task] = {}
        self._stopping = False
        self.started_at = time.time()
        self.rebuilt_at: Dict[str, float] = {}      # node -> when its graph first came back
        self.counters = {"repositions": 0, "skips": 0, "stalls": 0, "consumer_errors": 0, "reconnects": 0,
                         "disconnects": 0}
        self._errors = ErrorNotes(log)
        self._skipping: set = set()           # nodes whose next checkpoint is a deliberate jump ahead
        self.monitor_creds = monitor_creds
        self._replayers = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="nsgraph-replay")
        self.monitor = AuthMonitor(fleet)
        self._monitor_nc = None

    # -- life cycle (any thread) -----------------------------------------------------------

    def start(self) -> "FleetConsumer":
        self.thread.start()
        self.thread.submit(self._main())
        return self

    def stop(self) -> None:
        self._stopping = True
        try:
            self.thread.call(self._close(), timeout=5)
        except Exception:
            pass
        self.thread.stop()
        self._replayers.shutdown(wait=False, cancel_futures=True)

    async def _close(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        if self._monitor_nc is not None:
            try:
                await self._monitor_nc.close()
            except Exception:
                pass
        if self._nc is not None:
            try:
                await self._nc.close()
            except Exception:
                pass

    # -- connection ----------------------------------------------------------------------------

    async def _main(self) -> None:
        options = connect_options(self.creds, self.servers, "nsgraph-dashboard %s" % self.dashboard,
                                  error_cb=self._on_error, disconnected_cb=self._on_disconnect,
                                  reconnected_cb=self._on_reconnect)
        self._nc = await connect_until(options, lambda: self._stopping, self._note)
        if self._nc is None:
            return
        self.js = self._nc.jetstream(timeout=5)
        self._connected()
        await asyncio.gather(self._status_loop(), self._discover_loop(), self._watch_refusals())

    async def _watch_refusals(self) -> None:
        """With the monitor identity: count the clients the servers refuse (monitor.py)."""
        if self.monitor_creds is None:
            return
        options = connect_options(self.monitor_creds, self.servers, "nsgraph-dashboard %s monitor" % self.dashboard,
                                  error_cb=self._on_error)
        self._monitor_nc = await connect_until(options, lambda: self._stopping, self._note)
        if self._monitor_nc is not None:
            await self.monitor.subscribe(self._monitor_nc)

    def _connected(self) -> None:
        url = self._nc.connected_url
        self.fleet.connection.update(connected=True, server=url.netloc if url else None, error=None,
                                     since=time.time())

    async def _on_error(self, exc) -> None:
        self._note(exc)

    async def _on_disconnect(self) -> None:
        self.counters["disconnects"] += 1
        self.fleet.connection.update(connected=False, since=time.time())

    async def _on_reconnect(self) -> None:
        self.counters["reconnects"] += 1
        self._connected()

    def _note(self, exc, what: str = "") -> None:
        self.fleet.connection["error"] = self._errors.note(exc, what)

    # -- nodes ---------------------------------------------------------------------------------

    def _ensure(self, node: str) -> None:
        if node not in self._tasks and not self._stopping:
            self.fleet.node(node, create=True)
            self._tasks[node] = asyncio.get_running_loop().create_task(self._node_loop(node))

    async def _discover_loop(self) -> None:
        from nats.js.errors import NotFoundError
        while not self._stopping:
            try:
                info = await self.js.stream_info(STREAM, subjects_filter="%s.*.checkpoints" % PREFIX)
                for subj in (info.state.subjects or {}):
                    parsed = parse_subject(subj)
                    if parsed is not None:
                        self._ensure(parsed[0])
                if self._nc.is_connected:
                    self.fleet.connection["error"] = None
            except NotFoundError:
                self.fleet.connection["error"] = NO_STREAM
            except Exception as exc:
                self._note(exc, "listing the fleet's nodes")
            await asyncio.sleep(self.discover_s)

    async def _node_loop(self, node: str) -> None:
        replica = self.fleet.node(node, create=True).replica
        mode = "checkpoint"
        reread_at: Optional[int] = None       # replica.seq when we last read again after a hole
        while not self._stopping:
            try:
                sub = await self._position(node, replica, mode)
                mode, reread_at = await self._pump(node, sub, replica, reread_at)
            except asyncio.CancelledError:
                return
            except Exception as exc:
                self.counters["consumer_errors"] += 1
                self._note(exc, "reading node %s" % node)
                mode = "resume" if replica.graph is not None else "checkpoint"
                await asyncio.sleep(1.0)

    async def _position(self, node: str, replica, mode: str):
        """(Re)create the node's durable consumer: at its last checkpoint, or after the last message applied."""
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
        from nats.js.errors import NotFoundError
        name = consumer_name(self.dashboard, node)
        config = ConsumerConfig(name=name, durable_name=name, filter_subject=node_filter(node),
                                ack_policy=AckPolicy.ALL, ack_wait=self.ack_wait_s, max_ack_pending=20000)
        if mode == "resume" and replica.stream_seq:
            config.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
            config.opt_start_seq = replica.stream_seq + 1
        else:
            try:
                last = await self.js.get_last_msg(STREAM, subject(node, "checkpoints"))
                config.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
                config.opt_start_seq = last.seq
            except NotFoundError:
                config.deliver_policy = DeliverPolicy.ALL
        try:
            await self.js.delete_consumer(STREAM, name)
        except NotFoundError:
            pass
        await self.js.add_consumer(STREAM, config)
        return await self.js.pull_subscribe_bind(durable=name, stream=STREAM)

    async def _pump(self, node: str, sub, replica, reread_at):
        from nats.errors import TimeoutError as NatsTimeout
        loop = asyncio.get_running_loop()
        checked = last_msg = time.monotonic()
        while not self._stopping:
            if time.monotonic() - checked > SKIP_CHECK_S:
                checked = time.monotonic()
                if await self._far_behind(node, replica):
                    self.counters["skips"] += 1
                    self._skipping.add(node)
                    return "checkpoint", None
                if checked - last_msg > STALL_S and self._heartbeat_ahead(node, replica):
                    # Nothing delivered although the agent published more: a pull request lost
                    # in a leader change or a server restart.  Re-create the consumer after the
                    # last message applied.
                    self.counters["stalls"] += 1
                    return "resume", reread_at
            try:
                msgs = await sub.fetch(self.fetch_batch, timeout=1.0)
            except (NatsTimeout, asyncio.TimeoutError):
                continue
            last_msg = time.monotonic()
            # Decoding and replaying are CPU work (about 10 ms for 2 000 records): done in the
            # replay threads, so this loop stays free for heartbeats, fetches and acks even
            # while a busy node, or a machine short of CPU, keeps the replicas working.  One
            # hand-over per fetch, not per message: each one waits for the GIL twice, which on
            # a busy dashboard cost more than the replay itself.
            outcome, last = await loop.run_in_executor(self._replayers, self._apply_all, node, replica, msgs,
                                                       reread_at)
            if outcome == "reread":
                # Maybe the hole is ours (messages in flight at a reconnect): read again.
                self.counters["repositions"] += 1
                return "resume", replica.seq
            if last is not None:
                await last.ack()
        return "resume", reread_at

    def _apply_all(self, node: str, replica, msgs, reread_at):
        """("reread", _) at the first hole to read again, else ("applied", the last message)."""
        last = None
        for msg in msgs:
            if self.apply_message(node, replica, msg, reread_at) == "reread":
                return "reread", last
            last = msg
        return "applied", last

    def _heartbeat_ahead(self, node: str, replica) -> bool:
        """The node's last heartbeat names records (or a run) this replica has not applied."""
        entry = self.fleet.node(node)
        status = (entry.status if entry is not None else None) or {}
        seq = status.get("seq")
        if not isinstance(seq, int) or replica.graph is None:
            return False
        return status.get("run") != replica.run or seq > replica.seq

    async def _far_behind(self, node: str, replica) -> bool:
        """The node's newest checkpoint is more than SKIP_RECORDS past the replica's position.

        Replaying every record to catch up would keep the node's graph minutes old on a
        busy node or a dashboard short of CPU; the newest checkpoint is exact and current,
        and the records in between stay in the stream for history."""
        from nats.js.errors import NotFoundError
        try:
            last = await self.js.get_last_msg(STREAM, subject(node, "checkpoints"))
        except NotFoundError:
            return False
        headers = last.headers or {}
        try:
            seq = int(headers.get(HEADER_SEQ, "0"))
        except ValueError:
            return False
        if headers.get(HEADER_RUN) != replica.run:
            return replica.run is not None and last.seq > replica.stream_seq
        return seq - replica.seq > SKIP_RECORDS

    def apply_message(self, node: str, replica, msg, reread_at=None) -> str:
        """One message of a node's stream (a replay thread; one at a time per node): what it
        was ("events", "checkpoint", "status", "skipped" when unreadable: counted and logged in
        one line) or "reread" (a hole: read again from after the last message applied)."""
        stream_seq = msg.metadata.sequence.stream
        try:
            item = decode(msg.subject, msg.headers, msg.data)
        except WireError as exc:
            replica.bad_message()
            self.fleet.counters["bad_messages"] += 1
            log.warning("fleet: node %s: skipped a message at stream sequence %d: %s", node, stream_seq, exc)
            return "skipped"
        if isinstance(item, Status):
            return "status"         # heartbeats are read by _status_loop (every node's last one)
        if isinstance(item, Checkpoint):
            skipped = node in self._skipping
            self._skipping.discard(node)
            if replica.on_checkpoint(item, stream_seq, skip=skipped) and node not in self.rebuilt_at:
                self.rebuilt_at[node] = time.time()
            return "checkpoint"
        if replica.check(item) == "gap" and reread_at != replica.seq:
            return "reread"
        replica.on_events(item, stream_seq)
        return "events"

    # -- heartbeats --------------------------------------------------------------------------

    async def _status_loop(self) -> None:
        from nats.errors import TimeoutError as NatsTimeout
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
        from nats.js.errors import NotFoundError
        name = status_consumer_name(self.dashboard)
        sub = None
        while not self._stopping:
            try:
                if sub is None:
                    try:
                        await self.js.delete_consumer(STREAM, name)
                    except NotFoundError:
                        pass
                    await self.js.add_consumer(STREAM, ConsumerConfig(
                        name=name, durable_name=name, filter_subject="%s.*.status" % PREFIX,
                        deliver_policy=DeliverPolicy.LAST_PER_SUBJECT, ack_policy=AckPolicy.ALL,
                        ack_wait=self.ack_wait_s))
                    sub = await self.js.pull_subscribe_bind(durable=name, stream=STREAM)
                try:
                    msgs = await sub.fetch(512, timeout=1.0)
                except (NatsTimeout, asyncio.TimeoutError):
                    continue
                for msg in msgs:
                    self._on_status_msg(msg)
                if msgs:
                    await msgs[-1].ack()
            except asyncio.CancelledError:
                return
            except NotFoundError:
                self.fleet.connection["error"] = NO_STREAM
                sub = None
                await asyncio.sleep(2.0)
            except Exception as exc:
                self._note(exc, "reading heartbeats")
                sub = None
                await asyncio.sleep(1.0)

    def _on_status_msg(self, msg) -> None:
        try:
            status = decode(msg.subject, msg.headers, msg.data)
        except WireError as exc:
            self.fleet.counters["bad_messages"] += 1
            log.warning("fleet: skipped a heartbeat on %s: %s", msg.subject, exc)
            return
        received = msg.metadata.timestamp.timestamp() if msg.metadata.timestamp else time.time()
        self.fleet.on_status(status.node, status.body, received)
        self._ensure(status.node)

    # -- numbers -----------------------------------------------------------------------------

    def stats(self) -> dict:
        out = dict(self.counters)
        out.update({"nodes": len(self._tasks), "connection": dict(self.fleet.connection)})
        return out
