"""The dashboard on a busy host: 50 real containers, the real `nsgraph serve`, Chromium.

Some containers share net or pid with another (`--network container:X`,
`--pid container:X`), some are in the host's pid or network namespace
(tests/workloads/busy_host.py).  What the page shows is compared with
`docker inspect` and /proc/<pid>/ns/*:
  * the overview lists all 50 with what each shares with the host and with whom;
  * selecting one focuses the graph on it, its namespaces and its neighbours;
  * a deep link (view, selection, filters, history time) reopens the same view;
  * a `docker exec` into one container appears in its focused view within 2 s.
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from tests.workloads.busy_host import BusyHost, wait_running
from tests.workloads.pagetools import PageLog, shot, wait_js
from tests.workloads.serve_process import Server

COUNT = 50
CONTROLLED = ("pid", "net")            # the types the busy host's options change


@pytest.fixture(scope="module")
def busy(root, docker_client):
    host = BusyHost(COUNT)
    try:
        host.start()
        wait_running(host.names)
        yield host
    finally:
        host.stop()


@pytest.fixture(scope="module")
def truth(busy):
    return busy.truth()


@pytest.fixture(scope="module")
def server(busy, tmp_path_factory):
    srv = Server(str(tmp_path_factory.mktemp("serve-busy")))
    try:
        srv.wait_url(120)
        deadline = time.monotonic() + 120
        while srv.api("/api/status")[1].get("state") != "running":
            assert time.monotonic() < deadline, "nsgraph serve did not start:\n" + srv.log_tail()
            time.sleep(0.3)
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def context(server, playwright_browser):
    ctx = playwright_browser.new_context(viewport={"width": 1500, "height": 1100})
    page = ctx.new_page()
    page.goto(server.url)              # exchanges the token for the cookie
    assert "token" not in page.url
    page.close()
    yield ctx
    ctx.close()


def open_page(context, server, query):
    page = context.new_page()
    page.log = PageLog(page)
    page.goto(server.base + "/" + query)
    assert "token" not in page.url
    return page


def overview_rows(page):
    """Every row of the (virtualized) containers table, scrolled through as a person would."""
    return page.evaluate("""async () => {
      const body = document.getElementById('ov-body');
      const rows = new Map();
      for (let top = 0; ; top += body.clientHeight / 2) {
        body.scrollTop = top;
        await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
        for (const row of body.querySelectorAll('.vrow:not([hidden])')) {
          const c = row.children;
          rows.set(row.dataset.name, {host: c[6].textContent, shared: c[7].title, state: c[3].textContent});
        }
        if (top + body.clientHeight >= body.scrollHeight) break;
      }
      return Object.fromEntries(rows);
    }""")


def parse_shared(title):
    """'net: a, b; pid: c' -> {'net': {'a', 'b'}, 'pid': {'c'}}"""
    out = {}
    for part in filter(None, (p.strip() for p in title.split(";"))):
        ns_type, names = part.split(":", 1)
        out[ns_type.strip()] = {n.strip() for n in names.split(",")}
    return out


def drawn(page):
    """(type, inode) of every namespace node and the pids of every process node in the graph."""
    return page.evaluate("""() => {
      const data = document.getElementById('graph').data || [];
      const ns = data.filter(t => String(t.uid).startsWith('ns-')).flatMap(t => t.customdata || [])
        .map(c => { const p = c.slice(3).split(':'); return [p[0], Number(p[2])]; });
      const view = window.nsgraph.views.focus ? window.nsgraph.views.focus.model : window.nsgraph.model;
      return {ns, pids: Array.from(view.processes.keys()).map(Number),
              joins: (data.find(t => t.uid === 'joins') || {customdata: []}).customdata.map(c => c.slice(5))};
    }""")


def test_overview_lists_every_container_with_its_sharing(context, server, busy, truth):
    page = open_page(context, server, "?view=overview&find=" + busy.prefix)
    wait_js(page, "window.nsgraph && window.nsgraph.overview.shown.length === %d" % COUNT, 30,
            "the overview to list the %d containers" % COUNT)
    rows = overview_rows(page)
    assert sorted(rows) == sorted(busy.names)
    for name, t in truth.items():
        row = rows[name]
        assert row["state"] == "running", (name, row)
        shown_host = set(row["host"].split()) - {"–"}
        # What the options changed is shown, and nothing is claimed that /proc denies.
        assert shown_host & set(CONTROLLED) == t["host"] & set(CONTROLLED), (name, row, t["host"])
        assert shown_host <= t["host"], (name, shown_host, t["host"])
        assert parse_shared(row["shared"]) == t["shared"], (name, row["shared"], t["shared"])
        # ... which is what docker inspect says was asked for.
        if t["pid_mode"] == "host":
            assert "pid" in shown_host
        if t["network_mode"] == "host":
            assert "net" in shown_host
        if t["network_mode"].startswith("container:"):
            target = next(n for n, u in truth.items() if u["id"] == t["network_mode"].split(":", 1)[1])
            assert target in parse_shared(row["shared"])["net"]
    # The summary and the sharing filter agree with /proc too.
    page.select_option("#ov-share", "host")
    hosts = {n for n, t in truth.items() if t["host"] & set(CONTROLLED)}
    wait_js(page, "window.nsgraph.overview.shown.length === %d" % len(hosts), 5)
    assert set(page.evaluate("window.nsgraph.overview.shown.map(r => r.name)")) == hosts
    page.select_option("#ov-share", "container")
    sharers = {n for n, t in truth.items() if t["shared"]}
    wait_js(page, "window.nsgraph.overview.shown.length === %d" % len(sharers), 5)
    assert set(page.evaluate("window.nsgraph.overview.shown.map(r => r.name)")) == sharers
    page.select_option("#ov-share", "")
    page.click("#ov-head button[data-key='shared']")
    page.click("#ov-head button[data-key='shared']")          # descending: sharers first
    first = page.evaluate("window.nsgraph.overview.shown.slice(0, %d).map(r => r.name)" % len(sharers))
    assert set(first) == sharers
    shot(page, "busy-01-overview")
    assert not page.log.errors, page.log.errors
    page.close()


def focus_on(page, name):
    page.fill("#ov-search", name)
    wait_js(page, "window.nsgraph.overview.shown.length >= 1 && window.nsgraph.overview.shown[0].name === '%s'" % name, 10)
    page.click("#ov-body .vrow[data-name='%s']" % name)
    wait_js(page, """window.nsgraph.views.view === 'focus' && window.nsgraph.metrics.renders > 0 &&
                     document.getElementById('graph').data.some(t => t.uid === 'procs')""", 30, "the focused graph")


def test_selecting_a_container_focuses_the_graph_on_it(context, server, busy, truth):
    subject = busy.names[0]           # others join its network namespace
    neighbours = {n for n, t in truth.items() if t["network_mode"] == "container:" + truth[subject]["id"]}
    assert len(neighbours) == 2 and truth[subject]["shared"]["net"] == neighbours
    page = open_page(context, server, "?view=overview&find=" + busy.prefix)
    focus_on(page, subject)
    assert "view=focus" in page.url and "sel=container%3A" + subject in page.url
    wait_js(page, "document.querySelectorAll('#focus-neighbours button.expand').length === 2", 10)
    got = drawn(page)
    ns = {(t, i) for t, i in got["ns"]}
    for ns_type, ino in truth[subject]["ns"].items():
        assert (ns_type, ino) in ns, "%s's %s namespace %d (from /proc) is not drawn" % (subject, ns_type, ino)
    # The subject and the processes that share its network namespace, nobody else's.
    assert truth[subject]["pid"] in got["pids"]
    for n in neighbours:
        assert truth[n]["pid"] in got["pids"], n
    unrelated = busy.names[3]
    assert truth[unrelated]["pid"] not in got["pids"]
    assert not {(t, i) for t, i in truth[unrelated]["ns"].items() if t not in truth[unrelated]["host"]} & ns
    listed = set(page.evaluate("Array.from(document.querySelectorAll('#focus-neighbours button.expand')).map(b => b.dataset.container)"))
    assert listed == neighbours
    shot(page, "busy-02-focus")
    # One hop further: expanding a neighbour draws its namespaces too.
    page.click("#focus-neighbours button[data-container='%s']" % sorted(neighbours)[0])
    n0 = sorted(neighbours)[0]
    wait_js(page, "window.nsgraph.views.expand.length === 1", 5)
    wait_js(page, """(() => { const d = document.getElementById('graph').data.filter(t => String(t.uid).startsWith('ns-'))
        .flatMap(t => t.customdata); return d.some(c => c.startsWith('ns|uts:') && c.split(':')[2] === '%d'); })()"""
            % truth[n0]["ns"]["uts"], 10, "the expanded neighbour's uts namespace")
    assert "x=container%3A" + n0 in page.url
    # A container in the host's pid namespace says so, and draws the host's.
    in_host_pid = next(n for n, t in truth.items() if t["pid_mode"] == "host")
    page.click("#focus-back")
    wait_js(page, "window.nsgraph.views.view === 'overview'", 5)
    focus_on(page, in_host_pid)
    text = page.inner_text("#focus-subject")
    assert "shares the host's" in text and "pid" in text.split("shares the host's", 1)[1], text
    assert ("pid", os.stat("/proc/self/ns/pid").st_ino) in {(t, i) for t, i in drawn(page)["ns"]}
    assert not page.log.errors, page.log.errors
    page.close()


def test_deep_link_reopens_the_same_view(context, server, busy, truth):
    subject = busy.names[2]           # two others share its pid namespace
    page = open_page(context, server, "?view=overview&find=" + busy.prefix)
    focus_on(page, subject)
    page.uncheck("#type-filters input[data-type='time']")
    at = time.time() - 1.0
    page.evaluate("(t) => window.nsgraph.scrubber.show(t)", at)
    wait_js(page, "!document.getElementById('history-banner').hidden && window.nsgraph.shown !== window.nsgraph.model", 15)
    wait_js(page, "new URLSearchParams(location.search).has('at') && new URLSearchParams(location.search).get('types')", 5)
    wait_js(page, "window.nsgraph.metrics.renders > 1", 10)
    link = page.url
    assert "token" not in link and server.token not in link
    before = drawn(page)
    when = page.inner_text("#history-time")
    page.close()

    again = open_page(context, server, link[len(server.base) + 1:])
    wait_js(again, "window.nsgraph.views && window.nsgraph.views.view === 'focus' && !document.getElementById('history-banner').hidden", 30)
    wait_js(again, "window.nsgraph.shown !== window.nsgraph.model && window.nsgraph.metrics.renders > 0", 15)
    assert again.evaluate("window.nsgraph.views.sel") == {"kind": "container", "id": subject}
    assert again.inner_text("#history-time") == when
    assert again.evaluate("document.querySelector(\"#type-filters input[data-type='time']\").checked") is False
    wait_js(again, "document.getElementById('graph').data.some(t => t.uid === 'procs')", 10)
    after = drawn(again)
    assert sorted(map(tuple, after["ns"])) == sorted(map(tuple, before["ns"]))
    assert sorted(after["pids"]) == sorted(before["pids"])
    assert truth[subject]["pid"] in after["pids"]
    assert again.url == link
    assert not again.log.errors, again.log.errors
    again.close()
    # The overview's sort and filters are in its links too.
    page = open_page(context, server, "?view=overview&find=%s&share=container&sort=name&desc=1" % busy.prefix)
    sharers = sorted((n for n, t in truth.items() if t["shared"]), reverse=True)
    wait_js(page, "window.nsgraph.overview.shown.length === %d" % len(sharers), 30)
    assert page.evaluate("window.nsgraph.overview.shown.map(r => r.name)") == sharers
    page.close()


def test_docker_exec_appears_in_the_focused_view_within_2s(context, server, busy, truth):
    subject = busy.names[5]
    page = open_page(context, server, "?view=focus&sel=container%3A" + subject)
    wait_js(page, "window.nsgraph.views.view === 'focus' && document.getElementById('graph').data && "
                  "document.getElementById('graph').data.some(t => t.uid === 'procs')", 30, "the focused graph")
    time.sleep(0.5)
    before = set(drawn(page)["joins"])
    started = time.time()
    subprocess.run(["docker", "exec", subject, "ps"], capture_output=True, timeout=60, check=True)
    returned = time.time()
    seen_at, fresh = None, []
    while time.time() < returned + 10:
        result = page.evaluate("""() => ({now: (performance.timeOrigin + performance.now()) / 1000,
            joins: (document.getElementById('graph').data.find(t => t.uid === 'joins') || {customdata: []}).customdata.map(c => c.slice(5))})""")
        fresh = [j for j in result["joins"] if j not in before]
        if fresh:
            seen_at = result["now"]
            break
        time.sleep(0.05)
    assert fresh, "no new join session drawn in %s's focused view within 10 s of the docker exec" % subject
    status, join = server.api("/api/join/" + fresh[0])
    assert status == 200, join
    # The join went into this container's namespaces, per /proc.
    for ns_type, target in join["target"].items():
        assert int(target.split(":")[2]) == truth[subject]["ns"][ns_type], (ns_type, target)
    latency = seen_at - join["start"]
    print("docker exec: command took %.2f s; join session drawn %.2f s after its first setns (%.2f s after the call)"
          % (returned - started, latency, seen_at - started))
    shot(page, "busy-03-exec-focus")
    assert latency <= 2.0, "the join session appeared %.2f s after the kernel saw it (target 2 s)" % latency
    assert not page.log.errors, page.log.errors
    page.close()
