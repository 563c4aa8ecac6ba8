// The fleet page: every node's health and overview (polled), and search across nodes.
// A node's own graph is the single-host dashboard at /node/<name>/.

import { $, el, clear, fmtTime, fmtCount } from "./dom.js";
import { getJSON } from "./api.js";

const POLL_MS = 2000;
const state = { overview: null, errors: 0 };
window.nsgraphFleet = state;   // tests and benchmarks read what the page shows

// Command lines can be whole scripts: show the start, the rest on hover.
function brief(text, max = 200) {
  const s = String(text || "");
  return s.length > max ? el("span", { title: s }, s.slice(0, max) + "…") : s;
}

function nodeLink(name, text) {
  return el("a", { href: "/node/" + encodeURIComponent(name) + "/", title: "open node " + name + "'s graph" }, text || name);
}

function ago(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  return seconds < 60 ? seconds.toFixed(1) + " s ago" : Math.round(seconds / 60) + " min ago";
}

function lossCell(losses) {
  const parts = Object.entries(losses || {}).filter(([, n]) => n > 0).map(([k, n]) => k.replace(/_/g, " ") + " " + n);
  return el("span", { class: parts.length ? "losses bad" : "losses", "data-losses": JSON.stringify(losses || {}) },
    parts.length ? parts.join(", ") : "none");
}

function healthCell(h) {
  return el("span", { class: "health", "data-state": h.state, title: h.reason || "" }, h.state);
}

function renderNodes(nodes) {
  const body = $("nodes").querySelector("tbody");
  clear(body);
  $("nodes-empty").hidden = nodes.length > 0;
  for (const n of nodes) {
    const h = n.health;
    const since = h.since ? (h.state === "offline" ? "offline since " : "since ") + fmtTime(h.since) : "";
    const replica = n.replica || {};
    body.appendChild(el("tr", { "data-node": n.node, "data-state": h.state },
      el("td", { class: "nowrap" }, nodeLink(n.node)),
      el("td", null, healthCell(h)),
      el("td", { class: "small" }, since, h.reason ? el("div", { class: "muted" }, h.reason) : null),
      el("td", { class: "small" }, ago(h.heartbeat_age_s)),
      el("td", { class: "small" }, n.agent ? (n.agent.kernel || "") : ""),
      el("td", { class: "num" }, fmtCount(n.processes)),
      el("td", { class: "num" }, fmtCount(n.namespaces_alive)),
      el("td", { class: "num" }, String((n.containers || []).length)),
      el("td", { class: "small" }, lossCell(h.losses)),
      el("td", { class: "small muted", title: "journal sequence applied; resets from checkpoints" },
        "seq " + fmtCount(replica.seq) + (replica.synced ? "" : " (waiting)") + ", resets " + (replica.resets || 0))));
  }
}

function renderCards(nodes) {
  const cards = $("cards");
  clear(cards);
  for (const n of nodes) {
    const types = Object.entries(n.namespaces_by_type || {}).sort().map(([t, c]) => t + " " + c).join(", ");
    const joins = (n.recent_joins || []).map((j) => el("li", null, fmtTime(j.start).slice(11, 19) + " ", brief(j.summary, 140)));
    cards.appendChild(el("div", { class: "fleet-card", "data-node": n.node },
      el("h3", null, nodeLink(n.node), " ", healthCell(n.health)),
      el("div", { class: "small" }, "namespaces: " + (types || "–")),
      el("div", { class: "small" }, "containers: " + ((n.containers || []).join(", ") || "none")),
      el("h4", null, "recent joins"),
      joins.length ? el("ul", { class: "small" }, joins) : el("div", { class: "small muted" }, "none")));
  }
}

function renderHeader(ov) {
  const conn = ov.connection || {};
  const badge = $("conn");
  badge.dataset.state = conn.connected ? "live" : "reconnecting";
  badge.textContent = conn.connected ? "NATS connected" : "NATS disconnected";
  $("fleet-server").textContent = conn.server ? "via " + conn.server : "";
  const refused = (ov.counters || {}).auth_errors || 0;
  $("fleet-states").textContent = Object.entries(ov.states || {}).map(([s, c]) => c + " " + s).join(", ") +
    (refused ? " · " + refused + " clients refused by NATS" : "");
  const banner = $("banner");
  banner.textContent = conn.error || "";
  banner.hidden = !conn.error;
}

async function poll() {
  try {
    const { body } = await getJSON("/api/fleet/overview");
    state.overview = body;
    state.errors = 0;
    renderHeader(body);
    renderNodes(body.nodes || []);
    renderCards(body.nodes || []);
  } catch (err) {
    state.errors++;
    const banner = $("banner");
    banner.textContent = err.message;
    banner.hidden = false;
  }
}

async function search(event) {
  if (event) event.preventDefault();
  const q = $("q").value.trim();
  const since = $("since").value;
  const kinds = [...document.querySelectorAll("#search-form input[name=kind]:checked")].map((i) => i.value);
  const params = new URLSearchParams({ q, kind: kinds.join(",") });
  if (since) params.set("since", since);
  const table = $("results");
  const body = table.querySelector("tbody");
  try {
    const { body: result } = await getJSON("/api/fleet/search?" + params.toString());
    state.search = result;
    clear(body);
    for (const r of result.results) {
      body.appendChild(el("tr", { "data-node": r.node, "data-kind": r.kind },
        el("td", { class: "nowrap" }, nodeLink(r.node)), el("td", null, r.kind),
        el("td", { class: "small nowrap" }, r.time ? fmtTime(r.time) : ""), el("td", null, brief(r.summary))));
    }
    table.hidden = false;
    $("search-count").textContent = result.results.length + " found" + (result.truncated ? " (more: narrow the search)" : "");
  } catch (err) {
    $("search-count").textContent = err.message;
  }
}

$("search-form").addEventListener("submit", search);
poll();
setInterval(poll, POLL_MS);
