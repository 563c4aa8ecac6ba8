// The focused graph: a subject (a container, a namespace, a process or a join
// session) with the host and everything it shares or joined, one hop out,
// instead of every node at once.  More subjects can be added ("expand") to
// follow a neighbour.  Pure: a GraphModel and subjects in, a smaller GraphModel
// (which the figure draws like any other) and the neighbours out.

import { GraphModel } from "./model.js";
import { NS_TYPES, isMembership } from "./vocab.js";

// "container:web", "ns:net:4:4026532177:0", "proc:812", "join:3" <-> {kind, id}
export function parseSubject(text) {
  const s = String(text || "");
  const i = s.indexOf(":");
  if (i <= 0) return null;
  const kind = s.slice(0, i), id = s.slice(i + 1);
  return ["container", "ns", "proc", "join"].includes(kind) && id ? { kind, id } : null;
}

export function subjectText(subject) {
  return subject ? subject.kind + ":" + subject.id : "";
}

function memberships(proc) {
  return Object.entries(proc.ns || {}).filter(([slot, id]) => id && isMembership(slot)).map(([, id]) => id);
}

// Whether a process is a member of one of `ids`.  Asked of every process of a busy
// host on each focused render: no arrays made per process.
function memberOfAny(proc, ids) {
  const ns = proc.ns;
  if (!ns) return false;
  for (const slot in ns) {
    const id = ns[slot];
    if (id && ids.has(id) && isMembership(slot)) return true;
  }
  return false;
}

// Returns {model, neighbours: [container names one hop away], hostShared: [types],
// found: bool (the first subject exists)}.
export function focusGraph(live, subjects) {
  const pick = { ns: new Set(), pids: new Set(), joins: new Set(), containers: new Set() };
  const hostIds = new Set(Object.values(live.hostNs || {}));
  let found = false;
  subjects.forEach((subject, index) => {
    const ok = addSubject(live, subject, pick);
    if (index === 0) found = ok;
  });
  const subjectPids = new Set(pick.pids);
  // One hop: who else is in the non-host namespaces picked so far.  The host's
  // namespaces are drawn, their thousands of members are not (the hover says how many).
  const neighbours = new Set();
  const inner = new Set(Array.from(pick.ns).filter((id) => !hostIds.has(id)));
  for (const p of live.processes.values()) {
    if (pick.pids.has(p.pid)) continue;
    if (memberOfAny(p, inner)) {
      pick.pids.add(p.pid);
      if (p.container && !pick.containers.has(p.container)) neighbours.add(p.container);
    }
  }
  for (const j of live.joins.values()) {
    if (Object.values(j.target || {}).some((id) => inner.has(id))) pick.joins.add(String(j.id));
  }
  // The host's namespaces are always there: the band to compare against.
  for (const id of hostIds) pick.ns.add(id);
  // Which of the host's namespaces the subject itself (not its neighbours) is in.
  const hostShared = [];
  for (const slot of NS_TYPES) {
    const id = (live.hostNs || {})[slot];
    if (!id) continue;
    for (const pid of subjectPids) {
      const p = live.processes.get(String(pid));
      if (p && p.ns && p.ns[slot] === id) { hostShared.push(slot); break; }
    }
  }
  const model = subModel(live, pick, neighbours);
  drawInSubjectBand(model, live, subjects[0]);
  return { model, neighbours: Array.from(neighbours).sort(), hostShared, found };
}

// A namespace several containers share is attributed by the graph to one of
// them; in a container's focused view all of the subject's namespaces are drawn
// in its own band (the data is unchanged: hovers and details say whose it is).
function drawInSubjectBand(model, live, subject) {
  if (!subject || subject.kind !== "container") return;
  const band = "c:" + subject.id;
  const mine = new Set();
  for (const p of model.processes.values()) if (p.container === subject.id) for (const id of memberships(p)) mine.add(id);
  const groupOf = model.groupOfNamespace.bind(model);
  model.groupOfNamespace = (ns) => (mine.has(ns.id) && !live.isHostNs(ns.id) ? band : groupOf(ns));
}

function addSubject(live, subject, pick) {
  if (!subject) return false;
  const { kind, id } = subject;
  if (kind === "container") {
    pick.containers.add(id);
    let any = live.containers.has(id);
    for (const p of live.processes.values()) {
      if (p.container !== id) continue;
      any = true;
      pick.pids.add(p.pid);
      for (const nid of memberships(p)) pick.ns.add(nid);
    }
    for (const ns of live.allNamespaces()) if (ns.container === id) { pick.ns.add(ns.id); any = true; }
    for (const j of live.joins.values()) if (j.container === id) pick.joins.add(String(j.id));
    return any;
  }
  if (kind === "ns") {
    const ns = live.getNamespace(id);
    if (!ns) return false;
    pick.ns.add(id);
    if (ns.owner_id) pick.ns.add(ns.owner_id);
    if (ns.parent_id) pick.ns.add(ns.parent_id);
    const just = new Set([id]);
    for (const p of live.processes.values()) if (memberOfAny(p, just)) pick.pids.add(p.pid);
    for (const j of live.joins.values()) if (Object.values(j.target || {}).includes(id)) pick.joins.add(String(j.id));
    return true;
  }
  if (kind === "proc") {
    const p = live.processes.get(String(id));
    if (!p) return false;
    pick.pids.add(p.pid);
    for (const nid of Object.values(p.ns || {})) if (nid) pick.ns.add(nid);
    if (p.container) pick.containers.add(p.container);
    for (const j of live.joins.values()) if (j.pid === p.pid || j.exec_pid === p.pid) pick.joins.add(String(j.id));
    return true;
  }
  if (kind === "join") {
    const j = live.joins.get(String(id));
    if (!j) return false;
    pick.joins.add(String(j.id));
    for (const pid of [j.pid, j.exec_pid]) if (pid && live.processes.has(String(pid))) pick.pids.add(pid);
    for (const nid of Object.values(j.target || {})) pick.ns.add(nid);
    if (j.container) pick.containers.add(j.container);
    return true;
  }
  return false;
}

function subModel(live, pick, neighbours) {
  const m = new GraphModel({ ghostSeconds: 0 });
  m.version = live.version;
  m.time = live.time;
  m.node = live.node;
  m.hostNs = live.hostNs;
  m.counters = live.counters;
  for (const id of pick.ns) {
    const ns = live.namespaces.get(id);
    if (ns) m.namespaces.set(id, ns);
    else if (live.ghosts.has(id)) m.ghosts.set(id, live.ghosts.get(id));
  }
  for (const pid of pick.pids) {
    const p = live.processes.get(String(pid));
    if (p) m.processes.set(String(pid), p);
  }
  for (const name of new Set([...pick.containers, ...neighbours])) {
    const c = live.containers.get(name);
    if (c) m.containers.set(name, c);
  }
  for (const jid of pick.joins) {
    const j = live.joins.get(jid);
    if (j) m.joins.set(jid, j);
  }
  return m;
}
