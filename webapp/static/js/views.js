// Which view the page shows and what is selected:
//   overview  the containers table and counts (the default on a busy host)
//   graph     every node, as before (the default on a small host)
//   focus     one subject with the host and what it shares or joined (focus.js)
// It also keeps the address bar in step (urlstate.js), so a link reopens the view.

import { $, el, clear } from "./dom.js";
import { focusGraph, subjectText } from "./focus.js";
import { writeState } from "./urlstate.js";

// Above these a whole-graph picture stops being an overview.
const BUSY_CONTAINERS = 12;
const BUSY_ENTITIES = 3000;
const OVERVIEW_EVERY_MS = 250;

export function isBusy(model) {
  return model.containers.size > BUSY_CONTAINERS || model.namespaces.size + model.processes.size > BUSY_ENTITIES;
}

export class Views {
  // parts: {graph: GraphView, overview: Overview, matrix: MatrixPanel, details: DetailsPanel,
  //         toolbar: Toolbar, visible(id) -> bool, urlExtras() -> {at}}
  constructor(parts) {
    Object.assign(this, parts);
    this.source = null;           // the model shown: live, or a past one (history)
    this.view = null;
    this.sel = null;
    this.expand = [];
    this.focus = null;            // the last focusGraph() result
    this.overviewTimer = null;
    this.overviewAt = 0;
    this.matrixTimer = null;
    for (const b of document.querySelectorAll("#views button[data-view]")) {
      b.addEventListener("click", () => this.show(b.dataset.view, { push: true }));
    }
    $("focus-back").addEventListener("click", () => this.back());
  }

  defaultView() {
    return this.source && isBusy(this.source) ? "overview" : "graph";
  }

  // The first graph arrived: open what the link asked for.
  start(source, link) {
    this.source = source;
    this.sel = link.sel;
    this.expand = link.sel ? link.expand : [];
    this.show(link.view === "focus" && !link.sel ? this.defaultView() : link.view || (link.sel ? "focus" : this.defaultView()));
  }

  setSource(source) {
    this.source = source;
    this.refresh(true);
  }

  show(view, { push = false } = {}) {
    if (view === "focus" && !this.sel) view = this.defaultView();
    const changed = view !== this.view;
    this.view = view;
    $("overview-panel").hidden = view !== "overview";
    $("graph-panel").hidden = view === "overview";
    $("focus-bar").hidden = view !== "focus";
    $("graph").classList.toggle("fit", view === "focus");
    for (const b of document.querySelectorAll("#views button[data-view]")) b.classList.toggle("on", b.dataset.view === view);
    if (changed) {
      this.graph.layout.chunk = view === "focus" ? 1 : 2;
      this.graph.layout.compact();
      this.graph.expanded.clear();
      this.graph.fit = view === "focus";
    }
    this.refresh(true);
    this.writeUrl(push);
  }

  // Select a subject ({kind, id}): the focused graph, its details, its table row.
  select(subject, { push = true } = {}) {
    if (!subject) return;
    const same = this.sel && subjectText(this.sel) === subjectText(subject);
    this.sel = subject;
    if (!same) this.expand = [];
    if (subject.kind === "container") this.overview.select(subject.id);
    this.details.show(subject.kind, subject.id, { fromViews: true });
    if (this.view !== "focus") this.show("focus", { push });
    else {
      if (!same) { this.graph.layout.compact(); this.graph.expanded.clear(); }
      this.refresh(true);
      this.writeUrl(push);
    }
  }

  addExpansion(subject) {
    if (this.expand.some((x) => subjectText(x) === subjectText(subject))) return;
    this.expand.push(subject);
    this.refresh(true);
    this.writeUrl(true);
  }

  back() {
    this.sel = null;
    this.expand = [];
    this.show(this.defaultView(), { push: true });
  }

  // New data (or a new view): redraw what is on screen.
  refresh(now = false) {
    if (!this.source || this.source.version < 0) return;
    if (this.view === "overview") this.scheduleOverview(now);
    else if (this.view === "focus") this.drawFocus();
    else this.graph.setSource(this.source, this.graph.filters);
    this.scheduleMatrix(now);
  }

  drawFocus() {
    const subjects = [this.sel, ...this.expand];
    this.focus = focusGraph(this.source, subjects);
    this.graph.setSource(this.focus.model, this.graph.filters);
    this.renderFocusBar();
  }

  renderFocusBar() {
    const f = this.focus;
    const label = this.sel.kind === "ns" ? "namespace " + this.sel.id : this.sel.kind === "proc" ? "process " + this.sel.id
      : this.sel.kind === "join" ? "join session #" + this.sel.id : "container " + this.sel.id;
    const bar = clear($("focus-subject"));
    bar.append(el("b", { text: label }), f.found ? "" : el("span", { class: "error", text: " (not in this graph)" }),
      f.hostShared.length ? el("span", { class: "muted", text: " · shares the host's " + f.hostShared.join(", ") }) : "");
    const more = clear($("focus-neighbours"));
    const open = new Set(this.expand.map(subjectText));
    const next = f.neighbours.filter((n) => !open.has("container:" + n));
    if (next.length) more.append(el("span", { class: "muted", text: "shares with: " }));
    for (const name of next.slice(0, 20)) {
      more.append(el("button", { type: "button", class: "expand", dataset: { container: name }, title: "draw " + name + "'s namespaces too",
        onclick: () => this.addExpansion({ kind: "container", id: name }) }, "+ " + name));
    }
    if (next.length > 20) more.append(el("span", { class: "muted", text: " … " + (next.length - 20) + " more" }));
  }

  scheduleOverview(now) {
    if (this.overviewTimer) return;
    const wait = now ? 0 : Math.max(0, this.overviewAt + OVERVIEW_EVERY_MS - performance.now());
    this.overviewTimer = setTimeout(() => {
      this.overviewTimer = null;
      this.overviewAt = performance.now();
      this.overview.update(this.source);
      if (this.onOverviewDrawn) this.onOverviewDrawn();
    }, wait);
  }

  // The matrix is the whole source's: a new view or selection leaves it as it is
  // (redrawing it then only competed with the focused graph's render).
  scheduleMatrix(now) {
    const drawn = this.matrixDrawn;
    if (drawn && drawn.source === this.source && drawn.version === this.source.version) return;
    if (this.matrixTimer || !this.visible("matrix-panel")) { this.matrixDirty = true; return; }
    this.matrixDirty = false;
    this.matrixTimer = setTimeout(() => {
      this.matrixTimer = null;
      this.matrix.update(this.source);
      this.matrixDrawn = { source: this.source, version: this.source.version };
    }, now ? 50 : 1500);
  }

  // What a link to this view holds.
  linkState() {
    return { view: this.view, sel: this.view === "focus" ? this.sel : null, expand: this.view === "focus" ? this.expand : [],
      ...this.toolbar.state(), ...this.overviewState(), ...this.urlExtras() };
  }

  overviewState() {
    const o = this.overview;
    return { sort: o.sort.key, desc: o.sort.desc, find: o.filter.text, state: o.filter.state, share: o.filter.share };
  }

  writeUrl(push = false) {
    if (this.view) writeState(this.linkState(), { push });
  }
}
