"""Shared by the browser benchmarks (bench_latency.py, bench_web_render.py)."""

import time


def poll(page, expr, timeout=60.0, interval=0.02):
    """The first truthy value of a JavaScript expression in the page.

    Playwright's wait_for_function compiles code with eval, which the dashboard's
    Content-Security-Policy forbids; page.evaluate in a loop does not.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = page.evaluate(expr)
        if value:
            return value
        time.sleep(interval)
    raise SystemExit("timed out waiting for %s" % expr)
