// The sharing matrix: rows are containers and stand-alone namespaced process
// sets, columns are namespace types; a cell says whose namespace it is.  Grey =
// the host's, pale = its own, a strong colour = shared with another row (the
// same colour for the same namespace), so "web and db share a network
// namespace" and "this one is in the host PID namespace" read at a glance.

import { NS_TYPES } from "./vocab.js";

const SHARED_PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6", "#bcf60c", "#008080", "#9a6324"];
const MAX_ROWS = 80;

// Pure: the rows and cells, from a GraphModel.
export function sharingRows(model) {
  const rows = [];
  const procOf = (pid) => model.processes.get(String(pid));
  for (const c of model.containers.values()) {
    let ns = null;
    const init = procOf(c.pid);
    if (init && init.ns) ns = init.ns;
    if (!ns) {
      for (const p of model.processes.values()) if (p.container === c.name && p.ns) { ns = p.ns; break; }
    }
    if (!ns) {
      ns = {};
      for (const n of model.namespaces.values()) if (n.container === c.name && !ns[n.type]) ns[n.type] = n.id;
    }
    if (!Object.keys(ns).length) continue;   // a stopped container: nothing to compare
    rows.push({ label: "container " + c.name, key: "container|" + c.name, ns });
  }
  // Processes outside containers that live in some non-host namespace, one row
  // per distinct namespace set.
  const seen = new Map();
  for (const p of model.processes.values()) {
    if (p.container || !p.ns) continue;
    const own = NS_TYPES.some((t) => p.ns[t] && model.hostNs[t] && p.ns[t] !== model.hostNs[t]);
    if (!own) continue;
    const sig = NS_TYPES.map((t) => p.ns[t] || "").join("|");
    const entry = seen.get(sig);
    if (entry) entry.pids.push(p.pid);
    else seen.set(sig, { ns: p.ns, pids: [p.pid], comm: p.comm });
  }
  for (const e of seen.values()) {
    const more = e.pids.length > 1 ? " +" + (e.pids.length - 1) : "";
    rows.push({ label: e.comm + " [" + e.pids[0] + "]" + more, key: "proc|" + e.pids[0], ns: e.ns });
  }
  rows.sort((a, b) => (a.label < b.label ? -1 : 1));
  rows.unshift({ label: "host", key: "host", ns: model.hostNs });

  // Who uses each namespace, to tell "own" from "shared".
  const users = new Map();
  for (const r of rows) for (const t of NS_TYPES) {
    const id = r.ns[t];
    if (!id) continue;
    if (!users.has(id)) users.set(id, []);
    users.get(id).push(r.label);
  }
  const sharedColor = new Map();
  for (const r of rows) {
    r.cells = NS_TYPES.map((t) => {
      const id = r.ns[t];
      if (!id) return { kind: "none", id: null, text: "–" };
      if (r.key !== "host" && model.hostNs[t] === id) return { kind: "host", id, text: "host" };
      const others = (users.get(id) || []).filter((l) => l !== r.label && l !== "host");
      if (r.key === "host") return { kind: "hostrow", id, text: "host" };
      if (others.length) {
        if (!sharedColor.has(id)) sharedColor.set(id, sharedColor.size % SHARED_PALETTE.length);
        return { kind: "shared", id, text: "shared", with: others, color: sharedColor.get(id) };
      }
      return { kind: "own", id, text: "own" };
    });
  }
  return rows.slice(0, MAX_ROWS);
}

function esc(s) {
  return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

export function renderMatrix(div, model, onSelect) {
  const rows = sharingRows(model);
  // z encodes the colour: 0 none, 1 host, 2 own, 3.. shared colour index.
  const z = [], text = [], hover = [], custom = [];
  for (const r of rows) {
    z.push(r.cells.map((c) => c.kind === "none" ? 0 : c.kind === "host" || c.kind === "hostrow" ? 1 : c.kind === "own" ? 2 : 3 + c.color));
    text.push(r.cells.map((c) => c.text));
    hover.push(r.cells.map((c, i) => {
      const label = esc(r.label);
      if (!c.id) return label + ": no " + NS_TYPES[i] + " namespace known";
      const inode = String(c.id).split(":")[2];
      let s = label + " · " + NS_TYPES[i] + " " + esc(inode);
      if (c.kind === "host") s += "<br>uses the host's " + NS_TYPES[i] + " namespace";
      if (c.kind === "shared") s += "<br>shared with " + c.with.slice(0, 6).map(esc).join(", ");
      if (c.kind === "own") s += "<br>its own";
      return s;
    }));
    custom.push(r.cells.map((c) => c.id || ""));
  }
  const n = 3 + SHARED_PALETTE.length;
  const stops = [["#ffffff"], ["#d1d5db"], ["#dbeafe"]].map((c) => c[0]).concat(SHARED_PALETTE);
  const colorscale = [];
  stops.forEach((c, i) => { colorscale.push([i / n, c], [(i + 1) / n, c]); });
  const data = [{
    type: "heatmap", z, text, hovertext: hover, customdata: custom, hoverinfo: "text",
    x: NS_TYPES, y: rows.map((r) => esc(r.label)), zmin: 0, zmax: n, colorscale, showscale: false,
    texttemplate: "%{text}", textfont: { size: 10 }, xgap: 2, ygap: 2,
  }];
  const layout = {
    uirevision: "matrix",
    margin: { l: 170, r: 10, t: 30, b: 10 },
    xaxis: { side: "top", fixedrange: true },
    yaxis: { autorange: "reversed", fixedrange: rows.length < 25, automargin: true, tickfont: { size: 10 } },
    height: Math.max(180, 40 + rows.length * 24),
  };
  const config = { displaylogo: false, responsive: true, displayModeBar: false };
  const p = div.dataset.ready ? Plotly.react(div, data, layout, config) : Plotly.newPlot(div, data, layout, config).then(() => {
    div.dataset.ready = "1";
    div.on("plotly_click", (ev) => {
      const pt = ev.points && ev.points[0];
      if (pt && pt.customdata) onSelect("ns", pt.customdata);
    });
  });
  return p.then(() => rows);
}
