// The demo launcher: the server's allow-listed scenarios (chosen by id only),
// a run's command, output and the namespaces it created or joined - which the
// graph rings in purple - and the clean-up button.

import { el, clear, put } from "./dom.js";
import { getJSON, postJSON } from "./api.js";

// Run states (webapp/demos/run.py): queued, running, then succeeded or failed.
const DONE = new Set(["succeeded", "failed"]);
// The server works out a run's namespaces from the graph when asked
// (webapp/demos/outcome.py), and the graph may learn them seconds after the run
// ended (a busy host's event backlog, a repair after lost events); no `event:
// demo` says when.  So a finished run is polled until its namespaces are known
// and have stayed the same for STABLE_POLLS answers, at most AFTER_DONE_MS.
const POLL_RUNNING_MS = 400;
const AFTER_DONE_MS = 60000;
const STABLE_POLLS = 2;

// What a poll compares: the run's namespaces and join sessions ("" while there are none).
export function outcomeKey(run) {
  const created = namespaceIdsOf(run, "created"), joined = namespaceIdsOf(run, "joined");
  const joins = (run && Array.isArray(run.joins)) ? run.joins : [];
  return created.length || joined.length || joins.length ? JSON.stringify([created, joined, joins]) : "";
}

// The wait before the next poll of a finished run, or null to stop: polls come every
// second, then every few seconds, until the outcome is known and stable or the time is up.
export function nextPollAfterDone(doneForMs, stableAnswers, known) {
  if ((known && stableAnswers >= STABLE_POLLS) || doneForMs >= AFTER_DONE_MS) return null;
  return doneForMs < 10000 ? 1000 : 3000;
}

// The namespace ids a run created or joined ({"namespaces": {"created": [...], "joined": [...]}}).
export function namespaceIdsOf(run, which) {
  const list = run && run.namespaces ? run.namespaces[which] : null;
  return Array.isArray(list) ? list.filter((id) => typeof id === "string") : [];
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
    this.resetPolling();
  }

  resetPolling() {
    this.doneAt = null;          // when this page first saw the run finished
    this.outcome = "";
    this.stableAnswers = 0;
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
    const scenarios = body.scenarios;
    const readOnly = body.read_only;
    clear(this.list);
    if (readOnly) this.list.appendChild(el("p", { class: "muted small", text: "read-only server (--read-only): the launcher is disabled" }));
    if (!scenarios.length) this.list.appendChild(el("p", { class: "muted small", text: "no scenarios available" }));
    for (const s of scenarios) {
      const button = el("button", {
        type: "button", class: "run", text: "run", dataset: { scenario: s.id },
        disabled: readOnly || !s.available, title: s.why || "",
        onclick: () => this.run(s.id),
      });
      // One line per scenario; what it does and runs is in the tooltip and,
      // once started, in the run below.
      this.list.appendChild(el("div", { class: "scenario", dataset: { scenario: s.id },
        title: s.description + "\n\n" + s.command },
        el("div", { class: "scenario-head" }, button, el("span", { text: s.title })),
        s.available ? null : el("div", { class: "muted small", text: "unavailable: " + (s.why || "") })));
    }
  }

  async run(id) {
    this.message.textContent = "starting " + id + "…";
    clear(this.result);
    try {
      const resp = await postJSON("/api/demos/" + encodeURIComponent(id), {});
      this.runId = resp.run_id;
      this.message.textContent = "";
      this.resetPolling();
      this.renderRun({ scenario: id, ...resp });
      this.poll();
    } catch (err) {
      this.message.textContent = err.message;
      this.message.className = "error small";
    }
  }

  // Live `event: demo` updates arrive over SSE; polling covers a stream that is
  // reconnecting, and a finished run's namespaces, which no event announces.
  poll() {
    clearTimeout(this.pollTimer);
    if (this.runId === null) return;
    const id = this.runId;
    getJSON("/api/demos/runs/" + encodeURIComponent(id)).then(({ body }) => {
      if (id !== this.runId) return;
      this.update(body);
      this.noteOutcome(body);
    }).catch((err) => {
      this.message.textContent = err.message;
    }).finally(() => {
      if (id !== this.runId) return;
      let wait = POLL_RUNNING_MS;
      if (this.isDone(this.lastRun)) {
        if (this.doneAt === null) this.doneAt = performance.now();
        wait = nextPollAfterDone(performance.now() - this.doneAt, this.stableAnswers, this.outcome !== "");
      }
      if (wait !== null) this.pollTimer = setTimeout(() => this.poll(), wait);
    });
  }

  noteOutcome(run) {
    const key = outcomeKey(run);
    this.stableAnswers = key === this.outcome ? this.stableAnswers + 1 : 0;
    this.outcome = key;
  }

  isDone(run) {
    return Boolean(run) && DONE.has(run.status);
  }

  update(run) {
    // Another tab's run shows too, until this tab starts one of its own.
    if (!run || (this.runId !== null && run.run_id !== this.runId)) return;
    this.renderRun(run);
  }

  renderRun(run) {
    this.lastRun = run;
    const created = namespaceIdsOf(run, "created");
    const joined = namespaceIdsOf(run, "joined");
    const status = run.status;
    const output = run.output || "";
    const nsItem = (id) => el("li", null, el("a", {
      href: "#", class: "nslink", dataset: { ns: id },
      onclick: (e) => { e.preventDefault(); this.onSelect("ns", id); },
    }, id.split(":")[0] + " " + (id.split(":")[2] || id)));
    put(clear(this.result),
      el("h4", null, "run ", el("span", { class: "run-id", text: run.run_id }), " · ",
        el("span", { class: "scenario-id", text: run.scenario }), " · ",
        el("span", { class: "status status-" + status, id: "demo-status", text: status }),
        run.exit_code !== undefined && run.exit_code !== null ? " (exit " + run.exit_code + ")" : ""),
      run.command ? el("code", { class: "cmd", id: "demo-command", text: run.command }) : null,
      run.progress && run.progress.length ? el("p", { class: "small muted progress", text: run.progress.join("\n") }) : null,
      run.error ? el("p", { class: "error small", text: run.error }) : null,
      el("pre", { class: "output", id: "demo-output", text: output + (run.truncated ? "\n[output cut at the server's limit]" : "") }),
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
      this.message.textContent = "cleaned up: removed " + body.removed.length + " container(s)" +
        (body.errors.length ? "; " + body.errors.join("; ") : "");
      this.runId = null;
      this.onNamespaces([], [], null);
    } catch (err) {
      this.message.className = "error small";
      this.message.textContent = err.message;
    }
  }
}
