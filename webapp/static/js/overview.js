// The overview of a busy host: counts by namespace type, who shares what with
// the host and with other containers (summarized first), and a sortable,
// filterable, searchable table of every container, kept live.  HTML, not
// Plotly: it paints before plotly.js has even loaded.

import { el, clear, fmtTime } from "./dom.js";
import { typeColor } from "./colors.js";
import { NS_TYPES } from "./vocab.js";
import { containerRows, sharingSummary, filterRows, sortRows } from "./containers.js";
import { VirtualList, setCell } from "./vtable.js";

const ROW_HEIGHT = 26;
const COLUMNS = [
  { key: "name", label: "container" }, { key: "image", label: "image" }, { key: "runtime", label: "runtime" },
  { key: "state", label: "state" }, { key: "procs", label: "procs", num: true },
  { key: "ns", label: "own ns", num: true, title: "namespaces not the host's (its own or shared with other containers)" },
  { key: "host", label: "shares with host", title: "the host's namespaces, of the types most containers here have their own of" },
  { key: "shared", label: "shares with containers" },
  { key: "joins", label: "joins", title: "join sessions (docker exec, nsenter) into it; bold: in the last 10 minutes" },
];

export class Overview {
  // onSelect(name): a row was clicked.  onChange(): sort or filters changed (for the URL).
  constructor(root, { onSelect, onChange } = {}) {
    this.onSelect = onSelect || (() => {});
    this.onChange = onChange || (() => {});
    this.rows = [];
    this.shown = [];
    this.sort = { key: "name", desc: false };
    this.filter = { text: "", state: "", share: "" };
    this.selected = null;
    this.lastApplyMs = 0;
    this.counts = el("div", { class: "ns-counts", id: "ns-counts" });
    this.summary = el("div", { class: "share-summary", id: "share-summary" });
    this.search = el("input", { id: "ov-search", type: "search", placeholder: "find a container: name, image, id, shared type…", autocomplete: "off" });
    this.state = el("select", { id: "ov-state", title: "state" },
      el("option", { value: "", text: "any state" }), el("option", { value: "running", text: "running" }), el("option", { value: "other", text: "not running" }));
    this.share = el("select", { id: "ov-share", title: "sharing" },
      el("option", { value: "", text: "any sharing" }), el("option", { value: "host", text: "shares with the host" }),
      el("option", { value: "container", text: "shares with another container" }), el("option", { value: "none", text: "shares nothing notable" }));
    this.count = el("span", { class: "small muted", id: "ov-count" });
    this.head = el("div", { class: "vhead ov-grid", id: "ov-head" }, COLUMNS.map((c) => el("button", {
      type: "button", class: "sort" + (c.num ? " num" : ""), dataset: { key: c.key }, title: c.title || "sort by " + c.label,
      onclick: () => this.setSort(c.key, this.sort.key === c.key ? !this.sort.desc : false),
    }, c.label)));
    this.body = el("div", { class: "vbody", id: "ov-body" });
    this.list = new VirtualList(this.body, { rowHeight: ROW_HEIGHT, className: "vrow ov-grid", renderRow: (node, r) => this.renderRow(node, r) });
    this.body.addEventListener("click", (e) => {
      const row = e.target.closest(".vrow");
      if (row && row.dataset.name) this.onSelect(row.dataset.name);
    });
    const changed = () => {
      this.filter = { text: this.search.value, state: this.state.value, share: this.share.value };
      this.apply();
      this.onChange();
    };
    this.search.addEventListener("input", changed);
    this.state.addEventListener("change", changed);
    this.share.addEventListener("change", changed);
    clear(root).append(this.counts, this.summary,
      el("div", { class: "toolbar" }, this.search, this.state, this.share, this.count), this.head, this.body);
  }

  // Restore sort and filters (deep links).
  setControls({ sort, desc, text, state, share }) {
    if (sort) this.sort = { key: sort, desc: !!desc };
    this.filter = { text: text || "", state: state || "", share: share || "" };
    this.search.value = this.filter.text;
    this.state.value = this.filter.state;
    this.share.value = this.filter.share;
  }

  setSort(key, desc) {
    this.sort = { key, desc };
    this.apply();
    this.onChange();
  }

  // New graph data: recompute the rows, keep sort, filters and scroll position.
  update(model) {
    this.rows = containerRows(model);
    this.renderCounts(model);
    this.renderSummary(sharingSummary(this.rows));
    this.apply();
  }

  apply() {
    const t0 = performance.now();
    this.shown = sortRows(filterRows(this.rows, this.filter), this.sort.key, this.sort.desc);
    this.list.setItems(this.shown);
    for (const b of this.head.children) {
      const on = b.dataset.key === this.sort.key;
      b.classList.toggle("sorted", on);
      b.dataset.dir = on ? (this.sort.desc ? "desc" : "asc") : "";
    }
    this.count.textContent = this.shown.length === this.rows.length ? this.rows.length + " containers"
      : this.shown.length + " of " + this.rows.length + " containers";
    this.lastApplyMs = performance.now() - t0;
  }

  select(name) {
    this.selected = name;
    const index = this.shown.findIndex((r) => r.name === name);
    if (index >= 0) this.list.reveal(index); else this.list.render();
  }

  renderRow(node, r) {
    if (node.childElementCount !== COLUMNS.length) {
      clear(node);
      for (const c of COLUMNS) node.appendChild(el("span", { class: "cell c-" + c.key + (c.num ? " num" : "") }));
    }
    node.dataset.name = r.name;
    node.classList.toggle("selected", r.name === this.selected);
    const cells = node.children;
    setCell(cells[0], r.name, r.id ? r.id.slice(0, 12) : "");
    setCell(cells[1], r.image, r.image);
    setCell(cells[2], r.runtime);
    setCell(cells[3], r.state);
    cells[3].dataset.state = r.state;
    setCell(cells[4], String(r.procs));
    setCell(cells[5], String(r.nsCount), r.own.join(" ") || "none of its own");
    setCell(cells[6], r.hostNotable.join(" ") || "–", r.host.length ? "uses the host's " + r.host.join(", ") : "");
    cells[6].classList.toggle("warn", r.hostNotable.length > 0);
    const shared = r.shared.map((s) => s.type + ": " + s.with.join(", ")).join("; ");
    setCell(cells[7], shared || "–", shared);
    cells[7].classList.toggle("share", r.shared.length > 0);
    setCell(cells[8], r.joins ? r.joins + " · " + fmtTime(r.lastJoin).slice(11, 19) : "–", r.recentJoins ? r.recentJoins + " in the last 10 minutes" : "");
    cells[8].classList.toggle("recent", r.recentJoins > 0);
  }

  renderCounts(model) {
    const byType = new Map(NS_TYPES.map((t) => [t, 0]));
    for (const ns of model.namespaces.values()) if (ns.alive !== false && byType.has(ns.type)) byType.set(ns.type, byType.get(ns.type) + 1);
    clear(this.counts).append(el("b", { text: "namespaces" }), ...NS_TYPES.map((t) => el("span", { class: "chip", dataset: { type: t, count: String(byType.get(t)) } },
      el("span", { class: "swatch", style: { background: typeColor(t) } }), t + " " + byType.get(t))),
    el("span", { class: "muted", text: " · " + model.processes.size + " processes · " + model.containers.size + " containers · " + model.joins.size + " join sessions" }));
  }

  renderSummary(s) {
    const pick = (share) => (e) => { e.preventDefault(); this.share.value = share; this.search.dispatchEvent(new Event("input")); };
    const byType = (m) => Array.from(m.entries()).sort((a, b) => b[1] - a[1]).map(([t, n]) => t + " " + n).join(" · ");
    const groups = s.groups.slice(0, 6).map((g) => el("li", null, el("span", { class: "swatch", style: { background: typeColor(g.type) } }),
      g.type + ": " + g.names.slice(0, 8).join(", ") + (g.names.length > 8 ? " +" + (g.names.length - 8) : "")));
    clear(this.summary).append(
      el("div", { class: "sum host", dataset: { count: String(s.hostRows) } },
        el("a", { href: "#", onclick: pick("host") }, s.hostRows + " share with the host"), s.hostRows ? " (" + byType(s.hostByType) + ")" : ""),
      el("div", { class: "sum shared", dataset: { count: String(s.sharedRows) } },
        el("a", { href: "#", onclick: pick("container") }, s.sharedRows + " share with another container"),
        s.groups.length ? " in " + s.groups.length + " group" + (s.groups.length === 1 ? "" : "s") : ""),
      groups.length ? el("ul", { class: "groups small" }, groups, s.groups.length > 6 ? el("li", { class: "muted", text: "… " + (s.groups.length - 6) + " more" }) : null) : null);
  }
}
