// The demo launcher: the server's allow-listed scenarios (chosen by id only),
// a run's command, output and the namespaces it created or joined - which the
// graph rings in purple - and the clean-up button.

import { el, clear, put } from "./dom.js";
import { getJSON, postJSON } from "./api.js";

const DONE = new Set(["done", "finished", "exited", "completed", "complete", "succeeded", "success", "failed", "error", "timeout", "timed_out", "cancelled", "ok"]);

// Run results name namespaces as ids or as objects; accept both, and the
// few field names a run may use for them.
export function namespaceIdsOf(run, which) {
  if (!run || typeof run !== "object") return [];
  // {"namespaces": {"created": [...], "joined": [...]}} is the contract; a
  // top-level list is accepted too.  (A run's top-level "created" is its start time.)
  let list = run.namespaces && typeof run.namespaces === "object" ? run.namespaces[which] : undefined;
  if (!Array.isArray(list)) list = Array.isArray(run[which]) ? run[which] : Array.isArray(run[which + "_namespaces"]) ? run[which + "_namespaces"] : [];
  const out = [];
  for (const item of list) {
    if (typeof item === "string") out.push(item);
    else if (item && typeof item === "object" && item.id) out.push(String(item.id));
  }
  return out;
}

function commandText(cmd) {
  if (!cmd) return "";
  return Array.isArray(cmd) ? cmd.map((a) => (/[\s"']/.test(a) ? JSON.stringify(a) : a)).join(" ") : String(cmd);
}

export class DemoPanel {
  constructor(root, { onNamespaces, onSelect, onRunUpdate } = {}) {
    this.root = root;
    this.onNamespaces = onNamespaces || (() => {});
    this.onSelect = onSelect || (() => {});
    this.onRunUpdate = onRunUpdate || (() => {});
    this.list = el("div", { class: "demo-list" });
    this.result = el("div", { class: "demo-run", id: "demo-run" });
    this.message = el("p", { class: "muted small", id: "demo-message" });
    this.cleanup = el("button", { id: "demo-cleanup", type: "button", text: "clean up demo containers", onclick: () => this.doCleanup() });
    put(clear(root), this.list, this.cleanup, this.message, this.result);
    this.runId = null;
    this.pollTimer = null;
    this.lastRun = null;
    this.afterDone = 0;
  }

  async load() {
    clear(this.list).appendChild(el("p", { class: "muted small", text: "loading scenarios…" }));
    let body;
    try {
      ({ body } = await getJSON("/api/demos"));
    } catch (err) {
      clear(this.list).appendChild(el("p", { class: "error", text: "cannot list the demos: " + err.message }));
      return;
    }
    const scenarios = Array.isArray(body) ? body : (body && (body.scenarios || body.demos)) || [];
    const readOnly = body && !Array.isArray(body) && (body.read_only || body.readonly);
    clear(this.list);
    if (readOnly) this.list.appendChild(el("p", { class: "muted small", text: "read-only server (--read-only): the launcher is disabled" }));
    if (!scenarios.length) this.list.appendChild(el("p", { class: "muted small", text: "no scenarios available" }));
    for (const s of scenarios) {
      if (!s || typeof s !== "object" || !s.id) continue;
      const button = el("button", {
        type: "button", class: "run", text: "run", dataset: { scenario: s.id },
        disabled: readOnly || s.available === false, title: s.unavailable_reason || s.reason || "",
        onclick: () => this.run(s.id),
      });
      // One line per scenario; what it does and runs is in the tooltip and,
      // once started, in the run below.
      this.list.appendChild(el("div", { class: "scenario", dataset: { scenario: s.id },
        title: [s.description, commandText(s.command)].filter(Boolean).join("\n\n") },
        el("div", { class: "scenario-head" }, button, el("span", { text: s.title || s.name || s.id })),
        s.available === false ? el("div", { class: "muted small", text: "unavailable: " + (s.unavailable_reason || s.reason || "") }) : null));
    }
  }

  async run(id) {
    this.message.textContent = "starting " + id + "…";
    clear(this.result);
    try {
      const resp = await postJSON("/api/demos/" + encodeURIComponent(id), {});
      this.runId = resp.run_id ?? resp.id;
      if (this.runId === undefined) throw new Error("the server did not return a run_id");
      this.message.textContent = "";
      this.afterDone = 0;
      this.renderRun({ scenario: id, status: "starting", ...resp });
      this.poll();
    } catch (err) {
      this.message.textContent = err.message;
      this.message.className = "error small";
    }
  }

  // Live `event: demo` updates arrive over SSE; polling covers a server
  // that does not send them and a stream that is reconnecting.
  poll() {
    clearTimeout(this.pollTimer);
    if (this.runId === null) return;
    const id = this.runId;
    getJSON("/api/demos/runs/" + encodeURIComponent(id)).then(({ body }) => {
      if (id !== this.runId) return;
      this.update(body);
    }).catch((err) => {
      this.message.textContent = err.message;
    }).finally(() => {
      if (id !== this.runId) return;
      // Namespaces of a finished run are attributed a little later; keep
      // polling a few times after it finished.
      if (this.isDone(this.lastRun)) this.afterDone++;
      if (this.afterDone <= 4) this.pollTimer = setTimeout(() => this.poll(), this.isDone(this.lastRun) ? 1000 : 400);
    });
  }

  isDone(run) {
    if (!run) return false;
    if (run.finished === true || run.done === true) return true;
    return DONE.has(String(run.status || run.state || "").toLowerCase());
  }

  update(run) {
    if (!run || typeof run !== "object") return;
    const rid = run.run_id ?? run.id;
    if (rid !== undefined && this.runId !== null && String(rid) !== String(this.runId)) return;
    this.renderRun(run);
  }

  renderRun(run) {
    this.lastRun = run;
    const created = namespaceIdsOf(run, "created");
    const joined = namespaceIdsOf(run, "joined");
    const status = String(run.status || run.state || "");
    const output = run.output ?? run.stdout ?? "";
    const nsItem = (id) => el("li", null, el("a", {
      href: "#", class: "nslink", dataset: { ns: id },
      onclick: (e) => { e.preventDefault(); this.onSelect("ns", id); },
    }, id.split(":")[0] + " " + (id.split(":")[2] || id)));
    put(clear(this.result),
      el("h4", null, "run ", el("span", { class: "run-id", text: String(run.run_id ?? run.id ?? this.runId) }), " · ",
        el("span", { class: "scenario-id", text: run.scenario || run.scenario_id || "" }), " · ",
        el("span", { class: "status status-" + status.toLowerCase(), id: "demo-status", text: status || "?" }),
        run.exit_code !== undefined && run.exit_code !== null ? " (exit " + run.exit_code + ")" : ""),
      run.command || run.commands ? el("code", { class: "cmd", id: "demo-command", text: (run.commands ? run.commands.map(commandText).join("\n") : commandText(run.command)) }) : null,
      run.progress && run.progress.length ? el("p", { class: "small muted progress", text: Array.isArray(run.progress) ? run.progress.join("\n") : String(run.progress) }) : null,
      run.error ? el("p", { class: "error small", text: run.error }) : null,
      el("pre", { class: "output", id: "demo-output", text: typeof output === "string" ? output : JSON.stringify(output, null, 2) }),
      el("div", { class: "demo-ns" },
        el("div", null, el("b", { text: "created namespaces (" + created.length + ")" }), el("ul", { id: "demo-created" }, created.map(nsItem))),
        el("div", null, el("b", { text: "joined namespaces (" + joined.length + ")" }), el("ul", { id: "demo-joined" }, joined.map(nsItem)))),
    );
    this.result.dataset.status = status;
    this.onNamespaces(created, joined, run);
    this.onRunUpdate(run);
  }

  async doCleanup() {
    this.message.className = "muted small";
    this.message.textContent = "cleaning up…";
    try {
      const body = await postJSON("/api/demos/cleanup", {});
      const n = body && (body.removed ?? body.count);
      this.message.textContent = "cleaned up" + (Array.isArray(n) ? ": removed " + n.length + " container(s)" : n !== undefined ? ": removed " + n : "");
      this.runId = null;
      this.onNamespaces([], [], null);
    } catch (err) {
      this.message.className = "error small";
      this.message.textContent = err.message;
    }
  }
}
