// Wires the dashboard together: server state, live graph, views, panels.
//
// First paint comes first: the graph JSON was requested by boot.js while this
// module and plotly.js were still loading; the overview is HTML and paints
// without Plotly; the graph, the timeline and the matrix wait for what they need.

import { $, fmtTime, toEpoch } from "./dom.js";
import { getJSON } from "./api.js";
import { isNamespaceEvent } from "./vocab.js";
import { GraphModel } from "./model.js";
import { GraphView, loadPlotly, plotlyLoaded } from "./graphview.js";
import { Filters } from "./filters.js";
import { MatrixPanel } from "./matrix.js";
import { Timeline, HistoryScrubber } from "./timeline.js";
import { DetailsPanel } from "./details.js";
import { DemoPanel } from "./demos.js";
import { LiveStream } from "./live.js";
import { StatusBar, sleep } from "./status.js";
import { Overview } from "./overview.js";
import { Toolbar } from "./toolbar.js";
import { Views } from "./views.js";
import { renderJoins } from "./joinslist.js";
import { parseState } from "./urlstate.js";
import { ComparePanel } from "./inside.js";

const MAX_METRICS = 10000;

// What tests and benchmarks read back: render times and, per namespace, when
// the kernel created it and when the page first painted it.
const metrics = { renders: 0, lastRenderMs: 0, firstRender: null, firstUseful: null, graphLoadedAt: null, rendered: [], eventArrivals: [], diffArrivals: [], renderLog: [], events: 0 };

const link = parseState(location.search);
const live = new GraphModel();
const filters = new Filters();
let historyAt = null;
let firstPaintDone;
const firstPaint = new Promise((resolve) => { firstPaintDone = resolve; });

const select = (kind, id) => views.select({ kind, id: String(id) });
const view = new GraphView($("graph"), { onSelect: (kind, id) => details.show(kind, id) });
const details = new DetailsPanel($("details"), { getModel: () => views.source || live, onShow: (kind, id) => pinSelection(kind, id), onFocus: select });
const timeline = new Timeline($("timeline"), { onSelect: (kind, ev) => details.show(kind, ev) });
const status = new StatusBar();
const compare = new ComparePanel($("compare"), { getModel: () => live });
const demos = new DemoPanel($("demos"), {
  onSelect: (kind, id) => details.show(kind, id),
  onNamespaces: (created, joined, run) => showDemoNamespaces(created, joined, run),
});
const overview = new Overview($("overview"), { onSelect: (name) => select("container", name), onChange: () => views.writeUrl() });
const matrix = new MatrixPanel($("matrix"), { onSelect: (kind, id) => (kind === "ns" ? details.show(kind, id) : kind === "container" || kind === "proc" ? select(kind, id) : null) });
const toolbar = new Toolbar({ filters, view, onSearchEnter: (kind, id) => details.show(kind, id), onChange: () => views.writeUrl() });

// Panels below the fold are not redrawn while nobody can see them.
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

const views = new Views({ graph: view, overview, matrix, details, toolbar, visible, urlExtras: () => ({ at: historyAt }) });
view.filters = filters;

window.nsgraph = { model: live, view, views, overview, matrix, metrics, filters, timeline, compare, ready: false, get shown() { return views.source || live; } };

onShow.set("matrix-panel", () => { if (views.matrixDirty) views.scheduleMatrix(true); });
// Work that can wait for an idle moment: a panel scrolled into view because the
// graph above it changed size must not hold up that graph's own render.
const whenIdle = (fn) => (window.requestIdleCallback ? requestIdleCallback(fn, { timeout: 1000 }) : setTimeout(fn, 100));
// The timeline: redrawn when it comes into view (if it changed), never drawn twice for
// nothing; its first draw happens once plotly.js is there (drawTimelineOnce).
onShow.set("timeline-panel", () => { if (window.nsgraph.ready && window.Plotly) whenIdle(() => timeline.maybeDraw(!timeline.ready)); });

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
  if (summary.joins.length || summary.joinsTouched || source !== "diff") renderJoins($("joins-list"), live, (kind, id) => details.show(kind, id));
  toolbar.updateGroups(live);
  compare.modelChanged();
  if (!views.view) views.start(live, link);
  else if (views.source === live) views.refresh();
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
    useful(views.view, paintedAt);
  }
  if (views.source !== live) return;
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

// The first frame that shows people what they came for (the overview or a graph).
function useful(what, paintedAt) {
  if (metrics.firstUseful) return;
  metrics.firstUseful = { view: what, sinceNavigation: paintedAt - performance.timeOrigin,
    sinceGraphLoaded: metrics.graphLoadedAt ? paintedAt - metrics.graphLoadedAt : null };
  firstPaintDone();
}

views.onOverviewDrawn = () => {
  metrics.overviewDraws = (metrics.overviewDraws || 0) + 1;
  requestAnimationFrame(() => setTimeout(() => {
    metrics.lastOverviewPaintedAt = performance.timeOrigin + performance.now();
    useful("overview", metrics.lastOverviewPaintedAt);
  }, 0));
};

// --- history -------------------------------------------------------------------

const scrubber = new HistoryScrubber({
  input: $("history"), label: $("history-label"), liveButton: $("history-live"),
  onPick: (t) => showHistory(t),
  onLive: () => showLive(),
});

async function showHistory(t) {
  historyAt = t;
  views.writeUrl();
  try {
    const { body } = await getJSON("/api/history/graph?at=" + encodeURIComponent(t.toFixed(3)));
    if (historyAt !== t) return;
    const past = new GraphModel({ ghostSeconds: 0 });
    past.loadFull(body);
    $("history-time").textContent = fmtTime(t);
    $("history-banner").hidden = false;
    $("conn").dataset.state = "history";
    $("conn").textContent = "history";
    views.setSource(past);
    banner("");
  } catch (err) {
    banner("cannot load the graph at " + fmtTime(t) + ": " + err.message);
  }
}

function showLive() {
  historyAt = null;
  $("history-banner").hidden = true;
  $("conn").dataset.state = "live";
  $("conn").textContent = "live";
  views.setSource(live);
  views.writeUrl();
}

$("history-back").addEventListener("click", () => scrubber.goLive());
window.nsgraph.scrubber = scrubber;

// Back and Forward walk through views and selections.
window.addEventListener("popstate", () => {
  const s = parseState(location.search);
  toolbar.restore(s);
  if (s.sel && (s.view === "focus" || !s.view)) {
    views.select(s.sel, { push: false });
    views.expand = s.expand;
    views.refresh(true);
  } else {
    views.sel = null;
    views.show(s.view || views.defaultView());
  }
  if (s.at !== null && s.at !== historyAt) scrubber.show(s.at);
  else if (s.at === null && historyAt !== null) scrubber.goLive();
});

// --- start-up ------------------------------------------------------------------

// boot.js asked for the graph before the modules loaded; its answer (or null
// when the server was still starting) saves a round trip and the wait.
async function earlyGraph() {
  const early = window.nsgraphEarly;
  if (!early) return null;
  try {
    return await early;
  } catch (err) {
    return null;
  }
}

async function startStream(preloaded) {
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
      if (views.source && views.source !== live) return;
      $("conn").dataset.state = state;
      $("conn").textContent = state;
    },
  });
  window.nsgraph.stream = stream;
  for (let attempt = 0; ; attempt++) {
    try {
      await stream.start(attempt === 0 ? preloaded : null);
      return;
    } catch (err) {
      if (err.status === 401 || err.status === 403) { banner(err.message); throw err; }
      banner("loading the graph failed (" + err.message + "); retrying…");
      stream.close();
      await sleep(Math.min(5000, 500 * (attempt + 1)));
    }
  }
}

async function waitForServer() {
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
}

async function boot() {
  toolbar.restore(link);
  overview.setControls({ sort: link.sort, desc: link.desc, text: link.find, state: link.state, share: link.share });
  const preloaded = await earlyGraph();
  if (!preloaded) await waitForServer();
  await startStream(preloaded);
  banner("");
  if (link.at !== null) scrubber.show(link.at);
  // Everything else waits for the first useful frame: it is what people came for.
  await Promise.race([firstPaint, sleep(3000)]);
  loadPlotly();          // for the timeline and the next graph, now that the first frame is out
  window.nsgraph.ready = true;
  status.startPolling();
  demos.load();
  const events = getJSON("/api/events?limit=500").then(({ body }) => {
    for (const ev of body.events) timeline.add(ev);
    const span = timeline.span();
    if (span) scrubber.setStart(span[0]);
  }).catch((err) => console.warn("no event history:", err.message));
  // The timeline's first draw is also plotly.js's first use on the page (its one-time
  // set-up): done in an idle moment now, not when someone opens a graph.
  Promise.all([events, plotlyLoaded()]).then(() => whenIdle(() => timeline.maybeDraw(true)))
    .catch((err) => console.error(err.message));
  setInterval(() => { if (window.Plotly && visible("timeline-panel")) timeline.maybeDraw(); }, 1000);
  setInterval(() => { if (live.expireGhosts() && views.source === live) views.refresh(); }, 2000);
}

boot().catch((err) => {
  console.error(err);
  $("starting").hidden = true;
  banner(err.message);
});
