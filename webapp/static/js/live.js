// Live updates over Server-Sent Events (/stream).
//
// Order of operations matters: the stream is opened *before* the full graph is
// fetched and diffs arriving meanwhile are queued, so nothing between the
// snapshot and the first diff is lost.  Diffs are applied in version order;
// an old one is dropped, one that does not follow on (a gap), a `resync` event
// or a reconnect triggers a catch-up (/api/graph/diff?since=V, or the whole
// graph when the server answers 409).  The browser itself sends Last-Event-ID
// when it reconnects.

import { apiPath, getJSON } from "./api.js";

export class LiveStream {
  constructor({ model, onApplied, onEvent, onStatus, onDemo, onConnection, onResync, onDiffArrived }) {
    this.model = model;
    this.onApplied = onApplied;
    this.onEvent = onEvent || (() => {});
    this.onStatus = onStatus || (() => {});
    this.onDemo = onDemo || (() => {});
    this.onConnection = onConnection || (() => {});
    this.onResync = onResync || (() => {});
    this.onDiffArrived = onDiffArrived || (() => {});
    this.queue = [];
    this.loading = false;
    this.source = null;
    this.hadError = false;
    this.stats = { diffs: 0, resyncs: 0, gaps: 0, stale: 0, reconnects: 0 };
    this.frame = null;
  }

  // preloaded: a /api/graph answer fetched before the scripts ran (boot.js).
  // The stream then starts from its version (?since=V), so nothing between
  // that snapshot and the stream is lost; without one the stream opens first
  // and the graph is fetched after.
  async start(preloaded = null) {
    if (preloaded) {
      const summary = this.model.loadFull(preloaded);
      this.onApplied(summary, "full");
      this.connect(this.model.version);
      return;
    }
    this.connect();
    return this.resync("initial load");
  }

  connect(since = null) {
    const path = since !== null && since >= 0 ? "/stream?since=" + encodeURIComponent(since) : "/stream";
    const source = new EventSource(apiPath(path), { withCredentials: true });
    this.source = source;
    source.addEventListener("open", () => {
      this.onConnection("live");
      if (this.hadError) {
        this.stats.reconnects++;
        this.hadError = false;
        this.catchUp();
      }
    });
    source.addEventListener("error", () => {
      this.hadError = true;
      this.onConnection(source.readyState === EventSource.CLOSED ? "closed" : "reconnecting");
      if (source.readyState === EventSource.CLOSED) {
        // The server refused the stream (e.g. 401); EventSource gives up, so retry ourselves.
        setTimeout(() => { if (this.source === source) this.connect(); }, 3000);
      }
    });
    source.addEventListener("diff", (e) => this.enqueue(e.data));
    source.addEventListener("resync", () => { this.stats.resyncs++; this.resync("server asked to resync"); });
    source.addEventListener("event", (e) => { const d = parse(e.data); if (d) this.onEvent(d); });
    source.addEventListener("status", (e) => { const d = parse(e.data); if (d) this.onStatus(d); });
    source.addEventListener("demo", (e) => { const d = parse(e.data); if (d) this.onDemo(d); });
  }

  enqueue(raw) {
    const diff = parse(raw);
    if (!diff) return;
    this.onDiffArrived(diff);
    this.queue.push(diff);
    // Apply a burst of messages together (they are queued as separate tasks,
    // a zero timeout runs after them), without waiting for a frame: latency.
    if (!this.frame && !this.loading) this.frame = setTimeout(() => this.flush(), 0);
  }

  flush() {
    this.frame = null;
    if (this.loading) return;
    const batch = this.queue.splice(0).sort((a, b) => Number(a.version) - Number(b.version));
    const merged = { added: [], removed: [], updated: [], joins: [], joinsTouched: false };
    let applied = 0;
    for (let i = 0; i < batch.length; i++) {
      const res = this.model.applyDiff(batch[i]);
      if (res === null) {
        this.stats.gaps++;
        this.queue.unshift(...batch.slice(i + 1));
        this.catchUp();
        break;
      }
      if (res.stale) { this.stats.stale++; continue; }
      applied++;
      for (const k of ["added", "removed", "updated", "joins"]) merged[k].push(...res[k]);
      if (res.joinsTouched) merged.joinsTouched = true;
    }
    this.stats.diffs += applied;
    if (applied) this.onApplied(merged, "diff");
  }

  async catchUp() {
    if (this.loading || this.model.version < 0) return this.resync("catch up");
    this.loading = true;
    try {
      const { status, body } = await getJSON("/api/graph/diff?since=" + this.model.version, { allow: [409, 410] });
      if (status === 409 || status === 410 || !body) {
        this.loading = false;
        return this.resync("diff too old");
      }
      const res = this.model.applyDiff(body);
      if (res && !res.stale) this.onApplied(res, "catch-up");
      if (res === null) { this.loading = false; return this.resync("catch-up gap"); }
    } catch (err) {
      this.loading = false;
      return this.resync("catch-up failed: " + err.message);
    }
    this.loading = false;
    this.flush();
  }

  async resync(reason) {
    this.loading = true;
    try {
      const { body } = await getJSON("/api/graph");
      const summary = this.model.loadFull(body);
      this.onResync(reason);
      this.onApplied(summary, "full");
    } finally {
      this.loading = false;
    }
    // Diffs that came while loading: old ones are ignored by version.
    if (this.queue.length) this.flush();
  }

  close() {
    if (this.source) this.source.close();
    this.source = null;
  }
}

function parse(raw) {
  try {
    return JSON.parse(raw);
  } catch (err) {
    console.warn("ignored a malformed stream message", err);
    return null;
  }
}
