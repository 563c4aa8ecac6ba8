// Search and filter state, and the predicates the views share.

import { NS_TYPES } from "./vocab.js";

export class Filters {
  constructor() {
    this.types = new Set(NS_TYPES);
    this.container = "";   // "" all, "host", "other", or a container name
    this.pid = "";
    this.comm = "";
    this.search = "";
  }

  get active() {
    return this.types.size !== NS_TYPES.length || this.container !== "" || this.pid !== "" || this.comm !== "";
  }

  get processFilter() {
    return this.pid !== "" || this.comm !== "";
  }

  typeShown(type) {
    return this.types.has(type);
  }

  groupShown(group) {
    if (this.container === "") return true;
    if (this.container === "host" || this.container === "other") return group === this.container;
    return group === "c:" + this.container;
  }

  processMatches(proc) {
    if (this.pid !== "") {
      const wanted = this.pid.split(/[\s,]+/).filter(Boolean);
      if (!wanted.includes(String(proc.pid)) && !wanted.includes(String(proc.ppid) + "^")) return false;
    }
    if (this.comm !== "") {
      const needle = this.comm.toLowerCase();
      if (!String(proc.comm || "").toLowerCase().includes(needle)) return false;
    }
    return true;
  }

  // Free-text search over everything a user may type: an inode, a pid, a
  // comm, a container name, part of an id or command line.
  searchMatches(text) {
    if (!this.search) return false;
    return text.toLowerCase().includes(this.search.toLowerCase());
  }
}

export function namespaceSearchText(ns) {
  return [ns.id, ns.type, ns.inode, ns.ns_id, ns.container, ns.creator && ns.creator.comm, ns.creator && ns.creator.pid]
    .filter((v) => v !== undefined && v !== null).join(" ");
}

export function processSearchText(proc) {
  return [proc.pid, proc.comm, proc.cmdline, proc.container].filter((v) => v !== undefined && v !== null).join(" ");
}
