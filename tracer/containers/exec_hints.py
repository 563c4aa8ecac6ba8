"""DockerExecHints: the commands of `docker exec`, from the Docker engine's exec_start events.

A join session (graph/joins.py) whose command exited before /proc could be read
gets its command from here (the service turns a hint into a journaled op).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable, Optional

from .docker_client import docker_client


class DockerExecHints:
    """Commands of `docker exec`, from the engine's exec_start events.

    Docker names the command in the event ("exec_start: ps aux"), which
    survives a command that exits before /proc can be read.
    """

    def __init__(self, client_factory: Optional[Callable] = None, keep: int = 256):
        self._factory = client_factory or docker_client
        self._hints = deque(maxlen=keep)     # (time, container id, command)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        self._stream = None
        self.error = None
        self.skipped = 0        # engine events without a command or container id

    def start(self) -> "DockerExecHints":
        self._thread = threading.Thread(target=self._run, name="nsgraph-exec-hints", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                client = self._factory()
                self._stream = client.events(decode=True, filters={"type": "container",
                                                                    "event": ["exec_start"]})
                backoff = 0.5
                self.error = None
                for ev in self._stream:
                    self.add(ev)
                    if self._stop.is_set():
                        break
            except Exception as exc:   # engine down or restarting: retry with back-off
                reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
                self.error = ("Docker events unavailable (%s); docker exec commands fall back to the "
                              "exec'd file name. Start dockerd or set DOCKER_HOST." % reason)
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 30.0)

    def add(self, ev: dict) -> None:
        """Note one engine event; anything that is not a well-formed exec_start is skipped and counted."""
        if not isinstance(ev, dict):
            self.skipped += 1
            return
        action = ev.get("Action") or ev.get("status") or ""
        if not isinstance(action, str) or not action.startswith("exec_start"):
            return
        command = action.split(":", 1)[1].strip() if ":" in action else None
        actor = ev.get("Actor")
        cid = (actor.get("ID") if isinstance(actor, dict) else None) or ev.get("id")
        when = _number(ev.get("timeNano")) / 1e9 or _number(ev.get("time")) or time.time()
        if command and isinstance(cid, str) and cid:
            with self._lock:
                self._hints.append((when, cid, command))
        else:
            self.skipped += 1

    def lookup(self, container_id: str, start: float, end: float) -> Optional[str]:
        """The command of the latest exec into the container shortly before or during [start, end]."""
        with self._lock:
            for when, cid, command in reversed(self._hints):
                if cid == container_id and start - 5.0 <= when <= (end or start) + 2.0:
                    return command
        return None

    def close(self) -> None:
        self._stop.set()
        stream = self._stream
        if stream is not None:
            try:
                stream.close()
            except Exception:
                pass


def _number(value) -> float:
    try:
        return float(value or 0)
    except (TypeError, ValueError):
        return 0.0
