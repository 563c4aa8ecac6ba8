"""An asyncio loop in a daemon thread of its own, beside the tracer's threads.

The NATS client (nats-py) is asyncio; the tracer and the web server are threads.
LoopThread runs one loop for one component (the agent's publisher, the dashboard's
consumer) and lets other threads hand it coroutines.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Optional


class LoopThread:
    def __init__(self, name: str):
        self.name = name
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._ready = threading.Event()

    def start(self) -> "LoopThread":
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        self._ready.wait(5)
        return self

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self._ready.set()
        try:
            self.loop.run_forever()
        finally:
            pending = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.close()

    def submit(self, coro) -> concurrent.futures.Future:
        """Run coro on the loop; the returned future is safe to wait on from any thread."""
        assert self.loop is not None, "LoopThread.start() first"
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, coro, timeout: float = 10.0):
        return self.submit(coro).result(timeout)

    def wake(self, callback) -> None:
        """Run a plain callback on the loop (from any thread)."""
        if self.loop is not None and not self.loop.is_closed():
            try:
                self.loop.call_soon_threadsafe(callback)
            except RuntimeError:        # the loop closed meanwhile
                pass

    def stop(self, timeout: float = 5.0) -> None:
        if self.loop is not None and not self.loop.is_closed():
            try:
                self.loop.call_soon_threadsafe(self.loop.stop)
            except RuntimeError:
                pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
