// The namespace graph on screen: when to draw, clicks, and highlight rings.
// What to draw is figure.js.
//
// Plotly's WebGL traces (scattergl) compile shaders with `new Function`, which
// the strict CSP (script-src 'self', no 'unsafe-eval') forbids, and headless or
// VM browsers often have no WebGL at all.  So the figure uses SVG scatter
// traces and keeps them cheap, and this draws at most one Plotly.react per
// animation frame (spaced by the last render's cost on big graphs).  Highlight
// rings are layout shapes, so fading them is a relayout that leaves the data alone.

import { HIGHLIGHT_COLORS } from "./colors.js";
import { LayoutMemory } from "./layout.js";
import { buildFigure, figureSignature, PLOT_CONFIG } from "./figure.js";

const RING_MS = { new: 6000, joined: 8000, ended: 6000 };
const MAX_SEARCH_RINGS = 200;

function now() {
  return performance.timeOrigin + performance.now();
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
    this.searchHits = [];
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
        await Plotly.newPlot(this.div, fig.data, fig.layout, PLOT_CONFIG);
        this.div.on("plotly_click", (ev) => this._click(ev));
        this.initialised = true;
      } else {
        await Plotly.react(this.div, fig.data, fig.layout, PLOT_CONFIG);
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
    Plotly.relayout(this.div, { shapes: this._ringShapes() }).catch(() => {});
  }

  // --- figure ----------------------------------------------------------------

  // The figure for the current model and filters; remembers where every node
  // went (for rings and clicks) and rings the search's matches.
  buildFigure() {
    const fig = buildFigure({
      model: this.model, filters: this.filters, layout: this.layout, expanded: this.expanded,
      pinned: this.pinned, collapseThreshold: this.collapseThreshold, labelLimit: this.labelLimit,
    });
    this.pos = fig.pos;
    this.procNode = fig.procNode;
    this.searchHits = fig.searchHits;
    for (const [key, kind] of this.pinned) if (kind === "search") this.pinned.delete(key);
    if (this.filters && this.filters.search) {
      for (const key of fig.searchHits.slice(0, MAX_SEARCH_RINGS)) this.pinned.set(key, "search");
    }
    fig.layout.shapes = this._ringShapes();
    return fig;
  }
}
