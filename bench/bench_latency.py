#!/usr/bin/env python3
"""Event in the kernel -> visible in the browser: p50 and p99 (target p99 <= 150 ms).

Runs the real stack: `nsgraph serve` (eBPF probes, graph, Flask, SSE) as a
subprocess and the real dashboard in headless Chromium.  A helper then starts
N `unshare --uts sleep S` processes, one every --interval seconds.  Each makes a
new uts namespace; its inode is read from /proc/<pid>/ns/uts (ground truth).
The page records, for every namespace it paints, the graph's `created` time
(the kernel timestamp of the unshare event) and the moment the frame with the
new node was painted (window.nsgraph.metrics.rendered).  Latency = painted -
created, both on this machine's clock.  Also reported: when the raw unshare
event reached the page over SSE (window.nsgraph.metrics.eventArrivals).

Needs root (eBPF) and Chromium.  usage:
  sudo .venv/bin/python bench/bench_latency.py [--count 100] [--interval 0.2]
NSG_DEBUG=1 also prints the page's own pipeline (message queued, diff applied,
render started/finished, rings redrawn) to see where the time goes.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pageutil

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from tracer.exitcodes import EXIT_FAILURE, EXIT_NO_PRIVILEGES, EXIT_OK  # noqa: E402

URL_LINE = re.compile(r"^(http://[^\s/]+/\?token=\S+)\s*$")
TARGET_MS = 150.0


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ns_inode(pid, t):
    try:
        link = os.readlink("/proc/%d/ns/%s" % (pid, t))
    except OSError:
        return None
    return int(link[link.index("[") + 1:-1])


def percentile(values, q):
    """Nearest-rank percentile."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(q / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def start_server(tmp):
    port = free_port()
    log = open(os.path.join(tmp, "serve.log"), "w")
    proc = subprocess.Popen([sys.executable, "-m", "tracer.cli", "serve", "--port", str(port),
                             "--token-file", os.path.join(tmp, "token"), "--db", os.path.join(tmp, "events.db")],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True)
    url = [None]

    def read():
        for line in proc.stdout:
            m = URL_LINE.match(line.strip())
            if m and url[0] is None:
                url[0] = m.group(1)
    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + 60
    while url[0] is None:
        if proc.poll() is not None or time.monotonic() > deadline:
            log.flush()
            raise SystemExit("nsgraph serve did not print its URL; see %s" % log.name)
        time.sleep(0.05)
    return proc, url[0], log


def poll(page, expr, timeout=60.0):
    return pageutil.poll(page, expr, timeout, interval=0.05)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--interval", type=float, default=0.2, help="seconds between unshare calls")
    ap.add_argument("--lifetime", type=float, default=3.0, help="seconds each namespace lives")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root: nsgraph serve loads eBPF probes (sudo %s)" % sys.argv[0], file=sys.stderr)
        return EXIT_NO_PRIVILEGES
    from playwright.sync_api import sync_playwright

    tmp = tempfile.mkdtemp(prefix="nsgbench-")
    proc, url, log = start_server(tmp)
    helpers = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run", "--disable-sync"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            poll(page, "window.nsgraph && window.nsgraph.ready && window.nsgraph.metrics.renders > 0", 120)
            time.sleep(1.0)
            if os.environ.get("NSG_DEBUG"):
                page.evaluate("""() => { const st = window.nsgraph.stream, v = window.nsgraph.view; window.dbg = [];
                  const T = () => Math.round((performance.timeOrigin + performance.now()) % 100000);
                  const e = st.enqueue.bind(st); st.enqueue = (raw) => { window.dbg.push(['enq', T(), raw.length]); e(raw); };
                  const f = st.flush.bind(st); st.flush = () => { window.dbg.push(['flush', T(), st.queue.length]); f(); };
                  const r = v.requestRender.bind(v); v.requestRender = () => { window.dbg.push(['req', T(), v.pending, v.rendering]); r(); };
                  const rr = v._render.bind(v); v._render = () => { window.dbg.push(['render', T()]); return rr().then(() => window.dbg.push(['rendered', T(), v.lastSig === window.__ls ? 'skip' : 'drawn'])).finally(() => { window.__ls = v.lastSig; }); };
                  const dr = v._drawRings.bind(v); v._drawRings = () => { const t = T(); dr(); window.dbg.push(['rings', t, T() - t]); }; }""")
            host_uts = ns_inode(os.getpid(), "uts")  # /proc/1 may be unreadable (a supervisor); we run in the host namespaces
            made = []      # (inode, spawned_at)
            for _ in range(args.count):
                t = time.time()
                h = subprocess.Popen(["unshare", "--uts", "sleep", str(args.lifetime)])
                helpers.append(h)
                ino = None
                deadline = time.monotonic() + 2
                while time.monotonic() < deadline:
                    ino = ns_inode(h.pid, "uts")
                    if ino is not None and ino != host_uts:
                        break
                    time.sleep(0.002)
                if ino is not None and ino != host_uts:
                    made.append((ino, t, h.pid))
                time.sleep(max(0.0, args.interval - (time.time() - t)))
            time.sleep(2.0)
            rendered = page.evaluate("window.nsgraph.metrics.rendered")
            arrivals = page.evaluate("window.nsgraph.metrics.eventArrivals")
            diffs = page.evaluate("window.nsgraph.metrics.diffArrivals")
            if os.environ.get("NSG_DEBUG"):
                for r in page.evaluate("window.nsgraph.metrics.renderLog")[-15:]:
                    print("render start %.3f build %.0f react %.0f paint +%.0f" % (r["startedAt"] / 1000 % 100, r["buildMs"], r["drawnAt"] - r["startedAt"] - r["buildMs"], r["paintedAt"] - r["drawnAt"]))
                for row in page.evaluate("window.dbg")[-400:]:
                    print(row)
                for d in diffs[-8:]:
                    print("diff arrived %.3f %s" % (d["arrived"] % 100, d["id"]))
            stats = page.evaluate("window.nsgraph.stream.stats")
            render_ms = page.evaluate("window.nsgraph.metrics.lastRenderMs")
            nodes = page.evaluate("window.nsgraph.metrics.nodes")
            browser.close()
    finally:
        for h in helpers:
            with contextlib.suppress(Exception):
                h.kill()
                h.wait(timeout=2)
        proc.terminate()
        with contextlib.suppress(Exception):
            proc.wait(timeout=15)
        log.close()

    shown = {}
    for r in rendered:
        if r.get("type") == "uts" and r.get("created"):
            shown.setdefault(r["inode"], []).append(r)
    lat, missing = [], 0
    for ino, spawned, _pid in made:
        match = [r for r in shown.get(ino, []) if spawned - 1 <= r["created"] <= spawned + 5]
        if not match:
            missing += 1
            continue
        r = min(match, key=lambda r: r["created"])
        lat.append((r["shown"] - r["created"]) * 1000)
    ev_lat = []
    pids = {pid: spawned for _i, spawned, pid in made}
    for a in arrivals:
        if a["kind"] == "unshare" and a["pid"] in pids:
            ev_lat.append((a["arrived"] - a["ts"]) * 1000)

    if os.environ.get("NSG_DEBUG"):
        for ino, spawned, pid in made[:15]:
            print("made", ino, "%.3f" % spawned, pid, [(round(r["created"] - spawned, 3), round(r["shown"] - spawned, 3)) for r in shown.get(ino, [])])
        print("rendered uts sample", [r for r in rendered if r.get("type") == "uts"][:5])
    diff_lat = []
    first_diff = {}
    for d in diffs:
        if d.get("type") == "uts" and d.get("created"):
            first_diff.setdefault((d["inode"], round(d["created"], 3)), d)
    made_inodes = {ino: spawned for ino, spawned, _pid in made}
    for (ino, _c), d in first_diff.items():
        if ino in made_inodes and made_inodes[ino] - 1 <= d["created"] <= made_inodes[ino] + 5:
            diff_lat.append((d["arrived"] - d["created"]) * 1000)
    print("namespaces created: %d, painted in the graph: %d, not seen: %d" % (len(made), len(lat), missing))
    print("page: %d nodes drawn, last Plotly render %.0f ms; stream %s" % (nodes or 0, render_ms or 0, stats))
    if ev_lat:
        print("kernel event -> page (SSE message): p50 %.0f ms  p99 %.0f ms  max %.0f ms  (n=%d)" % (
            percentile(ev_lat, 50), percentile(ev_lat, 99), max(ev_lat), len(ev_lat)))
    if diff_lat:
        print("kernel event -> page (graph diff):   p50 %.0f ms  p99 %.0f ms  max %.0f ms  (n=%d)" % (
            percentile(diff_lat, 50), percentile(diff_lat, 99), max(diff_lat), len(diff_lat)))
    arrived_at = {}
    no_created = sum(1 for d in diffs if d.get("type") == "uts" and not d.get("created"))
    if no_created:
        print("uts namespaces first sent without a creation time: %d" % no_created)
    for d in diffs:
        arrived_at.setdefault(d["id"], d["arrived"])
    share = [(r["shown"] - arrived_at[r["id"]]) * 1000 for r in rendered
             if r.get("type") == "uts" and r.get("id") in arrived_at and r["inode"] in made_inodes]
    if os.environ.get("NSG_DEBUG"):
        for r in [r for r in rendered if r.get("type") == "uts" and r["inode"] in made_inodes][-6:]:
            print("ns %s created %.0f arrived %.0f shown %.0f" % (r["id"], r["created"] * 1000 % 100000,
                  arrived_at.get(r["id"], 0) * 1000 % 100000, r["shown"] * 1000 % 100000))
    if share:
        print("diff arrived -> node painted (browser): p50 %.0f ms  p99 %.0f ms  max %.0f ms  (n=%d)" % (
            percentile(share, 50), percentile(share, 99), max(share), len(share)))
    if not lat:
        print("no latencies measured")
        return EXIT_FAILURE
    p50, p99 = percentile(lat, 50), percentile(lat, 99)
    print("kernel event -> node painted in the graph: p50 %.0f ms  p99 %.0f ms  max %.0f ms  (n=%d)" % (
        p50, p99, max(lat), len(lat)))
    print("p99 ratio to the %.0f ms target: %.2f (%s)" % (TARGET_MS, p99 / TARGET_MS, "met" if p99 <= TARGET_MS else "NOT met"))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
