"""One demo run (what the page polls) and the error that refuses or ends one."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

QUEUED, RUNNING, SUCCEEDED, FAILED = "queued", "running", "succeeded", "failed"


class DemoError(Exception):
    """A demo cannot start or failed; `status` is the HTTP status to answer a launch with."""

    def __init__(self, message: str, status: int = 400, retry_after: Optional[int] = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


@dataclass
class Run:
    id: str
    scenario: str
    command: str                    # as shown to the user
    status: str = QUEUED
    output: str = ""
    truncated: bool = False
    exit_code: Optional[int] = None
    error: Optional[str] = None
    created: float = field(default_factory=time.time)
    started: Optional[float] = None
    ended: Optional[float] = None
    container: Optional[str] = None     # the demo container's name (docker run) or myapp's (exec)
    # Host pids of the processes the run itself started: the docker exec'd command,
    # the nsenter, the unshare and its child.  Join sessions are matched to runs by them.
    pids: list = field(default_factory=list)
    # Namespace inodes read from /proc while the demo ran: type -> inode.
    observed_ns: dict = field(default_factory=dict)
    progress: list = field(default_factory=list)

    @property
    def active(self) -> bool:
        return self.status in (QUEUED, RUNNING)

    def append_output(self, text: str, cap: int) -> None:
        """Add to the output, keeping at most `cap` characters (and saying it was cut)."""
        room = cap - len(self.output)
        if room <= 0:
            self.truncated = self.truncated or bool(text)
            return
        if len(text) > room:
            text = text[:room]
            self.truncated = True
        self.output += text

    def to_json(self) -> dict:
        return {
            "id": self.id, "run_id": self.id, "scenario": self.scenario, "command": self.command,
            "status": self.status, "output": self.output, "truncated": self.truncated,
            "exit_code": self.exit_code, "error": self.error, "created": self.created,
            "started": self.started, "ended": self.ended, "container": self.container,
            "pids": list(self.pids), "observed_ns": dict(self.observed_ns),
            "progress": list(self.progress),
        }
