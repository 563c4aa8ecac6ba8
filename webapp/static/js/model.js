// The browser's copy of the namespace graph: a full snapshot plus versioned
// diffs (docs/ARCHITECTURE.md "Graph JSON").  No DOM here, so it can be
// exercised on its own.
//
// Removed namespaces are kept for a while as "ghosts" (alive=false) so a
// short-lived namespace - `docker run --rm ... ls` lives ~100 ms - can still be
// seen, highlighted as ended, instead of flickering out before a human looks.

import { isMembership } from "./vocab.js";

export const ENTITY_MAPS = { namespace: "namespaces", process: "processes", container: "containers", join: "joins" };

function keyOf(entity, obj) {
  if (entity === "process") return String(obj.pid);
  if (entity === "container") return String(obj.name || obj.id);
  return String(obj.id);
}

export function parseNsId(id) {
  // "{type}:{dev}:{inode}:{generation}"
  const parts = String(id).split(":");
  if (parts.length < 3) return null;
  const inode = Number(parts[2]);
  return { type: parts[0], dev: Number(parts[1]), inode: Number.isFinite(inode) ? inode : null, generation: Number(parts[3] || 0) };
}

export class GraphModel {
  constructor({ ghostSeconds = 30 } = {}) {
    this.ghostSeconds = ghostSeconds;
    this.reset();
  }

  reset() {
    this.version = -1;
    this.time = null;
    this.node = "";
    this.hostNs = {};
    this.counters = {};
    this.namespaces = new Map();
    this.processes = new Map();
    this.containers = new Map();
    this.joins = new Map();
    this.ghosts = new Map();          // namespace id -> {ns, until}
    this.skipped = 0;                 // malformed changes ignored
  }

  // Replace everything with a full /api/graph answer.  Returns the change
  // summary (what appeared/disappeared compared with before) for highlighting.
  loadFull(graph) {
    if (!graph || typeof graph !== "object" || !Array.isArray(graph.namespaces)) {
      throw new Error("the graph JSON has no namespaces list");
    }
    const before = new Set(this.namespaces.keys());
    const hadData = this.version >= 0;
    const now = Date.now() / 1000;
    const oldNs = this.namespaces;
    this.namespaces = new Map();
    this.processes = new Map();
    this.containers = new Map();
    this.joins = new Map();
    for (const [entity, mapName] of Object.entries(ENTITY_MAPS)) {
      for (const obj of graph[mapName] || []) {
        if (!obj || typeof obj !== "object") { this.skipped++; continue; }
        this[mapName].set(keyOf(entity, obj), obj);
      }
    }
    this.version = Number(graph.version ?? 0);
    this.time = graph.time ?? null;
    this.node = graph.node || "";
    this.hostNs = graph.host_ns || {};
    this.counters = graph.counters || {};
    const summary = { added: [], removed: [], updated: [], joins: [] };
    if (hadData) {
      for (const id of this.namespaces.keys()) if (!before.has(id)) summary.added.push(id);
      for (const id of before) {
        if (!this.namespaces.has(id)) {
          summary.removed.push(id);
          this._ghost(oldNs.get(id), now);
        }
      }
    }
    for (const id of this.namespaces.keys()) this.ghosts.delete(id);
    return summary;
  }

  // Apply one diff.  Returns null when it cannot be applied in order (a gap:
  // the caller must re-fetch the whole graph), else the change summary.
  applyDiff(diff) {
    if (!diff || typeof diff !== "object" || !Array.isArray(diff.changes)) {
      this.skipped++;
      return { added: [], removed: [], updated: [], joins: [], stale: true };
    }
    const version = Number(diff.version);
    if (!Number.isFinite(version)) { this.skipped++; return { added: [], removed: [], updated: [], joins: [], stale: true }; }
    if (version <= this.version) return { added: [], removed: [], updated: [], joins: [], stale: true };
    // A diff that says what it was computed from lets us see a gap; without
    // `since`, diffs are upserts and stay correct when replayed over newer state.
    if (diff.since !== undefined && diff.since !== null && Number(diff.since) > this.version) return null;
    const summary = { added: [], removed: [], updated: [], joins: [], stale: false };
    const now = Date.now() / 1000;
    for (const change of diff.changes) {
      if (!change || typeof change !== "object" || !ENTITY_MAPS[change.entity]) { this.skipped++; continue; }
      const map = this[ENTITY_MAPS[change.entity]];
      const key = change.entity === "process" ? String(change.id ?? change.data?.pid) : String(change.id ?? change.data?.id);
      if (key === "undefined") { this.skipped++; continue; }
      if (change.op === "remove") {
        const old = map.get(key) || this._findContainer(change.entity, key);
        if (old !== undefined) {
          map.delete(change.entity === "container" ? keyOf("container", old) : key);
          if (change.entity === "namespace") { this._ghost(old, now); summary.removed.push(key); }
        }
        continue;
      }
      if (change.op !== "add" && change.op !== "update") { this.skipped++; continue; }
      if (!change.data || typeof change.data !== "object") { this.skipped++; continue; }
      let mapKey = key;
      if (change.entity === "container") {
        const old = this._findContainer("container", key);
        if (old) map.delete(keyOf("container", old));
        mapKey = keyOf("container", { id: key, ...change.data });
      }
      const existed = map.has(mapKey);
      const merged = existed ? Object.assign({}, map.get(mapKey), change.data) : { ...change.data };
      map.set(mapKey, merged);
      if (change.entity === "namespace") {
        this.ghosts.delete(mapKey);
        if (!existed) summary.added.push(mapKey);
        else summary.updated.push(mapKey);
        if (existed && merged.alive === false) summary.removed.push(mapKey);
      } else if (change.entity === "join") {
        if (!existed) summary.joins.push(mapKey);
        summary.joinsTouched = true;
      }
    }
    this.version = version;
    if (diff.counters) this.counters = diff.counters;
    return summary;
  }

  _findContainer(entity, key) {
    if (entity !== "container") return undefined;
    if (this.containers.has(key)) return this.containers.get(key);
    for (const c of this.containers.values()) if (c.id === key || c.name === key) return c;
    return undefined;
  }

  _ghost(ns, now) {
    if (!ns) return;
    const ghost = { ...ns, alive: false, ended: ns.ended || now, ghost: true };
    this.ghosts.set(ns.id, { ns: ghost, until: now + this.ghostSeconds });
  }

  // Pin a namespace we only know by id (a demo said it created it, but it was
  // gone before any diff reached us) as a ghost so it can be shown.
  addGhostFromId(id, extra = {}, seconds = null) {
    if (this.namespaces.has(id)) return;
    const parsed = parseNsId(id);
    if (!parsed) return;
    const now = Date.now() / 1000;
    const ns = { id, type: parsed.type, dev: parsed.dev, inode: parsed.inode, alive: false, pids: [], ghost: true, ...extra };
    this.ghosts.set(id, { ns, until: now + (seconds ?? this.ghostSeconds) });
  }

  expireGhosts(now = Date.now() / 1000) {
    let changed = false;
    for (const [id, g] of this.ghosts) if (g.until <= now) { this.ghosts.delete(id); changed = true; }
    return changed;
  }

  // Namespaces to draw: the live ones plus the ghosts.
  allNamespaces() {
    const out = Array.from(this.namespaces.values());
    for (const g of this.ghosts.values()) out.push(g.ns);
    return out;
  }

  getNamespace(id) {
    return this.namespaces.get(id) || this.ghosts.get(id)?.ns;
  }

  isHostNs(id) {
    if (!id) return false;
    for (const v of Object.values(this.hostNs)) if (v === id) return true;
    return false;
  }

  // Where a namespace or process belongs in the picture: a container, the host
  // (the initial namespaces), or "other" (made by unshare & co. outside containers).
  groupOfNamespace(ns) {
    if (ns.container) return "c:" + ns.container;
    if (this.isHostNs(ns.id)) return "host";
    // Not attributed by the graph, but its members all live in one container
    // (e.g. a container's ipc namespace): draw it with that container.
    const owner = this._nsContainerIndex().get(ns.id);
    if (owner) return "c:" + owner;
    return "other";
  }

  // namespace id -> the container its member processes belong to, when that
  // is a single container.  Cached per graph version.
  _nsContainerIndex() {
    const stamp = this.version + ":" + this.processes.size;
    if (this._nsIndexStamp === stamp) return this._nsIndex;
    const index = new Map();
    const mixed = new Set();
    for (const proc of this.processes.values()) {
      for (const [type, id] of Object.entries(proc.ns || {})) {
        if (!id || !isMembership(type) || mixed.has(id)) continue;
        const c = proc.container || null;
        if (!index.has(id)) index.set(id, c);
        else if (index.get(id) !== c) { index.delete(id); mixed.add(id); }
      }
    }
    for (const [id, c] of index) if (!c) index.delete(id);
    this._nsIndex = index;
    this._nsIndexStamp = stamp;
    return index;
  }

  groupOfProcess(proc) {
    if (proc.container) return "c:" + proc.container;
    const ns = proc.ns || {};
    for (const [type, id] of Object.entries(ns)) {
      if (!isMembership(type)) continue;
      if (id && this.hostNs[type] && id !== this.hostNs[type]) return "other";
    }
    return "host";
  }

  // Process members per namespace id, derived from the processes' ns maps
  // (cheaper to trust than each namespace's pids list, which may be capped).
  membersByNamespace() {
    const members = new Map();
    for (const proc of this.processes.values()) {
      for (const [type, id] of Object.entries(proc.ns || {})) {
        if (!isMembership(type) || !id) continue;
        let list = members.get(id);
        if (!list) members.set(id, (list = []));
        list.push(proc.pid);
      }
    }
    return members;
  }
}
