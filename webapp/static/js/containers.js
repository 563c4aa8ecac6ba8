// One row per container for the overview: what it is, which namespaces it has,
// which of them are the host's, which it shares with other containers, and its
// recent join sessions.  Pure (a GraphModel in, rows out), so the browser tests
// check it without a page.

import { NS_TYPES } from "./vocab.js";

export const RECENT_SECONDS = 600;

// The namespace set (slot -> id) a container lives in: its init process's, else
// any of its processes', else the namespaces the graph attributes to it.
export function nsSetOf(model, c, anyProc) {
  const init = c.pid !== undefined && c.pid !== null ? model.processes.get(String(c.pid)) : null;
  if (init && init.ns && (!init.container || init.container === c.name)) return init.ns;
  const p = anyProc && anyProc.get(c.name);
  if (p && p.ns) return p.ns;
  const ns = {};
  for (const n of model.namespaces.values()) if (n.container === c.name && n.alive !== false && !ns[n.type]) ns[n.type] = n.id;
  return ns;
}

export function containerName(c) {
  return c.name || String(c.id || "?").slice(0, 12);
}

// rows: [{name, image, runtime, state, ns, procs, own: [types], host: [types],
//         shared: [{type, id, with: [names]}], nsCount, joins, lastJoin, recentJoins, text}]
export function containerRows(model, now = Date.now() / 1000) {
  const procs = new Map();
  const anyProc = new Map();
  for (const p of model.processes.values()) {
    if (!p.container) continue;
    procs.set(p.container, (procs.get(p.container) || 0) + 1);
    if (!anyProc.has(p.container)) anyProc.set(p.container, p);
  }
  const rows = [];
  const users = new Map();             // namespace id -> container names using it
  for (const c of model.containers.values()) {
    const name = containerName(c);
    const ns = nsSetOf(model, c, anyProc);
    rows.push({ name, id: c.id || "", image: c.image || "", runtime: c.runtime || "", state: c.state || "",
      ns, procs: procs.get(c.name) || 0 });
    for (const t of NS_TYPES) {
      const id = ns[t];
      if (!id || model.hostNs[t] === id) continue;
      let list = users.get(id);
      if (!list) users.set(id, (list = []));
      list.push(name);
    }
  }
  const joins = joinsByContainer(model);
  const notable = notableHostTypes(rows, model);
  for (const r of rows) {
    r.own = []; r.host = []; r.shared = [];
    for (const t of NS_TYPES) {
      const id = r.ns[t];
      if (!id) continue;
      if (model.hostNs[t] === id) { r.host.push(t); continue; }
      const others = (users.get(id) || []).filter((n) => n !== r.name);
      if (others.length) r.shared.push({ type: t, id, with: others });
      else r.own.push(t);
    }
    r.nsCount = r.own.length + r.shared.length;
    r.hostNotable = r.host.filter((t) => notable.has(t));
    const js = joins.get(r.name) || [];
    r.joins = js.length;
    r.lastJoin = js.length ? Math.max(...js.map((j) => j.start || 0)) : null;
    r.recentJoins = js.filter((j) => (j.start || 0) >= now - RECENT_SECONDS).length;
    r.sharedWith = Array.from(new Set(r.shared.flatMap((s) => s.with))).sort();
    r.text = [r.name, r.id.slice(0, 12), r.image, r.runtime, r.state, r.hostNotable.map((t) => "host-" + t).join(" "),
      r.shared.map((s) => s.type + " " + s.with.join(" ")).join(" ")].join(" ").toLowerCase();
  }
  return rows;
}

// Every Docker container shares the host's user and time namespaces unless told
// otherwise; that is the runtime's default, not news.  Sharing a type with the
// host is notable when most containers here have their own of that type (so
// --pid host or --network host stands out, and a host with user-namespace
// remapping shows its exceptions too).
export function notableHostTypes(rows, model) {
  const own = new Map();
  let known = 0;
  for (const r of rows) {
    if (!Object.keys(r.ns).length) continue;
    known++;
    for (const t of NS_TYPES) if (r.ns[t] && r.ns[t] !== model.hostNs[t]) own.set(t, (own.get(t) || 0) + 1);
  }
  return new Set(NS_TYPES.filter((t) => (own.get(t) || 0) * 2 >= known && known > 0));
}

function joinsByContainer(model) {
  const out = new Map();
  for (const j of model.joins.values()) {
    if (!j.container) continue;
    let list = out.get(j.container);
    if (!list) out.set(j.container, (list = []));
    list.push(j);
  }
  return out;
}

// What the summary line says first: who shares with the host, who with another container.
export function sharingSummary(rows) {
  const hostByType = new Map();
  const sharedByType = new Map();
  let hostRows = 0, sharedRows = 0;
  const groups = new Map();            // shared namespace id -> {type, names}
  for (const r of rows) {
    if (r.hostNotable.length) hostRows++;
    for (const t of r.hostNotable) hostByType.set(t, (hostByType.get(t) || 0) + 1);
    if (r.shared.length) sharedRows++;
    for (const s of r.shared) {
      sharedByType.set(s.type, (sharedByType.get(s.type) || 0) + 1);
      if (!groups.has(s.id)) groups.set(s.id, { type: s.type, id: s.id, names: [r.name, ...s.with].sort() });
    }
  }
  return { hostRows, sharedRows, hostByType, sharedByType, groups: Array.from(groups.values()) };
}

// --- filtering and sorting (the overview's controls) ---------------------------

export const SORT_KEYS = {
  name: (r) => r.name, image: (r) => r.image, runtime: (r) => r.runtime, state: (r) => r.state,
  ns: (r) => r.nsCount, host: (r) => r.hostNotable.length, shared: (r) => r.shared.length,
  joins: (r) => r.lastJoin || 0, procs: (r) => r.procs,
};

// filter: {text, state: "" | "running" | "other", share: "" | "host" | "container" | "none"}
export function filterRows(rows, f) {
  const needle = (f.text || "").trim().toLowerCase();
  return rows.filter((r) => {
    if (needle && !r.text.includes(needle)) return false;
    if (f.state === "running" && r.state !== "running") return false;
    if (f.state === "other" && r.state === "running") return false;
    if (f.share === "host" && !r.hostNotable.length) return false;
    if (f.share === "container" && !r.shared.length) return false;
    if (f.share === "none" && (r.shared.length || r.hostNotable.length)) return false;
    return true;
  });
}

export function sortRows(rows, key, desc) {
  const get = SORT_KEYS[key] || SORT_KEYS.name;
  const sign = desc ? -1 : 1;
  return rows.sort((a, b) => {
    const x = get(a), y = get(b);
    if (x < y) return -sign;
    if (x > y) return sign;
    return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
  });
}
