// The graph's toolbar: search, type checkboxes, group, pid and comm filters,
// collapsing, re-layout and PNG export.  Its state goes into deep links.

import { $, el } from "./dom.js";
import { typeColor } from "./colors.js";
import { NS_TYPES } from "./vocab.js";

export function debounce(fn, ms) {
  let timer = null;
  return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
}

export class Toolbar {
  // filters: Filters; view: GraphView; onSearchEnter(kind, id); onChange(): for the URL.
  constructor({ filters, view, onSearchEnter, onChange }) {
    this.filters = filters;
    this.view = view;
    this.onChange = onChange || (() => {});
    this.boxes = new Map();
    for (const t of NS_TYPES) {
      const cb = el("input", { type: "checkbox", checked: true, dataset: { type: t } });
      cb.checked = true;
      cb.addEventListener("change", () => {
        if (cb.checked) filters.types.add(t); else filters.types.delete(t);
        view.requestRender();
        this.onChange();
      });
      this.boxes.set(t, cb);
      $("type-filters").appendChild(el("label", null, cb, el("span", { class: "swatch", style: { background: typeColor(t) } }), t));
    }
    const apply = debounce(() => {
      filters.search = $("search").value.trim();
      filters.pid = $("f-pid").value.trim();
      filters.comm = $("f-comm").value.trim();
      filters.container = $("f-container").value;
      const n = Number($("f-collapse").value);
      if (Number.isFinite(n) && n >= 1) view.collapseThreshold = n;
      view.requestRender();
      this.onChange();
    }, 150);
    for (const id of ["search", "f-pid", "f-comm", "f-collapse"]) $(id).addEventListener("input", apply);
    $("f-container").addEventListener("change", apply);
    $("search").addEventListener("keydown", (e) => {
      if (e.key !== "Enter") return;
      const hit = (view.searchHits || [])[0];
      if (!hit) return;
      const [kind, ...rest] = hit.split(":");
      if (kind === "ns" || kind === "proc") onSearchEnter(kind, rest.join(":"));
    });
    $("collapse-all").addEventListener("click", () => view.collapseAll());
    $("relayout").addEventListener("click", () => view.relayoutFromScratch());
    $("export-png").addEventListener("click", () => {
      if (!window.Plotly) return;
      Plotly.downloadImage($("graph"), { format: "png", filename: "nsgraph", width: $("graph").clientWidth * 2, height: $("graph").clientHeight * 2 });
    });
  }

  // From a deep link (urlstate.parseState).
  restore(s) {
    if (s.collapse && s.collapse >= 1) {
      this.view.collapseThreshold = s.collapse;
      $("f-collapse").value = String(s.collapse);
    }
    const set = (id, key, value) => { $(id).value = value; this.filters[key] = value; };
    set("search", "search", s.q);
    set("f-pid", "pid", s.pid);
    set("f-comm", "comm", s.comm);
    if (s.group) {
      if (!Array.from($("f-container").options).some((o) => o.value === s.group)) {
        $("f-container").appendChild(el("option", { value: s.group, text: "container " + s.group }));
      }
      set("f-container", "container", s.group);
    }
    if (s.types) {
      this.filters.types = new Set(s.types);
      for (const [t, cb] of this.boxes) cb.checked = this.filters.types.has(t);
    }
  }

  // The part of a deep link this toolbar owns.
  state() {
    const f = this.filters;
    return { q: f.search, group: f.container, pid: f.pid, comm: f.comm,
      types: NS_TYPES.filter((t) => f.types.has(t)),
      collapse: this.view.collapseThreshold !== 8 ? this.view.collapseThreshold : null };
  }

  // The group <select> lists every container.
  updateGroups(model) {
    const sel = $("f-container");
    const names = Array.from(model.containers.keys()).sort();
    const have = Array.from(sel.options).slice(3).map((o) => o.value);
    if (have.join("\n") === names.join("\n")) return;
    const current = sel.value;
    while (sel.options.length > 3) sel.remove(3);
    for (const n of names) sel.appendChild(el("option", { value: n, text: "container " + n }));
    if (current && !names.includes(current) && current !== "host" && current !== "other") {
      sel.appendChild(el("option", { value: current, text: "container " + current }));
    }
    sel.value = current;
  }
}
