#!/usr/bin/env python3
"""The README's screenshots, from a real `nsgraph serve` on a busy host.

Starts 50 containers of the local demo image (some sharing net or pid with
another, some in the host's pid or network namespace: tests/workloads/busy_host.py),
runs `nsgraph serve`, opens the dashboard in Debian's Chromium, focuses one
container, runs a `docker exec` into it, and saves
  docs/dashboard-overview.png   the overview (counts, sharing summary, containers table)
  docs/dashboard-focus.png      the focused graph of that container
Everything it started is removed on every path.  Root, Docker and the demo image
(scripts/setup.sh test builds it).

usage: sudo .venv/bin/python scripts/dashboard_screenshots.py [--count 50] [--out docs]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from tests.workloads.busy_host import BusyHost  # noqa: E402
from tests.workloads.serve_process import Server  # noqa: E402
from tracer.exitcodes import EXIT_FAILURE, EXIT_NO_PRIVILEGES, EXIT_OK  # noqa: E402

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]


def wait_js(page, expr, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = page.evaluate(expr)
        if value:
            return value
        time.sleep(0.1)
    raise SystemExit("timed out waiting for %s" % expr)     # ends the run; the with blocks clean up


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=50)
    ap.add_argument("--out", default=os.path.join(REPO, "docs"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (nsgraph serve loads eBPF probes)", file=sys.stderr)
        return EXIT_NO_PRIVILEGES
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp, BusyHost(args.count) as host:
        server = Server(tmp)
        try:
            server.wait_url(120)
            print("%d containers (%s-*) and nsgraph serve up" % (args.count, host.prefix), file=sys.stderr)
            subject = host.names[0]              # two others share its network namespace
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1560, "height": 1000})
                page.goto(server.url + "&view=overview&find=" + host.prefix)
                wait_js(page, "window.nsgraph && window.nsgraph.overview.shown.length === %d" % args.count)
                time.sleep(1.0)
                page.screenshot(path=os.path.join(args.out, "dashboard-overview.png"))
                page.click("#ov-body .vrow[data-name='%s']" % subject)
                wait_js(page, "window.nsgraph.metrics.renders > 0 && window.nsgraph.views.view === 'focus'")
                subprocess.run(["docker", "exec", subject, "ps"], capture_output=True, timeout=60, check=True)
                try:
                    wait_js(page, "(document.getElementById('graph').data.find(t => t.uid === 'joins') || {x: []}).x.length > 0", 30)
                except SystemExit:
                    print("the docker exec's join session is not drawn yet; taking the picture anyway", file=sys.stderr)
                time.sleep(1.5)
                page.screenshot(path=os.path.join(args.out, "dashboard-focus.png"))
                print("link to the focused view: %s" % page.url, file=sys.stderr)
                browser.close()
        except Exception as exc:
            print("screenshots failed: %s\nserve log:\n%s" % (exc, server.log_tail()), file=sys.stderr)
            return EXIT_FAILURE
        finally:
            server.stop()
    print("wrote %s/dashboard-overview.png and dashboard-focus.png" % args.out)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
