// Server state and counters.  While the server is still compiling probes or
// taking the first snapshot, /api/status says "starting": the page shows that
// and its progress text, and waits, instead of showing an error.

import { getJSON } from "./api.js";
import { $, fmtCount } from "./dom.js";

export class StatusBar {
  constructor() {
    this.last = null;        // {t, events}
    this.rate = 0;
    this.state = null;
  }

  // Resolves once the server is running; calls onProgress meanwhile.
  async waitUntilRunning(onProgress) {
    for (;;) {
      let body;
      try {
        ({ body } = await getJSON("/api/status"));
      } catch (err) {
        onProgress({ state: "unreachable", progress: err.message });
        if (err.status === 401 || err.status === 403) throw err;
        await sleep(1500);
        continue;
      }
      this.update(body);
      if (body.state === "running") return body;
      onProgress(body);
      await sleep(body.state === "error" ? 3000 : 700);
    }
  }

  update(status) {
    this.state = status.state;
    this.setCounters(status.counters);
  }

  setCounters(c) {
    if (!c) return;
    const t = Date.now() / 1000;
    if (typeof c.events === "number") {
      if (this.last && t - this.last.t >= 0.5) {
        this.rate = Math.max(0, (c.events - this.last.events) / (t - this.last.t));
        this.last = { t, events: c.events };
      } else if (!this.last) {
        this.last = { t, events: c.events };
      }
    }
    setText("c-rate", fmtCount(this.rate));
    setText("c-events", fmtCount(c.events));
    setText("c-lost", fmtCount(c.lost));
    setText("c-repaired", fmtCount(c.repaired));
    setText("c-alive", fmtCount(c.namespaces_alive));
    const lost = $("c-lost");
    if (lost) lost.classList.toggle("bad", Number(c.lost) > 0);
  }

  startPolling() {
    setInterval(() => {
      getJSON("/api/status").then(({ body }) => this.update(body)).catch(() => {});
    }, 2000);
  }
}

function setText(id, text) {
  const node = $(id);
  if (node) node.textContent = text;
}

export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}
