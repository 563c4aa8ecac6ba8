// The event timeline (zoomable, click for details) and the history scrubber.

import { toEpoch, fmtTime } from "./dom.js";
import { EVENT_KINDS, isNamespaceEvent } from "./vocab.js";

// One row per event kind the tracer reports (vocab.js, from Python), and one
// colour each; tests/unit/test_web_vocab.py checks that every kind has one.
const KIND_COLORS = { clone: "#1f77b4", unshare: "#2ca02c", setns: "#ff7f0e", exec: "#7f7f7f", exit: "#d62728" };
const OTHER_COLOR = "#9467bd";
const MAX_EVENTS = 2000;
const MAX_PROC_EVENTS = 400;

function esc(s) {
  return String(s ?? "").replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

export class Timeline {
  constructor(div, { onSelect } = {}) {
    this.div = div;
    this.onSelect = onSelect || (() => {});
    this.events = [];
    this.procEvents = [];
    this.seqs = new Set();
    this.dirty = false;
    this.ready = false;
    this.lastDraw = 0;
    this.lastCost = 0;
  }

  add(ev) {
    if (!ev || typeof ev !== "object" || !ev.kind) return false;
    const t = toEpoch(ev.ts);
    if (!Number.isFinite(t)) return false;
    if (ev.seq !== undefined) {
      if (this.seqs.has(ev.seq)) return false;
      this.seqs.add(ev.seq);
    }
    // Namespace events are what the timeline is for; fork/exec/exit of every
    // process on a busy host would drown them (and cost a redraw each second),
    // so only the latest few hundred of those are kept.
    const nsEvent = isNamespaceEvent(ev);
    const list = nsEvent ? this.events : this.procEvents;
    list.push({ ...ev, _t: t });
    const cap = nsEvent ? MAX_EVENTS : MAX_PROC_EVENTS;
    if (list.length > cap) {
      const gone = list.splice(0, list.length - cap);
      for (const g of gone) this.seqs.delete(g.seq);
    }
    this.dirty = true;
    return true;
  }

  // Redraws at most once a second: the timeline is for looking back, the
  // graph is what must be instant.
  maybeDraw(force = false) {
    const t = Date.now();
    // Spaced by what the last draw cost, so a busy host's event flood cannot
    // keep the main thread (and with it the graph) busy.
    if (!force && (!this.dirty || t - this.lastDraw < Math.max(1000, this.lastCost * 8))) return;
    this.lastDraw = t;
    this.dirty = false;
    const t0 = performance.now();
    this.draw();
    this.lastCost = performance.now() - t0;
  }

  draw() {
    const byKind = new Map();
    for (const ev of this.events.concat(this.procEvents)) {
      const kind = String(ev.kind);
      let tr = byKind.get(kind);
      if (!tr) byKind.set(kind, (tr = { x: [], y: [], text: [], custom: [] }));
      tr.x.push(new Date(ev._t * 1000));
      tr.y.push(kind);
      tr.custom.push(ev.seq);
      const flags = (ev.flags || []).join("|");
      tr.text.push("<b>" + esc(ev.kind) + "</b> " + esc(ev.comm) + " [" + ev.pid + "]" +
        (flags ? "<br>" + esc(flags) : "") + (ev.container ? "<br>container " + esc(ev.container) : "") +
        (ev.ret < 0 ? "<br>failed: " + esc(ev.errno_name || ev.ret) : "") + "<br>" + fmtTime(ev._t));
    }
    // A kind this page does not know yet (a newer server) gets a row of its own.
    const kinds = EVENT_KINDS.concat(Array.from(byKind.keys()).filter((k) => !EVENT_KINDS.includes(k)));
    const data = kinds.map((k) => {
      const tr = byKind.get(k) || { x: [], y: [], text: [], custom: [] };
      return {
        type: "scatter", mode: "markers", name: k + " (" + tr.x.length + ")", uid: "tl-" + k,
        x: tr.x, y: tr.y, hovertext: tr.text, hoverinfo: "text", customdata: tr.custom,
        marker: { size: 8, color: KIND_COLORS[k] || OTHER_COLOR, symbol: k === "setns" ? "diamond" : "circle", opacity: 0.8 },
      };
    });
    const layout = {
      uirevision: "timeline",
      margin: { l: 60, r: 10, t: 10, b: 30 },
      height: 200,
      showlegend: false,
      hovermode: "closest",
      // Zoom by dragging or the wheel; no range slider: it draws every point twice.
      xaxis: Object.assign({ type: "date", ticklabeloverflow: "allow" }, this.events.length + this.procEvents.length ? {}
        : { range: [new Date(Date.now() - 300000), new Date()] }),   // empty: the last 5 minutes, not the year 2000
      yaxis: { type: "category", categoryorder: "array", categoryarray: kinds.slice().reverse(), fixedrange: true },
    };
    const config = { displaylogo: false, responsive: true, scrollZoom: true, modeBarButtonsToRemove: ["select2d", "lasso2d"] };
    if (!this.ready) {
      this.ready = true;
      Plotly.newPlot(this.div, data, layout, config).then(() => {
        this.div.on("plotly_click", (e) => {
          const pt = e.points && e.points[0];
          if (!pt) return;
          const ev = this.events.find((x) => x.seq === pt.customdata) || this.procEvents.find((x) => x.seq === pt.customdata);
          if (ev) this.onSelect("event", ev);
        });
      });
    } else {
      Plotly.react(this.div, data, layout, config);
    }
  }

  span() {
    const all = this.events.concat(this.procEvents).map((e) => e._t);
    if (!all.length) return null;
    return [Math.min(...all), Math.max(...all)];
  }
}

// A range input over [first known time, now]; moving it loads the graph as it
// was then.  Debounced: each position is one SQLite replay on the server.
export class HistoryScrubber {
  constructor({ input, label, liveButton, onPick, onLive }) {
    this.input = input;
    this.label = label;
    this.liveButton = liveButton;
    this.onPick = onPick;
    this.onLive = onLive;
    this.start = Date.now() / 1000 - 600;
    this.timer = null;
    this.live = true;
    input.min = "0";
    input.max = "1000";
    input.value = "1000";
    input.addEventListener("input", () => {
      const t = this.valueToTime();
      this.label.textContent = fmtTime(t);
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.pick(t), 300);
    });
    liveButton.addEventListener("click", () => this.goLive());
  }

  setStart(t) {
    if (Number.isFinite(t) && t < this.start) this.start = t;
  }

  valueToTime() {
    const end = Date.now() / 1000;
    return this.start + (end - this.start) * (Number(this.input.value) / 1000);
  }

  pick(t) {
    if (Number(this.input.value) >= 1000) return this.goLive();
    this.live = false;
    this.liveButton.disabled = false;
    this.onPick(t);
  }

  show(t) {
    const end = Date.now() / 1000;
    this.setStart(t - 1);
    this.input.value = String(Math.round(((t - this.start) / (end - this.start)) * 1000));
    this.label.textContent = fmtTime(t);
    this.pick(t);
  }

  goLive() {
    this.live = true;
    this.input.value = "1000";
    this.label.textContent = "live";
    this.liveButton.disabled = true;
    this.onLive();
  }
}
