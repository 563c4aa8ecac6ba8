// Step 1 of the figure (figure.js): which processes and namespaces the filters
// let through, and which of them fold into counted nodes (busy namespace sets,
// piles of ended namespaces, the latest join sessions).

import { NS_TYPES } from "./vocab.js";

const MAX_JOINS_SHOWN = 12;
const ENDED_LIMIT = 4;           // ended namespaces per cell before they fold into one node
const FILTERED_PROCESS_LIMIT = 200;

function shortSig(proc) {
  return NS_TYPES.map((t) => (proc.ns && proc.ns[t]) || "").join("|");
}

// Processes by group and namespace set ("group|sig" -> [proc]).  With a pid or
// comm filter, the namespaces of the matching processes are the `related` ones.
export function groupProcesses(model, f) {
  const procFilter = f && f.processFilter;
  const related = procFilter ? new Set() : null;
  const groups = new Map();
  for (const proc of model.processes.values()) {
    if (procFilter && !f.processMatches(proc)) continue;
    const group = model.groupOfProcess(proc);
    if (f && !f.groupShown(group)) continue;
    const key = group + "|" + shortSig(proc);
    let list = groups.get(key);
    if (!list) groups.set(key, (list = []));
    list.push(proc);
    if (related) for (const id of Object.values(proc.ns || {})) related.add(id);
  }
  return { groups, related };
}

// Namespaces shown one by one, and piles of ended ones: ended namespaces stay
// drawn for a while as context, but on a busy host (test suites, CI) they pile
// up, so beyond a few per cell they become one counted node.  Pinned ones (a
// demo's, the selection) stay individual.
export function selectNamespaces(model, f, related, pinned, expanded) {
  let namespaces = [];
  for (const ns of model.allNamespaces()) {
    if (f && !f.typeShown(ns.type)) continue;
    if (f && !f.groupShown(model.groupOfNamespace(ns))) continue;
    if (related && !related.has(ns.id)) continue;
    namespaces.push(ns);
  }
  namespaces.sort((a, b) => (a.created || 0) - (b.created || 0) || (a.id < b.id ? -1 : 1));
  const cells = new Map();
  for (const ns of namespaces) {
    if (ns.alive !== false || pinned.has("ns:" + ns.id)) continue;
    const key = model.groupOfNamespace(ns) + "|" + ns.type;
    let list = cells.get(key);
    if (!list) cells.set(key, (list = []));
    list.push(ns);
  }
  const endedPiles = [];
  const folded = new Set();
  for (const [key, list] of cells) {
    if (list.length <= ENDED_LIMIT || expanded.has("end|" + key)) continue;
    for (const ns of list) folded.add(ns.id);
    endedPiles.push({ key: "endc:" + key, cell: key, group: key.slice(0, key.lastIndexOf("|")), type: list[0].type, list });
  }
  if (folded.size) namespaces = namespaces.filter((ns) => !folded.has(ns.id));
  return { namespaces, endedPiles };
}

// One node per process, or one counted node for a busy namespace set (until
// the user opens it).  procNode: pid -> the node that stands for it.
export function processNodes(groups, f, expanded, collapseThreshold) {
  const procNodes = [];
  const procNode = new Map();
  const limit = f && f.processFilter ? FILTERED_PROCESS_LIMIT : collapseThreshold;
  for (const key of Array.from(groups.keys()).sort()) {
    const procs = groups.get(key).sort((a, b) => a.pid - b.pid);
    const group = key.slice(0, key.indexOf("|"));
    if (procs.length > limit && !expanded.has(key)) {
      const nodeKey = "coll:" + key;
      procNodes.push({ key: nodeKey, group, procs, collapsed: true, collKey: key, sigKey: key });
      for (const p of procs) procNode.set(p.pid, nodeKey);
    } else {
      for (const p of procs) {
        const nodeKey = "proc:" + p.pid;
        procNodes.push({ key: nodeKey, group, procs: [p], collapsed: false, sigKey: key });
        procNode.set(p.pid, nodeKey);
      }
    }
  }
  return { procNodes, procNode };
}

// The latest join sessions into namespaces other than the host's (dockerd and
// runc join the host's all the time while wiring up networks: listed, not drawn).
// Adds their items to `items`.
export function shownJoins(model, f, items) {
  const joins = Array.from(model.joins.values())
    .filter((j) => Object.values(j.target || {}).some((id) => !model.isHostNs(id)))
    .sort((a, b) => (b.start || 0) - (a.start || 0)).slice(0, MAX_JOINS_SHOWN).reverse();
  const shown = [];
  for (const j of joins) {
    let group = j.container ? "c:" + j.container : null;
    if (!group) {
      const target = Object.values(j.target || {}).map((id) => model.getNamespace(id)).find((n) => n && !model.isHostNs(n.id));
      group = target ? model.groupOfNamespace(target) : "other";
    }
    if (f && !f.groupShown(group)) continue;
    if (!items.some((it) => it.group === group) && group !== "other") continue;
    items.push({ id: "join:" + j.id, group, column: "join" });
    shown.push(j);
  }
  return shown;
}
