"""DemoManager: the launcher's public face: admission (caps, rate limit), runs, reaping.

A launch is admitted or refused at once (DemoError with the HTTP status and,
for 429, a Retry-After), then runs in a worker thread (runner.py); the page
polls GET /api/demos/runs/<id> and hears every state change over SSE through
the listeners.  The reaper removes expired demo containers and sleepers, so a
server that dies leaves nothing running for long (any instance reaps any
instance's expired containers).
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
import uuid
from typing import Callable, List, Optional

from .outcome import namespaces_for_run
from .run import FAILED, RUNNING, SUCCEEDED, DemoError, Run
from .runner import DemoRunner
from .scenarios import SCENARIOS, UTIL_LINUX, Scenario

log = logging.getLogger(__name__)

MAX_RUNS_KEPT = 200
REAP_EVERY_S = 15.0


class DemoManager:
    def __init__(self, config, instance: Optional[str] = None,
                 docker_factory: Optional[Callable] = None, myapp_name: str = "myapp"):
        self.config = config
        self.instance = instance or uuid.uuid4().hex[:12]
        self.myapp = myapp_name
        self.runner = DemoRunner(config, self.instance, myapp_name, docker_factory)
        self._graph_json: Callable[[], Optional[dict]] = lambda: None
        self._listeners: List[Callable[[dict], None]] = []
        self._lock = threading.RLock()
        self._runs: "collections.OrderedDict[str, Run]" = collections.OrderedDict()
        self._launches = collections.deque()      # launch times inside the rate window
        self._reaper: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self.counters = collections.Counter()

    # -- wiring ------------------------------------------------------------------

    def set_graph_source(self, graph_json: Callable[[], Optional[dict]]) -> None:
        """Where run_json() finds the Graph JSON (WebState's, cached per version)."""
        self._graph_json = graph_json

    def add_listener(self, callback: Callable[[dict], None]) -> None:
        """callback(run JSON) on every change of a run (worker threads; keep it quick)."""
        self._listeners.append(callback)

    # -- catalogue -------------------------------------------------------------

    def scenarios(self) -> list:
        image = self.runner.image_name or "IMAGE"
        out = []
        for s in SCENARIOS.values():
            item = s.public(image, self.myapp)
            item["available"], item["why"] = self._available(s)
            out.append(item)
        return out

    def _available(self, scenario: Scenario):
        if self.config.read_only:
            return False, "the server runs with --read-only"
        if scenario.kind == UTIL_LINUX and os.geteuid() != 0:
            return False, "needs root (unshare --net)"
        return True, None

    # -- launching ---------------------------------------------------------------

    def launch(self, scenario_id: str) -> Run:
        """Validate, admit and start a run in a worker thread; raises DemoError."""
        if self.config.read_only:
            raise DemoError("the demo launcher is disabled: nsgraph serve runs with --read-only "
                            "(restart it without --read-only to launch demos)", 403)
        scenario = SCENARIOS.get(scenario_id) if isinstance(scenario_id, str) else None
        if scenario is None:
            raise DemoError("unknown scenario %r; GET /api/demos lists the ids: %s"
                            % (scenario_id, ", ".join(SCENARIOS)), 400)
        with self._lock:
            self._admit(time.time())
            run = Run(id=uuid.uuid4().hex[:12], scenario=scenario.id,
                      command=scenario.shown(self.runner.image_name or "IMAGE", self.myapp))
            self._runs[run.id] = run
            self._forget_old_runs()
            self.counters["started"] += 1
        self._ensure_reaper()
        threading.Thread(target=self._execute, args=(scenario, run), daemon=True,
                         name="nsgraph-demo-%s" % run.id).start()
        return run

    def _admit(self, now: float) -> None:
        """The caps: concurrent runs, and launches per rate window (under the lock)."""
        active = sum(1 for r in self._runs.values() if r.active)
        if active >= self.config.max_concurrent_demos:
            self.counters["refused_busy"] += 1
            raise DemoError("%d demos are already running (the cap is %d): wait for one to "
                            "finish" % (active, self.config.max_concurrent_demos), 429, 5)
        window = self.config.demo_rate_window_s
        while self._launches and self._launches[0] <= now - window:
            self._launches.popleft()
        if len(self._launches) >= self.config.demo_rate:
            self.counters["refused_rate"] += 1
            retry = int(self._launches[0] + window - now) + 1
            raise DemoError("rate limit: %d demos per %d s; try again in %d s"
                            % (self.config.demo_rate, window, retry), 429, retry)
        self._launches.append(now)

    def _forget_old_runs(self) -> None:
        while len(self._runs) > MAX_RUNS_KEPT:
            oldest = next(iter(self._runs))
            if self._runs[oldest].active:
                break
            self._runs.pop(oldest)

    def _execute(self, scenario: Scenario, run: Run) -> None:
        run.status = RUNNING
        run.started = time.time()
        self._notify(run)

        def progress(message: str) -> None:
            run.progress.append(message)
            self._notify(run)
        try:
            self.runner.run(scenario, run, progress)
            run.status = SUCCEEDED if run.exit_code == 0 else FAILED
        except DemoError as exc:
            run.error = str(exc)
            run.status = FAILED
        except Exception as exc:  # Docker API errors and the like: reported, not raised
            log.exception("demo %s failed", run.id)
            run.error = "%s: %s" % (type(exc).__name__, exc)
            run.status = FAILED
        finally:
            run.ended = time.time()
            self.counters["failed" if run.status == FAILED else "succeeded"] += 1
            self._notify(run)

    def _notify(self, run: Run) -> None:
        data = self.run_json(run.id)
        for callback in list(self._listeners):
            try:
                callback(data)
            except Exception:
                log.exception("demo notification failed")

    # -- reading runs -------------------------------------------------------------------

    def get(self, run_id: str) -> Optional[Run]:
        with self._lock:
            return self._runs.get(run_id)

    def run_json(self, run_id: str) -> Optional[dict]:
        """The run as the page shows it, with the namespaces and joins the graph has for it."""
        run = self.get(run_id)
        if run is None:
            return None
        out = run.to_json()
        try:
            graph = self._graph_json()
        except Exception:
            log.exception("graph lookup for a demo run failed")
            graph = None
        out.update(namespaces_for_run(run, graph))
        return out

    def recent_runs(self, limit: int) -> list:
        """The last `limit` runs, oldest first, as run_json() gives them."""
        with self._lock:
            ids = list(self._runs)[-limit:]
        return [data for data in (self.run_json(i) for i in ids) if data is not None]

    def stats(self) -> dict:
        with self._lock:
            running = sum(1 for r in self._runs.values() if r.active)
        return {"started": self.counters["started"], "running": running,
                "failed": self.counters["failed"], "succeeded": self.counters["succeeded"],
                "refused_busy": self.counters["refused_busy"],
                "refused_rate": self.counters["refused_rate"],
                "sleepers": self.runner.sleepers_alive()}

    # -- cleaning up ------------------------------------------------------------------

    def cleanup(self, expired_only: bool = False) -> dict:
        """Remove our demo containers (and anyone's expired ones) and stop our sleepers."""
        self.runner.stop_sleepers(expired_only)
        removed, errors = self.runner.remove_containers(expired_only)
        self.counters["cleaned"] += len(removed)
        return {"removed": removed, "errors": errors}

    def _ensure_reaper(self) -> None:
        with self._lock:
            if self._reaper is not None:
                return
            self._reaper = threading.Thread(target=self._reap, daemon=True, name="nsgraph-demo-reaper")
            self._reaper.start()

    def _reap(self) -> None:
        while not self._stop.wait(REAP_EVERY_S):
            try:
                self.cleanup(expired_only=True)
            except Exception:
                log.exception("demo reaper step failed")

    def stop(self) -> None:
        """Server shutdown: stop the reaper and every sleeper we started."""
        self._stop.set()
        self.runner.stop_sleepers()
