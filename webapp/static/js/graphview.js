// The namespace graph, drawn with Plotly.
//
// Plotly's WebGL traces (scattergl) compile shaders with `new Function`, which
// the strict CSP (script-src 'self', no 'unsafe-eval') forbids, and headless or
// VM browsers often have no WebGL at all.  So this uses SVG scatter traces and
// keeps them cheap instead: one trace per namespace type, one path per edge
// kind (null-separated segments), processes with identical namespace sets
// collapsed into one counted node, and at most one Plotly.react per animation
// frame (spaced by the last render's cost on big graphs).  Highlight rings are
// layout shapes, so fading them is a relayout that leaves the data alone.

import { NS_TYPES, typeColor, HIGHLIGHT_COLORS, PROCESS_COLOR, JOIN_COLOR } from "./colors.js";
import { LayoutMemory, COLUMNS, columnOf } from "./layout.js";
import { namespaceSearchText, processSearchText } from "./filters.js";

const EDGE_STYLES = {
  membership: { color: "rgba(120,120,120,0.35)", width: 1, dash: "solid", name: "membership" },
  ownership: { color: "rgba(140,86,75,0.7)", width: 1.2, dash: "dot", name: "owner (user ns)" },
  hierarchy: { color: "rgba(20,20,20,0.8)", width: 2, dash: "solid", name: "parent (pid/user ns)" },
  join: { color: "rgba(255,140,0,0.9)", width: 2.5, dash: "solid", name: "join (setns)" },
};

const RING_MS = { new: 6000, joined: 8000, ended: 6000 };
const MAX_JOINS_SHOWN = 12;
const ENDED_LIMIT = 4;
const MAX_ROWS_SHOWN = 36;
const GUTTER = 1.9;          // x units left of the first column for band labels
const MAX_ANNOTATIONS = 400;

function shortSig(proc) {
  return NS_TYPES.map((t) => (proc.ns && proc.ns[t]) || "").join("|");
}

function now() {
  return performance.timeOrigin + performance.now();
}

// Two short lines for the gutter left of the columns: name, then what it is.
function groupLabel(group, model) {
  const cut = (t, n) => (t.length > n ? t.slice(0, n - 1) + "…" : t);
  if (group === "host") return "<b>host</b><br>" + escapeSvgText(cut(model.node || "", 18));
  if (group === "other") return "<b>other</b><br>unshare, nsenter,<br>sandboxes…";
  const name = group.slice(2);
  const c = model.containers.get(name);
  return "<b>" + escapeSvgText(cut(name, 18)) + "</b><br>container" + (c && c.image ? " · " + escapeSvgText(cut(c.image, 14)) : "");
}

function bandColor(group) {
  if (group === "host") return "rgba(200,200,200,0.18)";
  if (group === "other") return "rgba(255,220,120,0.16)";
  return "rgba(80,150,255,0.10)";
}

export class GraphView {
  constructor(div, { onSelect, collapseThreshold = 8, labelLimit = 300 } = {}) {
    this.div = div;
    this.onSelect = onSelect || (() => {});
    this.collapseThreshold = collapseThreshold;
    this.labelLimit = labelLimit;
    this.layout = new LayoutMemory();
    this.expanded = new Set();       // collapsed-node keys the user opened
    this.rings = new Map();          // node key -> {kind, start, ms (0 = pinned)}
    this.pinned = new Map();         // node key -> kind, rings that do not fade (demo, selection)
    this.pos = new Map();
    this.procNode = new Map();       // pid -> node key (a collapsed node or the process)
    this.bandShapes = [];
    this.model = null;
    this.filters = null;
    this.pending = false;
    this.rendering = false;
    this.lastRenderMs = 0;
    this.lastRenderEnd = 0;
    this.renderCount = 0;
    this.shownNs = new Set();
    this.onRendered = null;          // callback(info) after each render reached the screen
    this.ringTimer = null;
    this.initialised = false;
  }

  setSource(model, filters) {
    this.model = model;
    this.filters = filters;
    this.requestRender();
  }

  relayoutFromScratch() {
    this.layout.compact();
    this.requestRender();
  }

  // Coalesce any number of model changes into one render per frame, spaced by
  // what the previous render cost so a 5 000-node graph is not re-drawn more
  // often than it can be.
  requestRender() {
    if (this.pending) return;
    this.pending = true;
    // Small pictures render at once; big ones leave the main thread half the
    // time for hovering, zooming and the other panels.
    const gap = this.lastNodes > 1500 ? Math.min(1000, this.lastRenderMs / 2) : 0;
    const wait = Math.max(0, this.lastRenderEnd + gap - now());
    // A timeout, not a frame callback: Plotly draws the SVG synchronously and
    // the browser paints it in the next frame anyway; waiting for a frame first
    // would add one to every update.
    setTimeout(() => this._render(), wait > 4 ? wait : 0);
  }

  async _render() {
    if (this.rendering) {
      // A render is running: try again right after it.
      this.pending = false;
      setTimeout(() => this.requestRender(), 16);
      return;
    }
    this.pending = false;
    if (!this.model || this.model.version < 0) return;
    this.rendering = true;
    const t0 = now();
    try {
      const fig = this.buildFigure();
      const built = now();
      // On a busy host most diffs only change a collapsed node's count or a
      // hover text (forks and exits of host processes).  Those wait for a lazy
      // refresh; anything that moves, adds or removes a node is drawn now.
      const sig = figureSignature(fig);
      if (this.initialised && sig === this.lastSig && !this.forceNext) {
        if (!this.lazyTimer) {
          this.lazyTimer = setTimeout(() => { this.lazyTimer = null; this.forceNext = true; this.requestRender(); }, 1500);
        }
        this.rendering = false;
        return;
      }
      this.forceNext = false;
      this.lastSig = sig;
      if (!this.initialised) {
        await Plotly.newPlot(this.div, fig.data, fig.layout, fig.config);
        this.div.on("plotly_click", (ev) => this._click(ev));
        this.initialised = true;
      } else {
        await Plotly.react(this.div, fig.data, fig.layout, fig.config);
      }
      const drawn = now();
      this.lastRenderMs = drawn - t0;
      this.lastNodes = fig.nodeCount;
      this.renderCount++;
      const newNs = [];
      for (const id of fig.nsIds) if (!this.shownNs.has(id)) newNs.push(id);
      this.shownNs = fig.nsIds;
      // Report once the frame with the new picture has been painted.
      requestAnimationFrame(() => setTimeout(() => {
        this.lastRenderEnd = now();
        if (this.onRendered) {
          this.onRendered({ newNs, renderMs: this.lastRenderMs, buildMs: built - t0, startedAt: t0, drawnAt: drawn, paintedAt: now(), nodes: fig.nodeCount });
        }
      }, 0));
    } catch (err) {
      console.error("graph render failed", err);
      this.lastRenderEnd = now();
    } finally {
      this.rendering = false;
    }
  }

  _click(ev) {
    const pt = ev && ev.points && ev.points[0];
    if (!pt || typeof pt.customdata !== "string") return;
    const [kind, ...rest] = pt.customdata.split("|");
    const id = rest.join("|");
    if (kind === "coll" || kind === "end") {
      this.expanded.add(kind === "end" ? "end|" + id : id);
      this.requestRender();
      return;
    }
    this.onSelect(kind, id);
  }

  collapseAll() {
    this.expanded.clear();
    this.requestRender();
  }

  // --- highlights --------------------------------------------------------

  nodeKeyForNs(id) { return "ns:" + id; }

  nodeKeyForPid(pid) { return this.procNode.get(Number(pid)) || this.procNode.get(String(pid)) || "proc:" + pid; }

  flash(keys, kind) {
    const start = now();
    for (const key of keys) this.rings.set(key, { kind, start, ms: RING_MS[kind] || 6000 });
    this._scheduleRings();
  }

  pin(keys, kind) {
    for (const [key, k] of this.pinned) if (k === kind) this.pinned.delete(key);
    for (const key of keys) this.pinned.set(key, kind);
    this._drawRings();
  }

  _scheduleRings() {
    if (this.ringTimer) return;
    this.ringTimer = setInterval(() => {
      const t = now();
      for (const [key, r] of this.rings) if (t - r.start > r.ms) this.rings.delete(key);
      this._drawRings();
      if (this.rings.size === 0) { clearInterval(this.ringTimer); this.ringTimer = null; }
    }, 250);
  }

  _ringShapes() {
    const shapes = [];
    const t = now();
    const add = (key, kind, opacity, size) => {
      const p = this.pos.get(key);
      if (!p) return;
      shapes.push({
        type: "circle", xref: "x", yref: "y", xsizemode: "pixel", ysizemode: "pixel",
        xanchor: p.x, yanchor: p.y, x0: -size, x1: size, y0: -size, y1: size,
        line: { color: HIGHLIGHT_COLORS[kind] || "#000", width: 3 }, opacity, layer: "above",
      });
    };
    for (const [key, kind] of this.pinned) add(key, kind, 0.9, kind === "selected" ? 11 : 13);
    for (const [key, r] of this.rings) {
      const age = (t - r.start) / r.ms;
      add(key, r.kind, Math.max(0.05, 1 - age), 10 + 8 * Math.min(1, age * 3));
    }
    return shapes;
  }

  _drawRings() {
    if (!this.initialised || this.rendering) return;
    Plotly.relayout(this.div, { shapes: this.bandShapes.concat(this._ringShapes()) }).catch(() => {});
  }

  // --- figure ----------------------------------------------------------------

  buildFigure() {
    const model = this.model;
    const f = this.filters;
    const items = [];
    let nsList = [];
    const procFilter = f && f.processFilter;

    // Processes first: with a pid/comm filter, they decide which namespaces show.
    const related = procFilter ? new Set() : null;
    const procGroups = new Map();   // group|sig -> [proc]
    for (const proc of model.processes.values()) {
      if (procFilter && !f.processMatches(proc)) continue;
      const group = model.groupOfProcess(proc);
      if (f && !f.groupShown(group)) continue;
      const key = group + "|" + shortSig(proc);
      let list = procGroups.get(key);
      if (!list) procGroups.set(key, (list = []));
      list.push(proc);
      if (related) for (const id of Object.values(proc.ns || {})) related.add(id);
    }

    for (const ns of model.allNamespaces()) {
      if (f && !f.typeShown(ns.type)) continue;
      const group = model.groupOfNamespace(ns);
      if (f && !f.groupShown(group)) continue;
      if (related && !related.has(ns.id)) continue;
      nsList.push(ns);
    }
    nsList.sort((a, b) => (a.created || 0) - (b.created || 0) || (a.id < b.id ? -1 : 1));
    // Ended namespaces stay drawn for a while as context; on a busy host
    // (test suites, CI) they pile up, so beyond a few per cell they become one
    // counted node.  Pinned ones (a demo's, the selection) stay individual.
    const endedCells = new Map();
    for (const ns of nsList) {
      if (ns.alive !== false || this.pinned.has("ns:" + ns.id)) continue;
      const key = model.groupOfNamespace(ns) + "|" + ns.type;
      let list = endedCells.get(key);
      if (!list) endedCells.set(key, (list = []));
      list.push(ns);
    }
    const endedNodes = [];
    const folded = new Set();
    for (const [key, list] of endedCells) {
      if (list.length <= ENDED_LIMIT || this.expanded.has("end|" + key)) continue;
      for (const ns of list) folded.add(ns.id);
      endedNodes.push({ key: "endc:" + key, cell: key, group: key.slice(0, key.lastIndexOf("|")), type: list[0].type, list });
    }
    if (folded.size) nsList = nsList.filter((ns) => !folded.has(ns.id));
    for (const ns of nsList) items.push({ id: "ns:" + ns.id, group: model.groupOfNamespace(ns), column: columnOf(ns.type) });
    for (const en of endedNodes) items.push({ id: en.key, group: en.group, column: columnOf(en.type) });

    const procNodes = [];   // {key, group, procs, collapsed}
    this.procNode = new Map();
    const sortedKeys = Array.from(procGroups.keys()).sort();
    for (const key of sortedKeys) {
      const procs = procGroups.get(key).sort((a, b) => a.pid - b.pid);
      const group = key.slice(0, key.indexOf("|"));
      const limit = procFilter ? 200 : this.collapseThreshold;
      if (procs.length > limit && !this.expanded.has(key)) {
        const nodeKey = "coll:" + key;
        procNodes.push({ key: nodeKey, group, procs, collapsed: true, collKey: key, sigKey: key });
        for (const p of procs) this.procNode.set(p.pid, nodeKey);
      } else {
        for (const p of procs) {
          const nodeKey = "proc:" + p.pid;
          procNodes.push({ key: nodeKey, group, procs: [p], collapsed: false, sigKey: key });
          this.procNode.set(p.pid, nodeKey);
        }
      }
    }
    for (const pn of procNodes) items.push({ id: pn.key, group: pn.group, column: "proc" });

    // Joins back into the host's own namespaces (dockerd and runc do that all
    // the time while wiring up networks) are listed, not drawn.
    const joins = Array.from(model.joins.values())
      .filter((j) => Object.values(j.target || {}).some((id) => !model.isHostNs(id)))
      .sort((a, b) => (b.start || 0) - (a.start || 0)).slice(0, MAX_JOINS_SHOWN).reverse();
    const joinGroups = [];
    for (const j of joins) {
      let group = j.container ? "c:" + j.container : null;
      if (!group) {
        const target = Object.values(j.target || {}).map((id) => model.getNamespace(id)).find((n) => n && !model.isHostNs(n.id));
        group = target ? model.groupOfNamespace(target) : "other";
      }
      if (f && !f.groupShown(group)) continue;
      if (!items.some((it) => it.group === group) && group !== "other") continue;
      items.push({ id: "join:" + j.id, group, column: "join" });
      joinGroups.push(j);
    }

    const { pos, bands, height } = this.layout.place(items);
    this.pos = pos;

    const search = f && f.search ? f : null;
    const searchHits = [];
    const endedHits = [];     // listed after the live ones: Enter opens a live match first
    const edges = { membership: [[], []], ownership: [[], []], hierarchy: [[], []], join: [[], []] };
    const addEdge = (kind, a, b) => {
      const pa = pos.get(a); const pb = pos.get(b);
      if (!pa || !pb) return;
      const e = edges[kind];
      e[0].push(pa.x, pb.x, null);
      e[1].push(pa.y, pb.y, null);
    };

    // Namespace nodes, one trace per type (the legend doubles as a type toggle).
    const perType = new Map();
    const nsIds = new Set();
    for (const ns of nsList) {
      let t = perType.get(ns.type);
      if (!t) perType.set(ns.type, (t = { x: [], y: [], text: [], custom: [], symbol: [], opacity: [] }));
      const p = pos.get("ns:" + ns.id);
      t.x.push(p.x); t.y.push(p.y);
      t.custom.push("ns|" + ns.id);
      t.symbol.push(ns.alive === false ? "circle-open" : "circle");
      const hit = search && search.searchMatches(namespaceSearchText(ns));
      if (hit) (ns.alive === false ? endedHits : searchHits).push("ns:" + ns.id);
      t.opacity.push(search && !hit ? 0.2 : 1);
      t.text.push(nsHover(ns, model));
      nsIds.add(ns.id);
      if (ns.owner_id && !model.isHostNs(ns.owner_id)) addEdge("ownership", "ns:" + ns.id, "ns:" + ns.owner_id);
      if (ns.parent_id) addEdge("hierarchy", "ns:" + ns.id, "ns:" + ns.parent_id);
    }

    const proc = { x: [], y: [], text: [], custom: [], opacity: [], label: [] };
    const hubs = new Map();
    const coll = { x: [], y: [], text: [], custom: [], opacity: [], label: [] };
    for (const pn of procNodes) {
      const p = pos.get(pn.key);
      const t = pn.collapsed ? coll : proc;
      t.x.push(p.x); t.y.push(p.y);
      const first = pn.procs[0];
      let hit = false;
      if (search) hit = pn.procs.some((pr) => search.searchMatches(processSearchText(pr)));
      if (hit) searchHits.push(pn.key);
      t.opacity.push(search && !hit ? 0.2 : 1);
      if (pn.collapsed) {
        t.custom.push("coll|" + pn.collKey);
        t.label.push(pn.procs.length + " processes");
        t.text.push(collHover(pn.procs));
      } else {
        t.custom.push("proc|" + first.pid);
        t.label.push(String(first.comm || first.pid).slice(0, 7));
        t.text.push(procHover(first));
      }
      // Membership: to every namespace of the set that is not the host's (host
      // members are drawn once, through their collapsed node).  Expanded
      // processes of one set hang off the set's first node: one short edge each
      // instead of one per namespace - edges are what an SVG plot pays for most.
      const hostOnly = pn.group === "host";
      if (hostOnly && !pn.collapsed) continue;
      const hub = hubs.get(pn.sigKey);
      if (hub && hub !== pn.key) {
        addEdge("membership", pn.key, hub);
        continue;
      }
      hubs.set(pn.sigKey, pn.key);
      for (const [type, id] of Object.entries(first.ns || {})) {
        if (type.endsWith("_for_children") || !id) continue;
        if (model.isHostNs(id) && !(hostOnly && pn.collapsed)) continue;
        addEdge("membership", pn.key, "ns:" + id);
      }
    }

    const jn = { x: [], y: [], text: [], custom: [], label: [] };
    for (const j of joinGroups) {
      const p = pos.get("join:" + j.id);
      jn.x.push(p.x); jn.y.push(p.y);
      jn.custom.push("join|" + j.id);
      jn.label.push("join " + (j.types || []).length);
      jn.text.push(joinHover(j));
      for (const id of Object.values(j.target || {})) if (!model.isHostNs(id)) addEdge("join", "join:" + j.id, "ns:" + id);
      const pk = this.procNode.get(j.exec_pid) || this.procNode.get(j.pid);
      if (pk) addEdge("join", "join:" + j.id, pk);
    }

    const data = [];
    for (const kind of ["membership", "ownership", "hierarchy", "join"]) {
      const st = EDGE_STYLES[kind];
      data.push({
        type: "scatter", mode: "lines", uid: "edge-" + kind, name: st.name,
        x: edges[kind][0], y: edges[kind][1], hoverinfo: "skip",
        line: { color: st.color, width: st.width, dash: st.dash },
      });
    }
    const total = items.length;
    // Text is what makes SVG slow and cluttered: name single processes only on small pictures.
    const withLabels = total <= this.labelLimit && proc.x.length <= 40;
    for (const type of NS_TYPES) {
      const t = perType.get(type) || { x: [], y: [], text: [], custom: [], symbol: [], opacity: [] };
      data.push({
        type: "scatter", mode: "markers", uid: "ns-" + type, name: type + " ns (" + t.x.length + ")",
        x: t.x, y: t.y, customdata: t.custom, hovertext: t.text, hoverinfo: "text",
        marker: { size: 13, color: typeColor(type), symbol: t.symbol, opacity: t.opacity, line: { width: 1.5, color: typeColor(type) } },
      });
    }
    data.push({
      type: "scatter", mode: withLabels ? "markers+text" : "markers", uid: "procs", name: "process",
      x: proc.x, y: proc.y, customdata: proc.custom, hovertext: proc.text, hoverinfo: "text",
      text: withLabels ? proc.label : undefined, textposition: "bottom center", textfont: { size: 8, color: "#444" },
      marker: { size: 8, symbol: "square", color: PROCESS_COLOR, opacity: proc.opacity },
    });
    data.push({
      type: "scatter", mode: "markers+text", uid: "collapsed", name: "processes (collapsed; click)",
      x: coll.x, y: coll.y, customdata: coll.custom, hovertext: coll.text, hoverinfo: "text",
      text: coll.label, textposition: "middle right", textfont: { size: 10, color: "#222" },
      marker: { size: 16, symbol: "square", color: "#9ca3af", line: { width: 1.5, color: "#374151" }, opacity: coll.opacity },
    });
    const en = { x: [], y: [], text: [], custom: [], label: [], color: [] };
    for (const e of endedNodes) {
      const p = pos.get(e.key);
      en.x.push(p.x); en.y.push(p.y);
      en.custom.push("end|" + e.cell);
      en.label.push(e.list.length + " ended");
      en.color.push(typeColor(e.type));
      en.text.push("<b>" + e.list.length + " ended " + escapeSvgText(e.type) + " namespaces</b><br>kept for a moment after they ended<br><i>click to expand</i>");
    }
    data.push({
      type: "scatter", mode: "markers+text", uid: "ended", name: "ended (collapsed; click)",
      x: en.x, y: en.y, customdata: en.custom, hovertext: en.text, hoverinfo: "text",
      text: en.label, textposition: "bottom center", textfont: { size: 9, color: "#666" },
      marker: { size: 15, symbol: "circle-open-dot", color: en.color, line: { width: 2 } },
    });
    data.push({
      type: "scatter", mode: "markers+text", uid: "joins", name: "join session",
      x: jn.x, y: jn.y, customdata: jn.custom, hovertext: jn.text, hoverinfo: "text",
      text: jn.label, textposition: "middle right", textfont: { size: 9, color: "#b35900" },
      marker: { size: 15, symbol: "diamond", color: JOIN_COLOR, line: { width: 1, color: "#7a3d00" } },
    });

    // Bands and their labels are traces, not layout shapes/annotations: one SVG
    // path per band colour and one text trace cost far less than 2 x 200 items.
    this.bandShapes = [];
    const bandFill = new Map();
    const labels = { x: [], y: [], text: [], color: [] };
    const x0 = -GUTTER, x1 = COLUMNS.join.x + 1.4;
    for (const b of bands) {
      const kind = b.group === "host" ? "host" : b.group === "other" ? "other" : "container";
      let f = bandFill.get(kind);
      if (!f) bandFill.set(kind, (f = { x: [], y: [] }));
      f.x.push(x0, x1, x1, x0, x0, null);
      f.y.push(b.y1, b.y1, b.y0, b.y0, b.y1, null);
      if (labels.x.length < MAX_ANNOTATIONS) {
        labels.x.push(-GUTTER + 0.05);
        labels.y.push(b.y0 - 0.05);
        labels.text.push(groupLabel(b.group, model));
        labels.color.push(kind === "container" ? "#1d4ed8" : "#555");
      }
    }
    const bandTraces = ["host", "other", "container"].map((kind) => {
      const f = bandFill.get(kind) || { x: [], y: [] };
      return {
        type: "scatter", mode: "lines", uid: "band-" + kind, x: f.x, y: f.y, fill: "toself",
        fillcolor: bandColor(kind === "container" ? "c:" : kind), hoverinfo: "skip", showlegend: false,
        line: { width: kind === "container" ? 1 : 0, color: "rgba(80,150,255,0.5)" },
      };
    });
    bandTraces.push({
      type: "scatter", mode: "text", uid: "band-labels", x: labels.x, y: labels.y, text: labels.text,
      textposition: "bottom right", textfont: { size: 10, color: labels.color }, hoverinfo: "skip", showlegend: false,
    });
    data.unshift(...bandTraces);
    const annotations = [];
    searchHits.push(...endedHits);
    this.searchHits = searchHits;
    if (search) for (const k of searchHits.slice(0, 200)) this.pinned.set(k, "search");
    else for (const [k, kind] of this.pinned) if (kind === "search") this.pinned.delete(k);

    const tickvals = NS_TYPES.map((t) => COLUMNS[t].x + 0.3).concat([COLUMNS.proc.x + 0.9, COLUMNS.join.x + 0.45]);
    const ticktext = NS_TYPES.concat(["processes", "joins"]);
    const layout = {
      uirevision: "graph",
      margin: { l: 10, r: 10, t: 60, b: 10 },
      // The legend is HTML under the plot: Plotly's costs a text measurement
      // per entry on every update.
      showlegend: false,
      hovermode: "closest",
      dragmode: "pan",
      xaxis: {
        range: [-GUTTER - 0.05, COLUMNS.join.x + 1.5], side: "top", tickvals, ticktext, showgrid: false, zeroline: false,
        fixedrange: false, tickfont: { size: 11 },
      },
      // A busy host's picture is taller than the panel: start at the top with a
      // readable row height and let people pan down (drag) or zoom out (wheel).
      yaxis: { range: [-Math.min(Math.max(height, 8), MAX_ROWS_SHOWN), 1.2], showticklabels: false, showgrid: false, zeroline: false },
      shapes: this.bandShapes.concat(this._ringShapes()),
      annotations,
      plot_bgcolor: "#ffffff",
      paper_bgcolor: "#ffffff",
    };
    const config = {
      responsive: true, displaylogo: false, scrollZoom: true,
      modeBarButtonsToRemove: ["select2d", "lasso2d", "autoScale2d"],
      toImageButtonOptions: { filename: "nsgraph", scale: 2 },
    };
    return { data, layout, config, nsIds, nodeCount: total };
  }
}

// What a render would change on screen, leaving out collapsed counts and
// hover texts.
function figureSignature(fig) {
  const parts = [];
  for (const t of fig.data) {
    if (t.uid === "collapsed") { parts.push(t.uid, t.x.length, t.x.join(","), t.y.join(",")); continue; }
    parts.push(t.uid, t.x.length, t.x.join(","), t.y.join(","));
    if (t.marker && Array.isArray(t.marker.symbol)) parts.push(t.marker.symbol.join(","));
    if (t.marker && Array.isArray(t.marker.opacity)) parts.push(t.marker.opacity.join(","));
    if (Array.isArray(t.text) && t.uid !== "collapsed") parts.push(t.text.join("\u0001"));
  }
  parts.push(fig.layout.yaxis.range.join(","));
  return parts.join("|");
}

// Plotly renders annotation text as pseudo-HTML; neutralise markup characters
// from names we did not choose.
function escapeSvgText(s) {
  return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

function nsHover(ns, model) {
  const lines = [
    "<b>" + escapeSvgText(ns.type) + " namespace</b>" + (ns.alive === false ? " (ended)" : ""),
    "inode " + ns.inode + (ns.ns_id ? " · ns_id " + ns.ns_id : ""),
  ];
  if (ns.container) lines.push("container " + escapeSvgText(ns.container));
  if (model.isHostNs(ns.id)) lines.push("the host's");
  if (ns.creator) lines.push("created by " + escapeSvgText(ns.creator.comm || "") + " [" + ns.creator.pid + "] via " + escapeSvgText(ns.creator.syscall || ""));
  const n = (ns.pids || []).length;
  if (n) lines.push(n + " member process" + (n === 1 ? "" : "es"));
  if ((ns.pinned || []).length) lines.push("pinned at " + escapeSvgText(ns.pinned.join(", ")));
  return lines.join("<br>");
}

function procHover(p) {
  return "<b>" + escapeSvgText(p.comm || "?") + "</b> pid " + p.pid + " (ppid " + p.ppid + ", uid " + p.uid + ")" +
    (p.container ? "<br>container " + escapeSvgText(p.container) : "") +
    (p.cmdline ? "<br>" + escapeSvgText(String(p.cmdline).slice(0, 120)) : "");
}

function collHover(procs) {
  const comms = new Map();
  for (const p of procs) comms.set(p.comm, (comms.get(p.comm) || 0) + 1);
  const top = Array.from(comms.entries()).sort((a, b) => b[1] - a[1]).slice(0, 6)
    .map(([c, n]) => escapeSvgText(c) + " ×" + n).join(", ");
  return "<b>" + procs.length + " processes</b> sharing the same namespaces<br>" + top + "<br><i>click to expand</i>";
}

function joinHover(j) {
  return "<b>join session #" + j.id + "</b><br>" + escapeSvgText(j.summary || "") +
    "<br>" + escapeSvgText(j.comm || "") + " [" + j.pid + "] → " + escapeSvgText((j.types || []).join(", "));
}
