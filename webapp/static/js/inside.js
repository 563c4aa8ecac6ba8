// The inside view: what a namespace contains, as a process inside it sees it -
// hostname, interfaces, processes, mounts, IPC objects, id maps, cgroup root,
// clock offsets (server: webapp/inside.py).  Read on demand only: a namespace's
// details load its view once; the compare panel reads when asked.
//
// The server already turns every view into (label, value) rows ("fields"), so
// this module only lays them out: one table per namespace, or one column per
// namespace when compared.  All text goes in with textContent (dom.js).

import { el, clear, put } from "./dom.js";
import { getJSON } from "./api.js";
import { typeColor } from "./colors.js";
import { NS_TYPES } from "./vocab.js";

// The seed's three commands and the namespace that answers each.
export const SEED = [
  { type: "uts", command: "hostname" },
  { type: "net", command: "ip addr" },
  { type: "pid", command: "ps aux" },
];

let comparePanel = null;

function value(v) {
  return Array.isArray(v) ? el("pre", { class: "inside-lines", text: v.join("\n") }) : String(v ?? "");
}

export function fieldsTable(fields) {
  return el("table", { class: "kv inside-fields" }, (fields || []).map(([label, v]) =>
    el("tr", { dataset: { label } }, el("th", { text: label }), el("td", null, value(v)))));
}

function stateNote(view) {
  if (!view || view.state === "ok") return null;
  return el("p", { class: view.state === "ended" ? "muted small" : "error small",
    text: (view.state === "ended" ? "ended: " : "could not read it: ") + (view.message || "") });
}

// Who a namespace belongs to, in words: the host, a container, or its first member.
export function nsLabel(model, ns) {
  if (!ns) return "?";
  if (model.isHostNs(ns.id)) return "host";
  if (ns.container) return "container " + ns.container;
  const pid = (ns.pids || [])[0];
  const p = pid !== undefined ? model.processes.get(String(pid)) : null;
  return pid !== undefined ? "pid " + pid + (p ? " (" + p.comm + ")" : "") : ns.type + " " + ns.inode;
}

// The details panel's "what it sees" part for one namespace.
export function insideSection(id, ns, model) {
  const type = String(id).split(":")[0];
  const box = el("div", { class: "inside", dataset: { ns: id } });
  const status = el("p", { class: "muted small", text: "reading what it sees…" });
  box.appendChild(el("h4", { text: "what a process inside sees" }));
  box.appendChild(status);
  const host = model.hostNs[type];
  if (comparePanel && host && host !== id) {
    box.appendChild(el("button", { type: "button", class: "inside-compare-host", text: "compare with the host's " + type,
      onclick: () => comparePanel.compareIds(type, [host, id]) }));
  }
  getJSON("/api/namespace/" + encodeURIComponent(id) + "/inside", { allow: [404, 429, 502, 503] })
    .then(({ status: code, body }) => {
      if (code !== 200) {
        status.className = "error small";
        status.textContent = (body && body.error) || (body && body.message) || "HTTP " + code;
        return;
      }
      status.remove();
      const note = stateNote(body);
      if (note) box.insertBefore(note, box.children[1] || null);
      else box.insertBefore(fieldsTable(body.fields), box.children[1] || null);
      box.dataset.state = body.state;
    })
    .catch((err) => { status.className = "error small"; status.textContent = err.message; });
  return box;
}

// A join session's part: the exec'd process is in the target's namespaces, so it
// sees exactly the target's view; the compare panel shows both side by side.
export function joinInside(j, model) {
  const box = el("div", { class: "inside" });
  const init = j.container ? initOf(model, j.container) : null;
  box.appendChild(el("h4", { text: "what the exec'd process saw" }));
  const rows = Object.entries(j.target || {}).filter(([t]) => NS_TYPES.includes(t)).map(([t, id]) => {
    const same = init && init.ns && init.ns[t] === id;
    return el("tr", { class: same ? "same" : "" }, el("td", { text: t }),
      el("td", { text: init ? (same ? "the same " + t + " namespace as " + j.container + "'s init" : "not " + j.container + "'s") : String(id).split(":")[2] }));
  });
  box.appendChild(el("table", { class: "nscompare" }, rows));
  if (comparePanel) {
    box.appendChild(el("button", { type: "button", class: "inside-join", text: "show what it saw, side by side",
      onclick: () => comparePanel.showJoin(j) }));
  }
  return box;
}

function initOf(model, name) {
  const c = model.containers.get(String(name));
  return c && c.pid ? model.processes.get(String(c.pid)) : null;
}

// The namespaces of a container, by type: its init's, else those the graph attributes to it.
function containerNs(model, name) {
  const init = initOf(model, name);
  const out = {};
  if (init && init.ns) Object.assign(out, init.ns);
  for (const ns of model.namespaces.values()) if (ns.container === name && !out[ns.type]) out[ns.type] = ns.id;
  return out;
}

function compareTable(table, headers) {
  const cols = table.columns || [];
  const t = el("table", { class: "nscompare inside-compare", dataset: { type: table.type } });
  t.appendChild(el("tr", null, el("th", { text: "" }), cols.map((c, i) => el("th", { dataset: { col: String(i) } },
    el("div", { text: (headers && headers[i]) || c.label || "" }),
    el("div", { class: "small muted", text: c.type + ":[" + c.inode + "]" })))));
  if (cols.some((c) => c.state !== "ok")) {
    t.appendChild(el("tr", { class: "differs", dataset: { label: "state" } }, el("th", { text: "state" }),
      cols.map((c, i) => el("td", { dataset: { col: String(i) }, text: c.state + (c.message ? ": " + c.message : "") }))));
  }
  for (const row of table.rows || []) {
    t.appendChild(el("tr", { class: row.same ? "same" : "differs", dataset: { label: row.label } }, el("th", { text: row.label }),
      row.values.map((v, i) => el("td", { dataset: { col: String(i) } }, v === null ? "–" : value(v)))));
  }
  return t;
}

export class ComparePanel {
  constructor(root, { getModel }) {
    this.root = root;
    this.getModel = getModel;
    this.typeSelect = el("select", { id: "cmp-type", onchange: () => this.listChoices() },
      NS_TYPES.map((t) => el("option", { value: t, text: t })));
    this.choices = el("div", { class: "cmp-choices", id: "cmp-choices" });
    this.presets = el("div", { class: "cmp-presets", id: "cmp-presets" });
    this.result = el("div", { class: "cmp-result", id: "cmp-result" });
    this.presetKey = "";
    this.choicesKey = "";
    this.runPreset = null;
    put(clear(root),
      el("div", { class: "cmp-controls" }, el("label", { text: "type " }, this.typeSelect), this.choices,
        el("button", { type: "button", id: "cmp-go", text: "compare", onclick: () => this.compareChosen() })),
      this.presets, this.result);
    comparePanel = this;
    this.typeSelect.value = "uts";
  }

  // The graph changed: keep the presets (one per container) and the choices current.
  modelChanged() {
    const model = this.getModel();
    const key = Array.from(model.containers.keys()).sort().join("\n") + "|" + (this.runPreset ? this.runPreset.key : "");
    if (key !== this.presetKey) {
      this.presetKey = key;
      clear(this.presets);
      if (this.runPreset) this.presets.appendChild(this.runPreset.button);
      for (const name of Array.from(model.containers.keys()).sort()) {
        this.presets.appendChild(el("button", { type: "button", class: "cmp-preset", dataset: { container: name },
          text: "host vs " + name + ": hostname · ip addr · ps aux",
          onclick: () => this.seed([{ label: "host", ns: model.hostNs }, { label: "container " + name, ns: containerNs(this.getModel(), name) }]) }));
      }
    }
    this.listChoices();
  }

  // A demo run created namespaces (hostname-ip-ps): offer it against the host.
  offerRun(run, created) {
    if (!run || !created || !created.length) return;
    const model = this.getModel();
    const ns = {};
    for (const id of created) ns[String(id).split(":")[0]] = id;
    if (!SEED.some((s) => ns[s.type])) return;
    // Each poll of the run offers it again: the same offer keeps its button (a button
    // replaced every second could not be clicked).
    const key = String(run.id) + "|" + JSON.stringify(ns);
    if (this.runPreset && this.runPreset.key === key) return;
    const label = run.container ? "demo " + run.container : "demo run " + run.id;
    const button = el("button", { type: "button", class: "cmp-preset cmp-run", dataset: { run: String(run.id) },
      text: "host vs " + label + ": hostname · ip addr · ps aux",
      onclick: () => this.seed([{ label: "host", ns: this.getModel().hostNs }, { label, ns: Object.assign({}, model.hostNs, ns) }]) });
    this.runPreset = { key, button };
    this.presetKey = "";
    this.modelChanged();
  }

  // The live namespaces of the chosen type, as checkboxes (redrawn only when they change).
  listChoices() {
    const model = this.getModel();
    const type = this.typeSelect.value;
    const spaces = Array.from(model.namespaces.values()).filter((n) => n.type === type && n.alive !== false)
      .sort((a, b) => (model.isHostNs(b.id) - model.isHostNs(a.id)) || (a.inode - b.inode)).slice(0, 60);
    const key = type + "|" + spaces.map((n) => n.id + "=" + nsLabel(model, n)).join(" ");
    if (key === this.choicesKey) return;
    this.choicesKey = key;
    const checked = new Set(Array.from(this.choices.querySelectorAll("input:checked")).map((i) => i.value));
    const fresh = this.choicesType !== type;
    this.choicesType = type;
    clear(this.choices);
    for (const ns of spaces) {
      const cb = el("input", { type: "checkbox", value: ns.id });
      cb.checked = checked.has(ns.id) || (fresh && model.isHostNs(ns.id));
      this.choices.appendChild(el("label", { class: "cmp-choice" }, cb,
        el("span", { class: "swatch", style: { background: typeColor(type) } }), nsLabel(model, ns) + " [" + ns.inode + "]"));
    }
  }

  compareChosen() {
    const ids = Array.from(this.choices.querySelectorAll("input:checked")).map((i) => i.value);
    this.compareIds(this.typeSelect.value, ids);
  }

  async compareIds(type, ids, title) {
    const section = this.start(title || "what each " + type + " namespace sees");
    section.appendChild(await this.table(type, ids));
    section.dataset.done = "1";
    this.root.scrollIntoView({ block: "nearest" });
  }

  // columns: [{label, ns: {type: id}}]; one table per seed command.
  async seed(columns, title) {
    const section = this.start(title || columns.map((c) => c.label).join(" vs ") + ": `hostname; ip addr; ps aux` answered without running anything inside");
    section.dataset.seed = "1";
    const parts = SEED.map((s) => {
      const part = el("div", { class: "cmp-part", dataset: { type: s.type } },
        el("h4", null, el("span", { class: "swatch", style: { background: typeColor(s.type) } }), s.command + "  (" + s.type + " namespace)"));
      section.appendChild(part);
      return part;
    });
    await Promise.all(SEED.map(async (s, i) => {
      const ids = columns.map((c) => (c.ns || {})[s.type]);
      if (ids.some((x) => !x)) {
        parts[i].appendChild(el("p", { class: "muted small", text: "no " + s.type + " namespace known for " + columns.filter((c, j) => !ids[j]).map((c) => c.label).join(", ") }));
        return;
      }
      parts[i].appendChild(await this.table(s.type, ids, columns.map((c) => c.label)));
    }));
    section.dataset.done = "1";
    this.root.scrollIntoView({ block: "nearest" });
  }

  showJoin(j) {
    const model = this.getModel();
    const init = j.container ? initOf(model, j.container) : null;
    const left = { label: j.container ? j.container + "'s init" + (init ? " (pid " + init.pid + ")" : "") : "target", ns: init ? init.ns : j.target };
    const right = { label: "exec'd " + (j.command ? "`" + j.command + "`" : "process") + (j.exec_pid ? " (pid " + j.exec_pid + ")" : ""), ns: j.target };
    return this.seed([left, right], "join session #" + j.id + ": the exec'd process sees exactly the target's view");
  }

  start(title) {
    clear(this.result);
    const section = el("section", { class: "cmp-section" }, el("h3", { text: title }));
    this.result.appendChild(section);
    return section;
  }

  async table(type, ids, headers) {
    if (ids.length < 2) return el("p", { class: "muted small", text: "choose at least two namespaces" });
    const query = ids.map((id) => "ns=" + encodeURIComponent(id)).join("&");
    try {
      const { status, body } = await getJSON("/api/inside/compare?" + query, { allow: [400, 404, 429, 503] });
      if (status !== 200) return el("p", { class: "error small", text: (body && body.error) || "HTTP " + status });
      const t = compareTable(body, headers);
      t.dataset.ids = ids.join(" ");
      return t;
    } catch (err) {
      return el("p", { class: "error small", text: err.message });
    }
  }
}
