// The sharing matrix: rows are containers and stand-alone namespaced process
// sets, columns are namespace types; a cell says whose namespace it is.  Grey =
// the host's, pale = its own, a strong colour = shared with another row (the
// same colour for the same namespace), so "web and db share a network
// namespace" and "this one is in the host PID namespace" read at a glance.
// HTML and virtualized (vtable.js), so 200+ rows scroll and update cheaply;
// rows that share come first, grouped by what they share.

import { el, clear } from "./dom.js";
import { NS_TYPES } from "./vocab.js";
import { VirtualList, setCell } from "./vtable.js";

const SHARED_PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6", "#bcf60c", "#008080", "#9a6324"];
const ROW_HEIGHT = 22;

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
  return rows;
}

// Shared rows first (grouped by the first namespace they share), then those in
// one of the host's namespaces, then the rest; the host's own row on top.
export function groupedRows(rows) {
  const rank = (r) => (r.key === "host" ? 0 : r.cells.some((c) => c.kind === "shared") ? 1 : r.cells.some((c) => c.kind === "host") ? 2 : 3);
  const firstShared = (r) => { const c = r.cells.find((x) => x.kind === "shared"); return c ? c.id : ""; };
  return rows.map((r) => ({ r, rank: rank(r), g: firstShared(r) }))
    .sort((a, b) => a.rank - b.rank || (a.g < b.g ? -1 : a.g > b.g ? 1 : 0) || (a.r.label < b.r.label ? -1 : 1))
    .map((x) => x.r);
}

export class MatrixPanel {
  constructor(root, { onSelect } = {}) {
    this.onSelect = onSelect || (() => {});
    this.rows = [];
    this.head = el("div", { class: "vhead mx-grid" }, el("span", { text: "" }), NS_TYPES.map((t) => el("span", { class: "cell", text: t })));
    this.body = el("div", { class: "vbody mx-body", id: "matrix-body" });
    this.note = el("p", { class: "small muted", id: "matrix-note" });
    this.list = new VirtualList(this.body, { rowHeight: ROW_HEIGHT, className: "vrow mx-grid", renderRow: (node, r) => this.renderRow(node, r) });
    this.body.addEventListener("click", (e) => {
      const cell = e.target.closest("[data-ns]");
      if (cell && cell.dataset.ns) { this.onSelect("ns", cell.dataset.ns); return; }
      const row = e.target.closest(".vrow");
      if (row && row.dataset.key) this.onSelect(row.dataset.kind, row.dataset.id);
    });
    root.style.setProperty("--types", String(NS_TYPES.length));
    clear(root).append(this.note, this.head, this.body);
  }

  update(model) {
    this.rows = groupedRows(sharingRows(model));
    const shared = this.rows.filter((r) => r.cells.some((c) => c.kind === "shared")).length;
    this.note.textContent = this.rows.length - 1 + " rows (containers and namespaced process sets) · " + shared + " share a namespace with another row, listed first";
    this.list.setItems(this.rows);
    return this.rows;
  }

  renderRow(node, r) {
    if (node.childElementCount !== NS_TYPES.length + 1) {
      clear(node);
      node.appendChild(el("span", { class: "label" }));
      for (let i = 0; i < NS_TYPES.length; i++) node.appendChild(el("span", { class: "cell" }));
    }
    const [kind, ...rest] = r.key.split("|");
    node.dataset.key = r.key;
    node.dataset.kind = kind === "proc" ? "proc" : kind;
    node.dataset.id = rest.join("|");
    setCell(node.children[0], r.label, r.label);
    r.cells.forEach((c, i) => {
      const cell = node.children[i + 1];
      cell.className = "cell " + c.kind;
      cell.style.background = c.kind === "shared" ? SHARED_PALETTE[c.color] : "";
      cell.dataset.ns = c.id || "";
      const inode = c.id ? String(c.id).split(":")[2] : "";
      setCell(cell, c.text, c.id ? NS_TYPES[i] + " " + inode + (c.kind === "shared" ? " · shared with " + c.with.slice(0, 6).join(", ") : "") : "none known");
    });
  }
}
