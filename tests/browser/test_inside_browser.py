"""The inside view in the real dashboard: the seed's three commands answered side by side.

`nsgraph serve` (tracer, graph, Flask) in a subprocess, Debian's Chromium
through Playwright (the harness of test_browser.py).  The page launches the
hostname-ip-ps demo, opens the compare panel for the host against its
container, and the three answers on the page are checked against the system:
docker inspect, what the container itself printed, and ps run inside it.
Then a `docker exec` join session: what the exec'd process saw is the
container's own view.
"""

from __future__ import annotations

import os
import re
import socket
import time

import pytest

# The harness of test_browser.py: its server fixture gives this module its own server
# (the browser is tests/conftest.py's).
from tests.browser.test_browser import server  # noqa: F401
from tests.workloads.pagetools import SHOTS, PageLog, wait_js
from tests.workloads import inside_truth as truth


def panel_shot(page, name: str) -> None:
    os.makedirs(SHOTS, exist_ok=True)
    page.locator("#compare-panel").screenshot(path=os.path.join(SHOTS, name + ".png"))


@pytest.fixture(scope="module")
def page(server, playwright_browser):  # noqa: F811
    context = playwright_browser.new_context(viewport={"width": 1500, "height": 1400})
    pg = context.new_page()
    pg.log = PageLog(pg)
    # The whole-graph view, as test_browser.py's page: a host other tests keep busy
    # with containers would open the overview, which draws no graph.
    pg.goto(server.url + "&view=graph")
    wait_js(pg, "window.nsgraph && window.nsgraph.ready && window.nsgraph.metrics.renders > 0", 60, "the first render")
    yield pg
    context.close()


def _run_demo(page, scenario: str, timeout: float) -> None:
    page.click("button[data-scenario='%s']" % scenario)
    status = wait_js(page, """() => { const s = document.getElementById('demo-status');
        const run = document.querySelector('#demo-run .scenario-id');
        return s && run && run.textContent === '%s' && ['succeeded', 'failed'].includes(s.textContent) && s.textContent; }"""
                     % scenario, timeout, "demo %s to finish" % scenario)
    assert status == "succeeded", page.evaluate("document.getElementById('demo-run').innerText")


def _last_run(server, scenario: str) -> dict:
    runs = [r for r in server.api("/api/demos/runs")[1]["runs"] if r["scenario"] == scenario]
    return runs[-1]


# The seed's three answers come from these namespaces (webapp/static/js/inside.js SEED).
SEED_TYPES = ("uts", "net", "pid")
# Generous bounds for a shared 2-core machine: the graph attributing a new container's
# namespaces, and the page's poll of a finished run (every 1 to 3 s) after that.
RUN_NAMESPACES_S = 90.0
PAGE_LEARNS_S = 30.0


def _wait_run_created(server, run_id: str, types, timeout: float) -> dict:
    """type -> namespace id the server says the run created, once it names all of `types`."""
    deadline = time.monotonic() + timeout
    created = []
    while True:
        created = server.api("/api/demos/runs/%s" % run_id)[1]["namespaces"]["created"]
        by_type = {i.split(":")[0]: i for i in created}
        if set(types) <= set(by_type):
            return {t: by_type[t] for t in types}
        if time.monotonic() > deadline:
            run = server.api("/api/demos/runs/%s" % run_id)[1]
            mine = [{k: n.get(k) for k in ("id", "created", "repaired", "container", "container_id", "creator", "pids")}
                    for n in server.api("/api/graph")[1]["namespaces"]
                    if n.get("container") == run.get("container") or set(n.get("pids") or ()) & set(run.get("pids") or ())]
            raise AssertionError("after %.0f s the server still does not name the %s namespaces demo run %s created "
                                 "(it names %r; run %r; the graph's namespaces of its container or pids %r; "
                                 "graph counters %r)" % (timeout, "/".join(types), run_id, created,
                                                         {k: v for k, v in run.items() if k != "output"}, mine,
                                                         server.api("/api/status")[1].get("counters")))
        time.sleep(0.5)


def _tables(page) -> dict:
    """type -> {row label: [cell text per column]} of the compare panel's tables."""
    return page.evaluate("""() => Object.fromEntries(Array.from(document.querySelectorAll(
        '#cmp-result table.inside-compare')).map(t => [t.dataset.type, Object.fromEntries(Array.from(
        t.querySelectorAll('tr[data-label]')).map(tr => [tr.dataset.label.trim(),
        Array.from(tr.querySelectorAll('td')).map(td => td.innerText)]))]))""")


def _wait_compare(page, what: str) -> dict:
    wait_js(page, "!!document.querySelector('#cmp-result .cmp-section[data-done]')", 30, what)
    return _tables(page)


def test_compare_view_answers_hostname_ip_addr_ps_for_host_and_the_demo_container(server, page, docker_client):
    _run_demo(page, "hostname-ip-ps", 180)
    run = _last_run(server, "hostname-ip-ps")
    container = docker_client.containers.get(run["container"])
    assert container.status == "running", "the demo container should stay for the compare view"
    pid = container.attrs["State"]["Pid"]
    printed = run["output"]
    # The page offers host vs this demo run once it knows the namespaces the run created:
    # the server works them out of the graph, which on a busy host may learn them seconds
    # after the run ended; the page polls a finished run until they are known.
    seed = _wait_run_created(server, run["id"], SEED_TYPES, RUN_NAMESPACES_S)
    button = "#cmp-presets button.cmp-run[data-run='%s']" % run["id"]
    try:
        wait_js(page, "!!document.querySelector(\"%s\")" % button, PAGE_LEARNS_S, "the compare button for the demo run")
    except AssertionError as exc:
        listed = page.evaluate("Array.from(document.querySelectorAll('#demo-created a')).map(a => a.dataset.ns)")
        raise AssertionError("%s: the server has the run's %s, the page lists as created %r" % (exc, seed, listed)) from None
    page.click(button)
    tables = _wait_compare(page, "the three tables")
    panel_shot(page, "inside-compare-host-vs-demo")
    assert set(tables) == {"uts", "net", "pid"}, tables.keys()

    # hostname: the host's, and the container's (docker inspect, and what it printed itself).
    hostname = container.attrs["Config"]["Hostname"]
    assert tables["uts"]["hostname"] == [socket.gethostname(), hostname]
    assert printed.splitlines()[0] == hostname == truth.hostname(pid)

    # ip addr: the container's eth0 with the address and MAC it printed and docker gave it.
    network = container.attrs["NetworkSettings"]
    eth0 = tables["net"]["eth0"][1]
    assert "%s/%d" % (network["IPAddress"], network["IPPrefixLen"]) in eth0 and network["MacAddress"] in eth0
    assert re.search(r"inet %s/%d" % (re.escape(network["IPAddress"]), network["IPPrefixLen"]), printed)
    assert "127.0.0.1/8" in tables["net"]["lo"][0] and "127.0.0.1/8" in tables["net"]["lo"][1]
    assert int(tables["net"]["interfaces"][1]) == len(truth.ip_addr(pid)) == 2
    gateway, dev = truth.default_routes(os.getpid())[0]
    assert tables["net"]["default route"][0] == "via %s dev %s" % (gateway, dev)

    # ps aux: the container's processes as ps inside lists them; the host's start with kthreadd & co.
    inside_ps = truth.ps(pid)
    assert tables["pid"]["processes"][1] == str(len(inside_ps)) == "1"
    ps_rows = [line.split(None, 2) for line in tables["pid"]["ps"][1].splitlines()[1:]]
    assert [(int(p), int(pp), cmd.split()[0]) for p, pp, cmd in ps_rows] == [(1, 0, "sleep")] == \
        [(p, pp, c) for p, pp, c in inside_ps]
    assert "[kthreadd]" in tables["pid"]["ps"][0] and int(tables["pid"]["processes"][0]) > 10
    assert not page.log.errors, page.log.errors


def test_namespace_details_show_what_it_sees(server, page, docker_client):
    run = _last_run(server, "hostname-ip-ps")
    container = docker_client.containers.get(run["container"])
    inode = truth.ns_inode(container.attrs["State"]["Pid"], "uts")
    page.fill("#search", str(inode))
    page.wait_for_timeout(400)
    page.press("#search", "Enter")
    wait_js(page, "document.querySelector('#details .inside[data-state]')", 15, "the inside view in the details")
    rows = page.evaluate("""() => Object.fromEntries(Array.from(document.querySelectorAll(
        '#details .inside tr[data-label]')).map(tr => [tr.dataset.label, tr.querySelector('td').innerText]))""")
    assert rows["hostname"] == container.attrs["Config"]["Hostname"]
    page.click("#details button.inside-compare-host")
    tables = _wait_compare(page, "compare with the host's uts")
    assert tables["uts"]["hostname"] == [socket.gethostname(), container.attrs["Config"]["Hostname"]]


def test_compare_any_namespaces_of_one_type(server, page, docker_client):
    run = _last_run(server, "hostname-ip-ps")
    container = docker_client.containers.get(run["container"])
    pid = container.attrs["State"]["Pid"]
    inode = truth.ns_inode(pid, "ipc")
    page.select_option("#cmp-type", "ipc")
    box = "#cmp-choices input[value^='ipc:'][value*=':%d:']" % inode
    wait_js(page, "!!document.querySelector(\"%s\")" % box, 10, "the container's ipc namespace in the choices")
    page.check(box)
    checked = page.evaluate("Array.from(document.querySelectorAll('#cmp-choices input:checked')).map(i => i.value)")
    assert len(checked) == 2, checked            # the host's is checked by default
    page.click("#cmp-go")
    tables = _wait_compare(page, "the ipc comparison")
    inside = truth.ipcs(pid)
    assert tables["ipc"]["shared memory"][1].split(":")[0] == str(len(inside["shared_memory"]))
    assert tables["ipc"]["posix message queues"][1] == str(len(truth.nsenter(pid, "-m", "ls", "/dev/mqueue").split()))
    host = page.evaluate("document.querySelector('#cmp-result th[data-col=\"0\"] div').textContent")
    assert host == "host"


def test_join_session_shows_the_exec_sees_exactly_the_containers_view(server, page, docker_client):
    _run_demo(page, "exec-myapp", 180)
    run = _last_run(server, "exec-myapp")
    myapp = docker_client.containers.get(run["container"])
    pid = myapp.attrs["State"]["Pid"]
    join = wait_js(page, """() => { const li = Array.from(document.querySelectorAll('#joins-list li.join'))
        .find(li => li.dataset.container === '%s' && li.dataset.types.split(',').includes('pid'));
        return li && li.dataset.joinId; }""" % run["container"], 20, "the join session into myapp")
    page.click("#joins-list li.join[data-join-id='%s']" % join)
    wait_js(page, "!!document.querySelector('#details button.inside-join')", 10, "the join's inside section")
    same = page.evaluate("Array.from(document.querySelectorAll('#details .inside tr.same td:first-child')).map(td => td.textContent)")
    assert {"uts", "net", "pid"} <= set(same), same
    page.click("#details button.inside-join")
    tables = _wait_compare(page, "the join's side by side view")
    panel_shot(page, "inside-join-exec")
    for t in ("uts", "net", "pid"):
        for label, cells in tables[t].items():
            assert cells[0] == cells[1], (t, label, cells)       # the same namespace, the same view
    # ...and that view is the container's: what `docker exec myapp ps aux` printed, ps run inside now.
    ps_rows = [line.split(None, 2) for line in tables["pid"]["ps"][1].splitlines()[1:]]
    assert [(int(p), cmd) for p, _pp, cmd in ps_rows if int(p) == 1] == \
        [(1, " ".join(myapp.attrs["Config"]["Cmd"]))]
    assert {int(p) for p, _pp, _c in ps_rows} == {p for p, _pp, _c in truth.ps(pid)}
    assert re.search(r"^\s*1\s+\S+\s.*%s" % re.escape(" ".join(myapp.attrs["Config"]["Cmd"])), run["output"], re.M)
    assert tables["uts"]["hostname"][1] == myapp.attrs["Config"]["Hostname"]
    assert not page.log.errors, page.log.errors
