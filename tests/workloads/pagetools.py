"""Shared by the browser tests and scripts: waiting on a page (by polling: the
dashboard's CSP forbids the eval Playwright's wait_for_function needs), screenshots
for CI's artifacts, and a page's console errors."""

from __future__ import annotations

import os
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHOTS = os.path.join(REPO, "test-artifacts", "screenshots")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]


def shot(page, name, full_page=False):
    os.makedirs(SHOTS, exist_ok=True)
    path = os.path.join(SHOTS, name + ".png")
    page.screenshot(path=path, full_page=full_page)
    return path


def wait_js(page, expr, timeout=10.0, what=None):
    """Poll a JS expression until it is truthy; return its value."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = page.evaluate(expr)
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out after %.1f s waiting for %s (last value %r)" % (timeout, what or expr, value))


class PageLog:
    """Console errors, CSP violations and uncaught exceptions of one page."""

    def __init__(self, page):
        self.errors = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append("uncaught: %s" % exc))

    def _console(self, msg):
        if msg.type != "error":
            return
        text = msg.text
        # Chromium asks for /favicon.ico by itself; the app has none.  A starting
        # server answers /api/graph with 503 (boot.js asks once at once, then waits).
        # Chromium aborts requests in flight when a network interface appears (Docker
        # adds one per container; the page retries): ERR_NETWORK_CHANGED.
        if "favicon" in text or ("Failed to load resource" in text and (
                "404" in text or "503" in text or "ERR_NETWORK_CHANGED" in text)):
            return
        self.errors.append(text)
