"""The agent's NATS side: publishes the outbox to JetStream in order, and heartbeats.

Runs in its own asyncio thread (runner.LoopThread).  One message at a time, in outbox
order, each removed only after JetStream acknowledged it; a failed or unanswered
publish is sent again with the same Nats-Msg-Id (JetStream drops the duplicate if the
first one did arrive).  While no server is reachable the outbox fills (and past its
limit, drops and counts: outbox.py) and tracing goes on; nats-py reconnects by itself
once a first connection was made, and this module retries the first one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable, Optional

from .natsconn import Credentials, ErrorNotes, connect_options, connect_until
from .outbox import Outbox
from .runner import LoopThread
from .subjects import subject
from .wire import encode_status

log = logging.getLogger(__name__)


class Publisher:
    def __init__(self, creds: Credentials, servers: list, node: str, run: str, outbox: Outbox,
                 status_fn: Callable[[], dict], *, heartbeat_s: float = 2.0,
                 publish_timeout_s: float = 2.0, on_drop: Optional[Callable[[str], None]] = None):
        self.creds = creds
        self.servers = servers
        self.node = node
        self.run = run
        self.outbox = outbox
        self.status_fn = status_fn
        self.heartbeat_s = heartbeat_s
        self.publish_timeout_s = publish_timeout_s
        self.on_drop = on_drop          # a message JetStream can never take: ask for a repair checkpoint
        self._thread = LoopThread("nsgraph-nats-publisher")
        self._nc = None
        self._js = None
        self._wake: Optional[asyncio.Event] = None
        self._stopping = False
        self._main_future = None
        self.counters = {"published": 0, "retries": 0, "refused": 0, "reconnects": 0, "disconnects": 0,
                         "errors": 0, "heartbeats": 0, "duplicates": 0, "too_large": 0}
        self.connected = False
        self.server: Optional[str] = None
        self.disconnected_since: Optional[float] = time.time()
        self.last_error: Optional[str] = None
        self.last_refusal: Optional[str] = None
        self.last_ack_latency_s: Optional[float] = None
        self._errors = ErrorNotes(log)

    # -- life cycle (any thread) ---------------------------------------------------------

    def start(self) -> "Publisher":
        self._thread.start()
        self.outbox.on_put = lambda: self._thread.wake(self._set_wake)
        self._main_future = self._thread.submit(self._main())
        return self

    def stop(self, drain_s: float = 5.0) -> None:
        """Send what is queued (up to drain_s), a last "stopped" heartbeat, and close."""
        try:
            self._thread.call(self._shutdown(drain_s), timeout=drain_s + 5)
        except Exception as exc:
            log.warning("stopping the NATS publisher: %s", exc)
        self._thread.stop()

    def _set_wake(self) -> None:
        if self._wake is not None:
            self._wake.set()

    # -- the loop ----------------------------------------------------------------------------

    async def _main(self) -> None:
        self._wake = asyncio.Event()
        await self._connect()
        if self._nc is None:
            return
        await asyncio.gather(self._publish_loop(), self._heartbeat_loop())

    async def _connect(self) -> None:
        options = connect_options(self.creds, self.servers, "nsgraph-agent %s" % self.node,
                                  error_cb=self._on_error, disconnected_cb=self._on_disconnect,
                                  reconnected_cb=self._on_reconnect)
        self._nc = await connect_until(options, lambda: self._stopping, self._note_error)
        if self._nc is not None:
            self._js = self._nc.jetstream(timeout=self.publish_timeout_s)
            self._mark_connected()

    def _mark_connected(self) -> None:
        self.connected = True
        self.disconnected_since = None
        url = self._nc.connected_url if self._nc is not None else None
        self.server = url.netloc if url is not None else None

    async def _on_error(self, exc) -> None:
        text = str(exc)
        if "permissions violation" in text.lower():
            self.counters["refused"] += 1
            self.last_refusal = text
        self._note_error(exc)

    async def _on_disconnect(self) -> None:
        if self.connected:
            self.counters["disconnects"] += 1
        self.connected = False
        if self.disconnected_since is None:
            self.disconnected_since = time.time()

    async def _on_reconnect(self) -> None:
        self.counters["reconnects"] += 1
        self._mark_connected()

    def _note_error(self, exc) -> None:
        self.counters["errors"] += 1
        self.last_error = self._errors.note(exc)

    async def _publish_loop(self) -> None:
        from nats.errors import MaxPayloadError
        from nats.js.errors import APIError
        backoff = 0.05
        while not self._stopping:
            msg = self.outbox.peek()
            if msg is None or not self._nc.is_connected:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), 0.2)
                except asyncio.TimeoutError:
                    pass
                continue
            try:
                ack = await self._js.publish(msg.subject, msg.body, headers=dict(msg.headers),
                                             timeout=self.publish_timeout_s)
            except MaxPayloadError as exc:
                # Never publishable: drop it, count it, and let a checkpoint repair.
                self.counters["too_large"] += 1
                self._note_error(exc)
                self.outbox.pop(msg)
                self.outbox.drop(msg.records)
                if msg.kind == "events" and self.on_drop is not None:
                    self.on_drop("a %d-byte message is over the server's max_payload" % len(msg.body))
                elif msg.kind == "checkpoints":
                    self.last_error = ("a %d-byte checkpoint is over the server's max_payload: raise "
                                       "max_payload in nats-server.conf (nsgraph fleet init "
                                       "--max-payload)" % len(msg.body))
                continue
            except (APIError, Exception) as exc:
                self.counters["retries"] += 1
                self._note_error(exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
                continue
            backoff = 0.05
            if getattr(ack, "duplicate", False):
                self.counters["duplicates"] += 1
            self.outbox.pop(msg)
            self.counters["published"] += 1
            self.last_ack_latency_s = time.time() - msg.newest_ts

    async def _heartbeat_loop(self) -> None:
        while not self._stopping:
            await self._heartbeat()
            try:
                await asyncio.sleep(self.heartbeat_s)
            except asyncio.CancelledError:
                return

    async def _heartbeat(self, state: Optional[str] = None) -> None:
        if self._nc is None or not self._nc.is_connected:
            return          # a stale heartbeat sent after a reconnect would only mislead
        body = self.status_fn()
        body["publisher"] = self.stats()
        if state is not None:
            body["state"] = state
        try:
            await self._nc.publish(subject(self.node, "status"), encode_status(self.node, self.run, body))
            self.counters["heartbeats"] += 1
        except Exception as exc:
            self._note_error(exc)

    async def _shutdown(self, drain_s: float) -> None:
        deadline = time.monotonic() + drain_s
        while len(self.outbox) and self._nc is not None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        self._stopping = True
        self._set_wake()
        if self._nc is not None:
            await self._heartbeat("stopped")
            try:
                await self._nc.flush(timeout=2)
            except Exception:
                pass
            try:
                await self._nc.close()
            except Exception:
                pass
        if self._main_future is not None:
            self._main_future.cancel()

    # -- numbers -------------------------------------------------------------------------------

    def stats(self) -> dict:
        out = dict(self.counters)
        out.update({"connected": self.connected, "server": self.server,
                    "disconnected_since": self.disconnected_since, "last_error": self.last_error,
                    "last_refusal": self.last_refusal,
                    "last_ack_latency_s": round(self.last_ack_latency_s, 4)
                    if self.last_ack_latency_s is not None else None})
        return out
