"""`nsgraph serve` as a subprocess, the way a person runs it, for the browser tests and
scripts/dashboard_screenshots.py: the URL it prints (token included), its API with
a Bearer token, its log; stopped with SIGTERM (then SIGKILL) on every path."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
URL_LINE = re.compile(r"^(http://[^\s/]+/\?token=[A-Za-z0-9_\-.~%]+)\s*$")


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, tmp, extra_args=()):
        self.port = free_port()
        self.token_file = os.path.join(tmp, "token")
        self.log_path = os.path.join(tmp, "serve.log")
        self.url = None
        self.lines = []
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tracer.cli", "serve", "--port", str(self.port),
             "--token-file", self.token_file, "--db", os.path.join(tmp, "events.db"), *extra_args],
            cwd=REPO, stdout=subprocess.PIPE, stderr=self._log, text=True, start_new_session=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)
            m = URL_LINE.match(line.strip())
            if m and self.url is None:
                self.url = m.group(1)

    def wait_url(self, timeout=60):
        deadline = time.monotonic() + timeout
        while self.url is None and time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        if self.url is None:
            raise AssertionError("nsgraph serve printed no http://HOST:PORT/?token=... line; stdout=%r, log:\n%s"
                                 % ("".join(self.lines)[-2000:], self.log_tail()))
        return self.url

    @property
    def base(self):
        return "http://127.0.0.1:%d" % self.port

    @property
    def token(self):
        return self.url.split("token=", 1)[1]

    def api(self, path, method="GET", body=None):
        req = urllib.request.Request(self.base + path, method=method,
                                     headers={"Authorization": "Bearer " + self.token},
                                     data=json.dumps(body).encode() if body is not None else None)
        if body is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                return exc.code, json.loads(raw)
            except ValueError:
                return exc.code, raw.decode("utf-8", "replace")

    def log_tail(self, n=3000):
        self._log.flush()
        with open(self.log_path) as f:
            return f.read()[-n:]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._log.close()
