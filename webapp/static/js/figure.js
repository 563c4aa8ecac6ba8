// The graph's Plotly figure, built in named steps from a GraphModel:
//
//   1. select     which processes and namespaces the filters let through, and
//                 which of them fold into counted nodes (busy namespace sets,
//                 piles of ended namespaces);
//   2. place      sticky grid positions (layout.js) for every node;
//   3. traces     one per namespace type, processes, collapsed sets, ended
//                 piles, join sessions; one path per edge kind;
//   4. bands      the host / container / "other" backgrounds and their labels;
//   5. highlights which nodes the search matched (the view rings them).
//
// SVG scatter traces only (WebGL needs 'unsafe-eval', which the CSP forbids),
// kept cheap: edges as null-separated segments, bands and labels as traces
// rather than hundreds of layout shapes and annotations.

import { typeColor, PROCESS_COLOR, JOIN_COLOR } from "./colors.js";
import { NS_TYPES, isMembership } from "./vocab.js";
import { COLUMNS, columnOf } from "./layout.js";
import { namespaceSearchText, processSearchText } from "./filters.js";
import { groupProcesses, selectNamespaces, processNodes, shownJoins } from "./select.js";
import { escapeSvgText, groupLabel, nsHover, procHover, collHover, joinHover } from "./hover.js";

const EDGE_STYLES = {
  membership: { color: "rgba(120,120,120,0.35)", width: 1, dash: "solid", name: "membership" },
  ownership: { color: "rgba(140,86,75,0.7)", width: 1.2, dash: "dot", name: "owner (user ns)" },
  hierarchy: { color: "rgba(20,20,20,0.8)", width: 2, dash: "solid", name: "parent (pid/user ns)" },
  join: { color: "rgba(255,140,0,0.9)", width: 2.5, dash: "solid", name: "join (setns)" },
};
const EDGE_KINDS = ["membership", "ownership", "hierarchy", "join"];
const BAND_KINDS = ["host", "other", "container"];

const MAX_ROWS_SHOWN = 36;
const GUTTER = 1.9;              // x units left of the first column for band labels
const MAX_BAND_LABELS = 400;
const FADED = 0.2;               // opacity of what a search did not match
const FIT_ROW_PX = 30, FIT_MIN_PX = 240, FIT_MAX_PX = 1600;

export const PLOT_CONFIG = {
  responsive: true, displaylogo: false, scrollZoom: true,
  modeBarButtonsToRemove: ["select2d", "lasso2d", "autoScale2d"],
  toImageButtonOptions: { filename: "nsgraph", scale: 2 },
};

// Everything the figure depends on besides the model: the view's state.
//   {model, filters, layout: LayoutMemory, expanded: Set, pinned: Map, collapseThreshold, labelLimit}
// Returns {data, layout, nsIds, nodeCount, pos, procNode, searchHits}.
export function buildFigure(s) {
  const { model, filters } = s;
  const { groups, related } = groupProcesses(model, filters);
  const { namespaces, endedPiles } = selectNamespaces(model, filters, related, s.pinned, s.expanded);
  const { procNodes, procNode } = processNodes(groups, filters, s.expanded, s.collapseThreshold);
  const items = [];
  for (const ns of namespaces) items.push({ id: "ns:" + ns.id, group: model.groupOfNamespace(ns), column: columnOf(ns.type) });
  for (const pile of endedPiles) items.push({ id: pile.key, group: pile.group, column: columnOf(pile.type) });
  for (const pn of procNodes) items.push({ id: pn.key, group: pn.group, column: "proc" });
  const joins = shownJoins(model, filters, items);

  const { pos, bands, height } = s.layout.place(items);
  const search = filters && filters.search ? filters : null;
  const hits = { live: [], ended: [] };
  const edges = new Edges(pos);
  const nsTraces = namespaceTraces(namespaces, model, pos, search, hits, edges);
  const withLabels = items.length <= s.labelLimit && procNodes.filter((pn) => !pn.collapsed).length <= 40;
  const procTraces = processTraces(procNodes, model, pos, search, hits, edges, withLabels);
  const data = [
    ...bandTraces(bands, model),
    ...edges.traces(),
    ...nsTraces,
    ...procTraces,
    endedTrace(endedPiles, pos),
    joinTrace(joins, model, pos, procNode, edges),
  ];
  return {
    data, layout: plotLayout(height, s.fit), nodeCount: items.length, pos, procNode,
    nsIds: new Set(namespaces.map((ns) => ns.id)),
    // Live matches first: Enter in the search box opens the first one.
    searchHits: hits.live.concat(hits.ended),
  };
}

// --- 3. traces ---------------------------------------------------------------

class Edges {
  constructor(pos) {
    this.pos = pos;
    this.xy = Object.fromEntries(EDGE_KINDS.map((k) => [k, [[], []]]));
  }

  add(kind, a, b) {
    const pa = this.pos.get(a); const pb = this.pos.get(b);
    if (!pa || !pb) return;
    const [x, y] = this.xy[kind];
    x.push(pa.x, pb.x, null);
    y.push(pa.y, pb.y, null);
  }

  traces() {
    return EDGE_KINDS.map((kind) => {
      const st = EDGE_STYLES[kind];
      return {
        type: "scatter", mode: "lines", uid: "edge-" + kind, name: st.name,
        x: this.xy[kind][0], y: this.xy[kind][1], hoverinfo: "skip",
        line: { color: st.color, width: st.width, dash: st.dash },
      };
    });
  }
}

// One trace per namespace type (the legend doubles as a type toggle), in NS_TYPES order.
function namespaceTraces(namespaces, model, pos, search, hits, edges) {
  const perType = new Map(NS_TYPES.map((t) => [t, { x: [], y: [], text: [], custom: [], symbol: [], opacity: [] }]));
  for (const ns of namespaces) {
    const t = perType.get(ns.type);
    if (!t) continue;
    const key = "ns:" + ns.id;
    const p = pos.get(key);
    t.x.push(p.x); t.y.push(p.y);
    t.custom.push("ns|" + ns.id);
    t.symbol.push(ns.alive === false ? "circle-open" : "circle");
    const hit = search && search.searchMatches(namespaceSearchText(ns));
    if (hit) (ns.alive === false ? hits.ended : hits.live).push(key);
    t.opacity.push(search && !hit ? FADED : 1);
    t.text.push(nsHover(ns, model));
    if (ns.owner_id && !model.isHostNs(ns.owner_id)) edges.add("ownership", key, "ns:" + ns.owner_id);
    if (ns.parent_id) edges.add("hierarchy", key, "ns:" + ns.parent_id);
  }
  return NS_TYPES.map((type) => {
    const t = perType.get(type);
    return {
      type: "scatter", mode: "markers", uid: "ns-" + type, name: type + " ns (" + t.x.length + ")",
      x: t.x, y: t.y, customdata: t.custom, hovertext: t.text, hoverinfo: "text",
      marker: { size: 13, color: typeColor(type), symbol: t.symbol, opacity: t.opacity, line: { width: 1.5, color: typeColor(type) } },
    };
  });
}

// Single processes and collapsed sets, with their membership edges.  Members of
// the host's namespaces are drawn once, through their collapsed node; expanded
// processes of one set hang off the set's first node: one short edge each
// instead of one per namespace - edges are what an SVG plot pays for most.
function processTraces(procNodes, model, pos, search, hits, edges, withLabels) {
  const single = { x: [], y: [], text: [], custom: [], opacity: [], label: [] };
  const coll = { x: [], y: [], text: [], custom: [], opacity: [], label: [] };
  const hubs = new Map();
  for (const pn of procNodes) {
    const p = pos.get(pn.key);
    const t = pn.collapsed ? coll : single;
    t.x.push(p.x); t.y.push(p.y);
    const first = pn.procs[0];
    const hit = Boolean(search) && pn.procs.some((pr) => search.searchMatches(processSearchText(pr)));
    if (hit) hits.live.push(pn.key);
    t.opacity.push(search && !hit ? FADED : 1);
    if (pn.collapsed) {
      t.custom.push("coll|" + pn.collKey);
      t.label.push(pn.procs.length + " processes");
      t.text.push(collHover(pn.procs));
    } else {
      t.custom.push("proc|" + first.pid);
      t.label.push(String(first.comm || first.pid).slice(0, 7));
      t.text.push(procHover(first));
    }
    const hostOnly = pn.group === "host";
    if (hostOnly && !pn.collapsed) continue;
    const hub = hubs.get(pn.sigKey);
    if (hub && hub !== pn.key) {
      edges.add("membership", pn.key, hub);
      continue;
    }
    hubs.set(pn.sigKey, pn.key);
    for (const [slot, id] of Object.entries(first.ns || {})) {
      if (!isMembership(slot) || !id) continue;
      if (model.isHostNs(id) && !(hostOnly && pn.collapsed)) continue;
      edges.add("membership", pn.key, "ns:" + id);
    }
  }
  // Text is what makes SVG slow and cluttered: name single processes only on small pictures.
  return [{
    type: "scatter", mode: withLabels ? "markers+text" : "markers", uid: "procs", name: "process",
    x: single.x, y: single.y, customdata: single.custom, hovertext: single.text, hoverinfo: "text",
    text: withLabels ? single.label : undefined, textposition: "bottom center", textfont: { size: 8, color: "#444" },
    marker: { size: 8, symbol: "square", color: PROCESS_COLOR, opacity: single.opacity },
  }, {
    type: "scatter", mode: "markers+text", uid: "collapsed", name: "processes (collapsed; click)",
    x: coll.x, y: coll.y, customdata: coll.custom, hovertext: coll.text, hoverinfo: "text",
    text: coll.label, textposition: "middle right", textfont: { size: 10, color: "#222" },
    marker: { size: 16, symbol: "square", color: "#9ca3af", line: { width: 1.5, color: "#374151" }, opacity: coll.opacity },
  }];
}

function endedTrace(endedPiles, pos) {
  const t = { x: [], y: [], text: [], custom: [], label: [], color: [] };
  for (const pile of endedPiles) {
    const p = pos.get(pile.key);
    t.x.push(p.x); t.y.push(p.y);
    t.custom.push("end|" + pile.cell);
    t.label.push(pile.list.length + " ended");
    t.color.push(typeColor(pile.type));
    t.text.push("<b>" + pile.list.length + " ended " + escapeSvgText(pile.type) + " namespaces</b><br>kept for a moment after they ended<br><i>click to expand</i>");
  }
  return {
    type: "scatter", mode: "markers+text", uid: "ended", name: "ended (collapsed; click)",
    x: t.x, y: t.y, customdata: t.custom, hovertext: t.text, hoverinfo: "text",
    text: t.label, textposition: "bottom center", textfont: { size: 9, color: "#666" },
    marker: { size: 15, symbol: "circle-open-dot", color: t.color, line: { width: 2 } },
  };
}

function joinTrace(joins, model, pos, procNode, edges) {
  const t = { x: [], y: [], text: [], custom: [], label: [] };
  for (const j of joins) {
    const key = "join:" + j.id;
    const p = pos.get(key);
    t.x.push(p.x); t.y.push(p.y);
    t.custom.push("join|" + j.id);
    t.label.push("join " + (j.types || []).length);
    t.text.push(joinHover(j));
    for (const id of Object.values(j.target || {})) if (!model.isHostNs(id)) edges.add("join", key, "ns:" + id);
    const pk = procNode.get(j.exec_pid) || procNode.get(j.pid);
    if (pk) edges.add("join", key, pk);
  }
  return {
    type: "scatter", mode: "markers+text", uid: "joins", name: "join session",
    x: t.x, y: t.y, customdata: t.custom, hovertext: t.text, hoverinfo: "text",
    text: t.label, textposition: "middle right", textfont: { size: 9, color: "#b35900" },
    marker: { size: 15, symbol: "diamond", color: JOIN_COLOR, line: { width: 1, color: "#7a3d00" } },
  };
}

// --- 4. bands ------------------------------------------------------------------

function bandKind(group) {
  return group === "host" ? "host" : group === "other" ? "other" : "container";
}

const BAND_FILL = { host: "rgba(200,200,200,0.18)", other: "rgba(255,220,120,0.16)", container: "rgba(80,150,255,0.10)" };

// One filled path per band kind and one text trace for the labels: far cheaper
// than a layout shape and an annotation per band.
function bandTraces(bands, model) {
  const fills = Object.fromEntries(BAND_KINDS.map((k) => [k, { x: [], y: [] }]));
  const labels = { x: [], y: [], text: [], color: [] };
  const x0 = -GUTTER, x1 = COLUMNS.join.x + 1.4;
  for (const b of bands) {
    const kind = bandKind(b.group);
    fills[kind].x.push(x0, x1, x1, x0, x0, null);
    fills[kind].y.push(b.y1, b.y1, b.y0, b.y0, b.y1, null);
    if (labels.x.length < MAX_BAND_LABELS) {
      labels.x.push(-GUTTER + 0.05);
      labels.y.push(b.y0 - 0.05);
      labels.text.push(groupLabel(b.group, model));
      labels.color.push(kind === "container" ? "#1d4ed8" : "#555");
    }
  }
  const traces = BAND_KINDS.map((kind) => ({
    type: "scatter", mode: "lines", uid: "band-" + kind, x: fills[kind].x, y: fills[kind].y, fill: "toself",
    fillcolor: BAND_FILL[kind], hoverinfo: "skip", showlegend: false,
    line: { width: kind === "container" ? 1 : 0, color: "rgba(80,150,255,0.5)" },
  }));
  traces.push({
    type: "scatter", mode: "text", uid: "band-labels", x: labels.x, y: labels.y, text: labels.text,
    textposition: "bottom right", textfont: { size: 10, color: labels.color }, hoverinfo: "skip", showlegend: false,
  });
  return traces;
}

// fit: the focused view, whose plot is exactly as tall as its bands (a few rows
// for one container) instead of a fixed window onto a tall picture.
function plotLayout(height, fit) {
  const tickvals = NS_TYPES.map((t) => COLUMNS[t].x + 0.3).concat([COLUMNS.proc.x + 0.9, COLUMNS.join.x + 0.45]);
  return {
    uirevision: "graph",
    margin: { l: 10, r: 10, t: 60, b: 10 },
    // The legend is HTML under the plot: Plotly's costs a text measurement per entry on every update.
    showlegend: false,
    hovermode: "closest",
    dragmode: "pan",
    xaxis: {
      range: [-GUTTER - 0.05, COLUMNS.join.x + 1.5], side: "top", tickvals,
      ticktext: NS_TYPES.concat(["processes", "joins"]), showgrid: false, zeroline: false,
      fixedrange: false, tickfont: { size: 11 },
      // Our ten column names always fit; "allow" spares plotly.js measuring each one on every render.
      ticklabeloverflow: "allow",
    },
    // A busy host's picture is taller than the panel: start at the top with a
    // readable row height and let people pan down (drag) or zoom out (wheel).
    yaxis: { range: [fit ? -Math.max(height, 3) : -Math.min(Math.max(height, 8), MAX_ROWS_SHOWN), 1.2], showticklabels: false, showgrid: false, zeroline: false },
    height: fit ? Math.min(FIT_MAX_PX, Math.max(FIT_MIN_PX, 90 + height * FIT_ROW_PX)) : undefined,
    shapes: [],                  // the view's highlight rings
    plot_bgcolor: "#ffffff",
    paper_bgcolor: "#ffffff",
  };
}

// What a render would change on screen, leaving out collapsed counts and hover texts.
export function figureSignature(fig) {
  const parts = [];
  for (const t of fig.data) {
    parts.push(t.uid, t.x.length, t.x.join(","), t.y.join(","));
    if (t.uid === "collapsed") continue;
    if (t.marker && Array.isArray(t.marker.symbol)) parts.push(t.marker.symbol.join(","));
    if (t.marker && Array.isArray(t.marker.opacity)) parts.push(t.marker.opacity.join(","));
    if (Array.isArray(t.text)) parts.push(t.text.join("\u0001"));
  }
  parts.push(fig.layout.yaxis.range.join(","));
  return parts.join("|");
}
