// Wires the dashboard together: server state, live graph, views, panels.

import { $, el, clear, fmtTime, toEpoch } from "./dom.js";
import { getJSON } from "./api.js";
import { typeColor } from "./colors.js";
import { NS_TYPES, isNamespaceEvent } from "./vocab.js";
import { GraphModel } from "./model.js";
import { GraphView } from "./graphview.js";
import { Filters } from "./filters.js";
import { renderMatrix } from "./matrix.js";
import { Timeline, HistoryScrubber } from "./timeline.js";
import { DetailsPanel } from "./details.js";
import { DemoPanel } from "./demos.js";
import { LiveStream } from "./live.js";
import { StatusBar, sleep } from "./status.js";
import { ComparePanel } from "./inside.js";

const MAX_METRICS = 10000;

// What tests and benchmarks read back: render times and, per namespace, when
// the kernel created it and when the page first painted it.
const metrics = { renders: 0, lastRenderMs: 0, firstRender: null, graphLoadedAt: null, rendered: [], eventArrivals: [], diffArrivals: [], renderLog: [], events: 0 };

const live = new GraphModel();
let firstPaintDone;
const firstPaint = new Promise((resolve) => { firstPaintDone = resolve; });
const filters = new Filters();
let shownModel = live;
let historyAt = null;

const view = new GraphView($("graph"), { onSelect: (kind, id) => details.show(kind, id) });
const details = new DetailsPanel($("details"), { getModel: () => shownModel, onShow: (kind, id) => pinSelection(kind, id) });
const timeline = new Timeline($("timeline"), { onSelect: (kind, ev) => details.show(kind, ev) });
const status = new StatusBar();
const compare = new ComparePanel($("compare"), { getModel: () => live });
const demos = new DemoPanel($("demos"), {
  onSelect: (kind, id) => details.show(kind, id),
  onNamespaces: (created, joined, run) => showDemoNamespaces(created, joined, run),
});

window.nsgraph = { model: live, view, metrics, filters, timeline, compare, ready: false, get shown() { return shownModel; } };

function banner(message) {
  const b = $("banner");
  b.textContent = message || "";
  b.hidden = !message;
}

function pinSelection(kind, id) {
  if (kind === "ns") view.pin([view.nodeKeyForNs(id)], "selected");
  else if (kind === "proc") view.pin([view.nodeKeyForPid(id)], "selected");
  else if (kind === "join") view.pin(["join:" + id], "selected");
  else view.pin([], "selected");
}

function showDemoNamespaces(created, joined, run) {
  // A namespace of a short-lived demo may be gone before the graph showed it:
  // keep it drawn (as ended) while the demo's result is on screen.
  for (const id of created.concat(joined)) live.addGhostFromId(id, {}, 300);
  const joins = ((run && run.joins) || []).map((id) => "join:" + id);
  view.pin(created.concat(joined).map((id) => view.nodeKeyForNs(id)).concat(joins), "demo");
  compare.offerRun(run, created);
  view.requestRender();
}

// --- applying changes --------------------------------------------------------

// Panels below the fold are not redrawn while nobody can see them: on a busy
// host their redraws would sit between a diff and the graph's next frame.
const onScreen = new Map();
const onShow = new Map();
const observer = new IntersectionObserver((entries) => {
  for (const e of entries) {
    onScreen.set(e.target.id, e.isIntersecting);
    if (e.isIntersecting && onShow.has(e.target.id)) onShow.get(e.target.id)();
  }
});
for (const id of ["matrix-panel", "timeline-panel"]) observer.observe($(id));
const visible = (id) => onScreen.get(id) !== false && !document.hidden;

let matrixTimer = null;
let matrixDirty = false;
function scheduleMatrix() {
  matrixDirty = true;
  if (matrixTimer || !visible("matrix-panel")) return;
  matrixTimer = setTimeout(() => {
    matrixTimer = null;
    matrixDirty = false;
    renderMatrix($("matrix"), shownModel, (kind, id) => details.show(kind, id)).catch((err) => console.error(err));
  }, 1500);
}
onShow.set("matrix-panel", () => { if (matrixDirty) scheduleMatrix(); });
onShow.set("timeline-panel", () => { if (window.nsgraph.ready) timeline.maybeDraw(true); });

function onApplied(summary, source) {
  $("c-version").textContent = String(live.version);
  if (live.node) $("node-name").textContent = live.node;
  status.setCounters(live.counters);
  if (source !== "full" || metrics.renders > 0) {
    view.flash(summary.added.map((id) => view.nodeKeyForNs(id)), "new");
    view.flash(summary.removed.map((id) => view.nodeKeyForNs(id)), "ended");
    const joinKeys = [];
    for (const jid of summary.joins) {
      joinKeys.push("join:" + jid);
      const j = live.joins.get(jid);
      if (j) for (const nid of Object.values(j.target || {})) joinKeys.push(view.nodeKeyForNs(nid));
    }
    view.flash(joinKeys, "joined");
  }
  // A session grows (types, command) after it first appears: redraw the list
  // on any change to a join, not only on new ones.
  if (summary.joins.length || summary.joinsTouched || source !== "diff") renderJoins();
  updateContainerFilter();
  compare.modelChanged();
  if (shownModel === live) {
    view.requestRender();
    scheduleMatrix();
  }
}

function renderJoins() {
  const list = clear($("joins-list"));
  const joins = Array.from(live.joins.values()).sort((a, b) => (b.start || 0) - (a.start || 0)).slice(0, 50);
  if (!joins.length) list.appendChild(el("li", { class: "muted small", text: "none yet (try the docker exec demo)" }));
  for (const j of joins) {
    const types = j.types || [];
    list.appendChild(el("li", {
      class: "join",
      dataset: { joinId: String(j.id), container: j.container || "", types: types.join(","),
        targets: Object.entries(j.target || {}).map(([t, id]) => t + "=" + id).join(" ") },
      onclick: () => details.show("join", String(j.id)),
    },
      el("div", null, el("b", { text: "#" + j.id + " " }), (j.comm || "?") + (j.pid ? " [" + j.pid + "]" : "") + " → " +
        (j.container ? "container " + j.container : joinTargetText(j))),
      el("div", { class: "types" }, types.map((t) => el("span", { style: { background: typeColor(t) }, text: t }))),
      el("div", { class: "small muted", text: (j.summary ? j.summary + " · " : j.command ? "ran `" + j.command + "` · " : "") + fmtTime(j.start) })));
  }
}

function joinTargetText(j) {
  const ids = Object.values(j.target || {});
  if (ids.length && ids.every((id) => live.isHostNs(id))) return "the host's namespaces";
  const ns = ids.map((id) => live.getNamespace(id)).find((n) => n && n.container);
  return ns ? "container " + ns.container : "namespaces of another process";
}

function updateContainerFilter() {
  const sel = $("f-container");
  const names = Array.from(live.containers.keys()).sort();
  const have = Array.from(sel.options).slice(3).map((o) => o.value);
  if (have.join("\n") === names.join("\n")) return;
  while (sel.options.length > 3) sel.remove(3);
  for (const n of names) sel.appendChild(el("option", { value: n, text: "container " + n }));
}

view.onRendered = ({ newNs, renderMs, buildMs, startedAt, drawnAt, paintedAt, nodes }) => {
  metrics.renders++;
  metrics.lastRenderMs = renderMs;
  metrics.nodes = nodes;
  metrics.lastPaintedAt = paintedAt;
  metrics.renderLog.push({ startedAt, buildMs, drawnAt, paintedAt, nodes });
  if (metrics.renderLog.length > 500) metrics.renderLog.splice(0, 100);
  if (!metrics.firstRender && metrics.graphLoadedAt) {
    metrics.firstRender = {
      renderMs, buildMs, nodes,
      queuedMs: startedAt - metrics.graphLoadedAt,      // graph parsed -> render started
      paintMs: paintedAt - drawnAt,                      // Plotly done -> frame painted
      sinceGraphLoaded: paintedAt - metrics.graphLoadedAt,
      sinceNavigation: paintedAt - performance.timeOrigin,
    };
  }
  firstPaintDone();
  if (shownModel !== live) return;
  const shown = paintedAt / 1000;
  for (const id of newNs) {
    const ns = live.namespaces.get(id);
    const created = ns && (ns.created ?? (ns.creator && ns.creator.ts));
    if (created === undefined || created === null) continue;
    metrics.rendered.push({ id, type: ns.type, inode: ns.inode, created: toEpoch(created), shown });
  }
  if (metrics.rendered.length > MAX_METRICS) metrics.rendered.splice(0, metrics.rendered.length - MAX_METRICS);
  const hits = view.searchHits || [];
  $("search-count").textContent = filters.search ? hits.length + " match" + (hits.length === 1 ? "" : "es") : "";
};

// --- history -------------------------------------------------------------------

const scrubber = new HistoryScrubber({
  input: $("history"), label: $("history-label"), liveButton: $("history-live"),
  onPick: (t) => showHistory(t),
  onLive: () => showLive(),
});

async function showHistory(t) {
  historyAt = t;
  try {
    const { body } = await getJSON("/api/history/graph?at=" + encodeURIComponent(t.toFixed(3)));
    if (historyAt !== t) return;
    const past = new GraphModel({ ghostSeconds: 0 });
    past.loadFull(body);
    shownModel = past;
    $("history-time").textContent = fmtTime(t);
    $("history-banner").hidden = false;
    $("conn").dataset.state = "history";
    $("conn").textContent = "history";
    view.setSource(past, filters);
    scheduleMatrix();
    banner("");
  } catch (err) {
    banner("cannot load the graph at " + fmtTime(t) + ": " + err.message);
  }
}

function showLive() {
  historyAt = null;
  shownModel = live;
  $("history-banner").hidden = true;
  $("conn").dataset.state = "live";
  $("conn").textContent = "live";
  view.setSource(live, filters);
  scheduleMatrix();
}

$("history-back").addEventListener("click", () => scrubber.goLive());
window.nsgraph.scrubber = scrubber;

// --- toolbar -------------------------------------------------------------------

function buildTypeFilters() {
  const box = $("type-filters");
  for (const t of NS_TYPES) {
    const cb = el("input", { type: "checkbox", checked: true, dataset: { type: t } });
    cb.checked = true;
    cb.addEventListener("change", () => {
      if (cb.checked) filters.types.add(t); else filters.types.delete(t);
      view.requestRender();
    });
    box.appendChild(el("label", null, cb, el("span", { class: "swatch", style: { background: typeColor(t) } }), t));
  }
}

function debounce(fn, ms) {
  let timer = null;
  return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
}

function wireToolbar() {
  buildTypeFilters();
  // ?collapse=N and ?q=TEXT make a view linkable (and let benchmarks draw every node).
  const params = new URLSearchParams(location.search);
  const collapse = Number(params.get("collapse"));
  if (Number.isFinite(collapse) && collapse >= 1) {
    view.collapseThreshold = collapse;
    $("f-collapse").value = String(collapse);
  }
  if (params.get("q")) {
    $("search").value = params.get("q");
    filters.search = params.get("q");
  }
  const apply = debounce(() => {
    filters.search = $("search").value.trim();
    filters.pid = $("f-pid").value.trim();
    filters.comm = $("f-comm").value.trim();
    filters.container = $("f-container").value;
    const n = Number($("f-collapse").value);
    if (Number.isFinite(n) && n >= 1) view.collapseThreshold = n;
    view.requestRender();
  }, 150);
  for (const id of ["search", "f-pid", "f-comm", "f-collapse"]) $(id).addEventListener("input", apply);
  $("f-container").addEventListener("change", apply);
  $("search").addEventListener("keydown", (e) => {
    if (e.key !== "Enter") return;
    const hit = (view.searchHits || [])[0];
    if (!hit) return;
    const [kind, ...rest] = hit.split(":");
    if (kind === "ns") details.show("ns", rest.join(":"));
    else if (kind === "proc") details.show("proc", rest.join(":"));
  });
  $("collapse-all").addEventListener("click", () => view.collapseAll());
  $("relayout").addEventListener("click", () => view.relayoutFromScratch());
  $("export-png").addEventListener("click", () => {
    Plotly.downloadImage($("graph"), { format: "png", filename: "nsgraph", width: $("graph").clientWidth * 2, height: $("graph").clientHeight * 2 });
  });
}

// --- start-up ------------------------------------------------------------------

async function waitForPlotly() {
  for (let i = 0; !window.Plotly; i++) {
    if (i > 200) throw new Error("plotly.js did not load from /static/vendor/plotly.min.js");
    await sleep(25);
  }
}

async function boot() {
  wireToolbar();
  await waitForPlotly();
  const overlay = $("starting");
  await status.waitUntilRunning((st) => {
    overlay.hidden = false;
    if (st.state === "error") {
      $("starting-title").textContent = "nsgraph could not start";
      $("starting-text").textContent = st.progress || st.error || "see the terminal of `nsgraph serve`";
    } else if (st.state === "unreachable") {
      $("starting-title").textContent = "waiting for the nsgraph server…";
      $("starting-text").textContent = st.progress || "";
    } else {
      $("starting-title").textContent = "nsgraph is starting…";
      $("starting-text").textContent = st.progress || "";
    }
  });
  overlay.hidden = true;
  view.setSource(live, filters);
  const stream = new LiveStream({
    model: live,
    onApplied: (summary, source) => {
      if (source === "full" && !metrics.graphLoadedAt) metrics.graphLoadedAt = performance.timeOrigin + performance.now();
      onApplied(summary, source);
    },
    onEvent: (ev) => {
      metrics.events++;
      if (isNamespaceEvent(ev)) {
        // Kernel timestamp vs arrival in the page, for the latency benchmark.
        metrics.eventArrivals.push({ kind: ev.kind, pid: ev.pid, ts: toEpoch(ev.ts), arrived: (performance.timeOrigin + performance.now()) / 1000 });
        if (metrics.eventArrivals.length > MAX_METRICS) metrics.eventArrivals.splice(0, 1000);
      }
      if (timeline.add(ev)) scrubber.setStart(toEpoch(ev.ts));
    },
    onDiffArrived: (diff) => {
      const arrived = (performance.timeOrigin + performance.now()) / 1000;
      for (const c of diff.changes || []) {
        if (c && c.op === "add" && c.entity === "namespace" && c.data) {
          metrics.diffArrivals.push({ id: c.id, type: c.data.type, inode: c.data.inode, created: c.data.created ? toEpoch(c.data.created) : null, arrived });
        }
      }
      if (metrics.diffArrivals.length > MAX_METRICS) metrics.diffArrivals.splice(0, 1000);
    },
    onStatus: (st) => status.update(st),
    onDemo: (run) => demos.update(run),
    onConnection: (state) => {
      if (shownModel !== live) return;
      $("conn").dataset.state = state;
      $("conn").textContent = state;
    },
  });
  window.nsgraph.stream = stream;
  for (let attempt = 0; ; attempt++) {
    try {
      await stream.start();
      break;
    } catch (err) {
      if (err.status === 401 || err.status === 403) { banner(err.message); throw err; }
      banner("loading the graph failed (" + err.message + "); retrying…");
      stream.close();
      await sleep(Math.min(5000, 500 * (attempt + 1)));
    }
  }
  banner("");
  // Everything else waits for the graph's first frame: it is what people came for.
  await Promise.race([firstPaint, sleep(3000)]);
  window.nsgraph.ready = true;
  status.startPolling();
  demos.load();
  getJSON("/api/events?limit=500").then(({ body }) => {
    const list = body.events;
    for (const ev of list) timeline.add(ev);
    const span = timeline.span();
    if (span) scrubber.setStart(span[0]);
    timeline.maybeDraw(true);
  }).catch((err) => console.warn("no event history:", err.message));
  setInterval(() => { if (visible("timeline-panel")) timeline.maybeDraw(); }, 1000);
  setInterval(() => { if (live.expireGhosts() && shownModel === live) view.requestRender(); }, 2000);
  timeline.maybeDraw(true);
}

boot().catch((err) => {
  console.error(err);
  $("starting").hidden = true;
  banner(err.message);
});
