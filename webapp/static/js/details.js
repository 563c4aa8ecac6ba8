// The details panel: a namespace, a process (its namespaces next to the
// host's), a container, a join session, or a single trace event.  It shows
// what the browser already knows at once, then adds the server's details.

import { el, clear, fmtTime } from "./dom.js";
import { getJSON } from "./api.js";
import { typeColor } from "./colors.js";
import { NS_TYPES, SLOT_TYPE, isMembership } from "./vocab.js";
import { insideSection, joinInside } from "./inside.js";

function kv(rows) {
  return el("table", { class: "kv" }, rows.filter((r) => r && r[1] !== undefined && r[1] !== null && r[1] !== "")
    .map(([k, v]) => el("tr", null, el("th", { text: k }), el("td", null, v instanceof Node ? v : String(v)))));
}

function nsLink(id, go, label) {
  if (!id) return "–";
  const type = String(id).split(":")[0];
  return el("a", { href: "#", class: "nslink", dataset: { ns: id }, onclick: (e) => { e.preventDefault(); go("ns", id); } },
    el("span", { class: "swatch", style: { background: typeColor(type) } }), label || id);
}

function pidLink(pid, go, comm) {
  return el("a", { href: "#", onclick: (e) => { e.preventDefault(); go("proc", String(pid)); } }, (comm ? comm + " " : "") + "[" + pid + "]");
}

function extraFields(obj, known) {
  const rows = [];
  for (const [k, v] of Object.entries(obj || {})) {
    if (known.has(k) || v === null || v === undefined) continue;
    rows.push([k, typeof v === "object" ? JSON.stringify(v) : String(v)]);
  }
  return rows.length ? el("details", null, el("summary", { text: "more fields" }), kv(rows)) : null;
}

export class DetailsPanel {
  constructor(root, { getModel, onShow }) {
    this.root = root;
    this.getModel = getModel;
    this.onShow = onShow || (() => {});
    this.current = null;
    this.token = 0;
  }

  show(kind, id) {
    this.current = { kind, id };
    const token = ++this.token;
    const go = (k, i) => this.show(k, i);
    clear(this.root);
    this.root.dataset.kind = kind;
    this.root.dataset.id = typeof id === "object" ? "" : String(id);
    const model = this.getModel();
    let local = null;
    let path = null;
    if (kind === "ns") {
      local = model.getNamespace(id);
      this.root.appendChild(this.renderNamespace(id, local, model, go));
      path = "/api/namespace/" + encodeURIComponent(id);
    } else if (kind === "proc") {
      local = model.processes.get(String(id));
      this.root.appendChild(this.renderProcess(id, local, model, go));
      path = "/api/process/" + encodeURIComponent(id);
    } else if (kind === "container") {
      local = model.containers.get(String(id));
      this.root.appendChild(this.renderContainer(id, local, model, go));
      path = "/api/container/" + encodeURIComponent(id);
    } else if (kind === "join") {
      local = model.joins.get(String(id));
      this.root.appendChild(this.renderJoin(id, local, model, go));
      path = "/api/join/" + encodeURIComponent(id);
    } else if (kind === "event") {
      this.root.appendChild(this.renderEvent(id, model, go));
    }
    this.onShow(kind, id);
    if (!path) return;
    const status = el("p", { class: "muted small", text: "loading details from the server…" });
    this.root.appendChild(status);
    getJSON(path, { allow: [404] }).then(({ status: code, body }) => {
      if (token !== this.token) return;
      if (code === 404) {
        status.textContent = local ? "the server no longer has it (ended); shown as last seen" : "not found on the server";
        return;
      }
      status.remove();
      if (!local && body && typeof body === "object") {
        // Something only the server knows (e.g. a namespace from history): redraw from its answer.
        clear(this.root);
        // The graph's lookups (tracer/graph/schema.py): NamespaceDetail, ProcessJSON,
        // ContainerDetail ({container, processes, namespaces}), JoinJSON.
        const r = kind === "ns" ? this.renderNamespace(id, body, model, go)
          : kind === "proc" ? this.renderProcess(id, body, model, go)
          : kind === "container" ? this.renderContainer(id, body.container, model, go)
          : this.renderJoin(id, body, model, go);
        this.root.appendChild(r);
      }
      this.root.appendChild(el("details", { class: "server" }, el("summary", { text: "server details (JSON)" }),
        el("pre", { class: "json", text: JSON.stringify(body, null, 2) })));
    }).catch((err) => {
      if (token === this.token) status.textContent = err.message;
    });
  }

  renderNamespace(id, ns, model, go) {
    const type = String(id).split(":")[0];
    const box = el("div", { class: "detail" });
    box.appendChild(el("h3", null, el("span", { class: "swatch", style: { background: typeColor(type) } }), type + " namespace"));
    if (!ns) {
      box.appendChild(el("p", { class: "muted", text: id }));
      return box;
    }
    const members = model.membersByNamespace().get(id) || ns.pids || [];
    const creator = ns.creator
      ? el("span", null, pidLink(ns.creator.pid, go, ns.creator.comm), " via " + (ns.creator.syscall || "?") +
          (ns.creator.flags && ns.creator.flags.length ? " (" + ns.creator.flags.join("|") + ")" : "") +
          (ns.creator.ts ? " at " + fmtTime(ns.creator.ts) : ""))
      : "unknown (existed before tracing started)";
    box.appendChild(kv([
      ["id", id],
      ["inode", ns.inode],
      ["ns_id", ns.ns_id],
      ["device", ns.dev],
      ["state", ns.alive === false ? "ended" + (ns.ended ? " at " + fmtTime(ns.ended) : "") : "alive"],
      ["host's", model.isHostNs(id) ? "yes, the initial " + type + " namespace" : null],
      ["created", ns.created ? fmtTime(ns.created) : null],
      ["creator", creator],
      ["container", ns.container ? el("a", { href: "#", onclick: (e) => { e.preventDefault(); go("container", ns.container); } }, ns.container) : null],
      ["owner (user ns)", ns.owner_id ? nsLink(ns.owner_id, go) : ns.owner],
      ["parent", ns.parent_id ? nsLink(ns.parent_id, go) : ns.parent],
      ["owner uid", ns.owner_uid],
      ["pinned at", (ns.pinned || []).length ? ns.pinned.join(", ") : null],
      ["held by fds of", (ns.holders || []).length ? ns.holders.join(", ") : null],
    ]));
    box.appendChild(el("h4", { text: "members (" + members.length + ")" }));
    const list = el("ul", { class: "members" });
    for (const pid of members.slice(0, 200)) {
      const p = model.processes.get(String(pid));
      list.appendChild(el("li", null, pidLink(pid, go, p ? p.comm : "")));
    }
    if (members.length > 200) list.appendChild(el("li", { text: "… and " + (members.length - 200) + " more" }));
    box.appendChild(list);
    if (ns.alive !== false) box.appendChild(insideSection(id, ns, model));
    box.appendChild(extraFields(ns, new Set(["id", "type", "inode", "ns_id", "dev", "alive", "created", "ended", "creator", "pids", "container", "owner", "owner_id", "parent", "parent_id", "owner_uid", "pinned", "holders", "ghost", "processes"])));
    return box;
  }

  renderProcess(pid, p, model, go) {
    const box = el("div", { class: "detail" });
    box.appendChild(el("h3", { text: "process " + pid + (p ? " (" + p.comm + ")" : "") }));
    if (!p) return box;
    box.appendChild(kv([
      ["pid", p.pid], ["ppid", el("span", null, pidLink(p.ppid, go))], ["uid", p.uid], ["comm", p.comm],
      ["command line", p.cmdline], ["container", p.container],
    ]));
    box.appendChild(el("h4", { text: "its namespaces next to the host's" }));
    const table = el("table", { class: "nscompare" }, el("tr", null, el("th", { text: "type" }), el("th", { text: "this process" }), el("th", { text: "host" }), el("th", { text: "" })));
    const types = NS_TYPES.concat(Object.keys(p.ns || {}).filter((t) => !NS_TYPES.includes(t)));
    for (const t of types) {
      const mine = (p.ns || {})[t];
      const host = model.hostNs[t];
      if (!mine && !host) continue;
      const same = mine && mine === host;
      table.appendChild(el("tr", { class: same ? "same" : "differs" },
        el("td", null, el("span", { class: "swatch", style: { background: typeColor(SLOT_TYPE[t] || t) } }), t),
        el("td", null, mine ? nsLink(mine, go, mine.split(":")[2]) : "–"),
        el("td", null, host ? nsLink(host, go, host.split(":")[2]) : "–"),
        el("td", { text: same ? "host's" : mine ? "own" : "" })));
    }
    box.appendChild(table);
    return box;
  }

  renderContainer(name, c, model, go) {
    const box = el("div", { class: "detail" });
    box.appendChild(el("h3", { text: "container " + name }));
    if (!c) return box;
    box.appendChild(kv([
      ["name", c.name], ["id", c.id ? String(c.id).slice(0, 12) : null], ["image", c.image], ["runtime", c.runtime],
      ["state", c.state], ["init pid", c.pid ? pidLink(c.pid, go) : null],
      ["labels", c.labels && Object.keys(c.labels).length ? Object.entries(c.labels).map(([k, v]) => k + "=" + v).join(", ") : null],
    ]));
    box.appendChild(el("h4", { text: "namespaces" }));
    const init = model.processes.get(String(c.pid));
    const list = el("ul", { class: "members" });
    const seen = new Set();
    for (const ns of model.allNamespaces()) {
      if (ns.container !== c.name) continue;
      seen.add(ns.id);
      list.appendChild(el("li", null, nsLink(ns.id, go, ns.type + " " + ns.inode)));
    }
    if (init) for (const [t, id] of Object.entries(init.ns || {})) {
      if (seen.has(id) || !isMembership(t)) continue;
      list.appendChild(el("li", null, nsLink(id, go, t + " " + id.split(":")[2]), model.isHostNs(id) ? " (host's)" : " (shared)"));
    }
    box.appendChild(list);
    const procs = Array.from(model.processes.values()).filter((p) => p.container === c.name);
    box.appendChild(el("h4", { text: "processes (" + procs.length + ")" }));
    box.appendChild(el("ul", { class: "members" }, procs.slice(0, 100).map((p) => el("li", null, pidLink(p.pid, go, p.comm)))));
    return box;
  }

  renderJoin(id, j, model, go) {
    const box = el("div", { class: "detail" });
    box.appendChild(el("h3", { text: "join session #" + id }));
    if (!j) return box;
    box.appendChild(el("p", { class: "summary", text: j.summary || "" }));
    box.appendChild(kv([
      ["process", pidLink(j.pid, go, j.comm)], ["tool", j.tool], ["container", j.container],
      ["command", j.command], ["exec pid", j.exec_pid ? pidLink(j.exec_pid, go) : null],
      ["types", (j.types || []).join(", ")], ["start", fmtTime(j.start)], ["end", fmtTime(j.end)],
    ]));
    box.appendChild(el("h4", { text: "joined namespaces" }));
    box.appendChild(el("ul", { class: "members" }, Object.entries(j.target || {}).map(([t, nid]) =>
      el("li", null, nsLink(nid, go, t + " " + String(nid).split(":")[2])))));
    box.appendChild(joinInside(j, model));
    return box;
  }

  renderEvent(ev, model, go) {
    const box = el("div", { class: "detail" });
    box.appendChild(el("h3", { text: ev.kind + " event #" + ev.seq }));
    box.appendChild(kv([
      ["time", fmtTime(ev._t ?? ev.ts)], ["process", pidLink(ev.pid, go, ev.comm)], ["syscall", ev.syscall],
      ["flags", (ev.flags || []).join("|")], ["result", ev.ret < 0 ? "failed: " + (ev.errno_name || ev.ret) : ev.ret],
      ["container", ev.container], ["child", ev.child_pid ? pidLink(ev.child_pid, go) : null], ["file", ev.filename],
    ]));
    const changed = el("table", { class: "nscompare" }, el("tr", null, el("th", { text: "type" }), el("th", { text: "before" }), el("th", { text: "after" })));
    for (const [t, inode] of Object.entries(ev.ns || {})) {
      const before = ev.ns_before ? ev.ns_before[t] : undefined;
      changed.appendChild(el("tr", { class: before !== undefined && before !== inode ? "differs" : "same" },
        el("td", { text: t }), el("td", { text: before ?? "" }), el("td", { text: inode })));
    }
    box.appendChild(changed);
    box.appendChild(el("details", null, el("summary", { text: "raw event" }), el("pre", { class: "json", text: JSON.stringify(ev, (k, v) => (k === "_t" ? undefined : v), 2) })));
    return box;
  }
}
