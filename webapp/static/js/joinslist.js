// The side list of join sessions (newest first): who joined what, and the command.

import { el, clear, fmtTime } from "./dom.js";
import { typeColor } from "./colors.js";

const SHOWN = 50;

export function renderJoins(list, model, onSelect) {
  clear(list);
  const joins = Array.from(model.joins.values()).sort((a, b) => (b.start || 0) - (a.start || 0)).slice(0, SHOWN);
  if (!joins.length) list.appendChild(el("li", { class: "muted small", text: "none yet (try the docker exec demo)" }));
  for (const j of joins) {
    const types = j.types || [];
    list.appendChild(el("li", {
      class: "join",
      dataset: { joinId: String(j.id), container: j.container || "", types: types.join(","),
        targets: Object.entries(j.target || {}).map(([t, id]) => t + "=" + id).join(" ") },
      onclick: () => onSelect("join", String(j.id)),
    },
      el("div", null, el("b", { text: "#" + j.id + " " }), (j.comm || "?") + (j.pid ? " [" + j.pid + "]" : "") + " → " +
        (j.container ? "container " + j.container : joinTargetText(j, model))),
      el("div", { class: "types" }, types.map((t) => el("span", { style: { background: typeColor(t) }, text: t }))),
      el("div", { class: "small muted", text: (j.summary ? j.summary + " · " : j.command ? "ran `" + j.command + "` · " : "") + fmtTime(j.start) })));
  }
}

function joinTargetText(j, model) {
  const ids = Object.values(j.target || {});
  if (ids.length && ids.every((id) => model.isHostNs(id))) return "the host's namespaces";
  const ns = ids.map((id) => model.getNamespace(id)).find((n) => n && n.container);
  return ns ? "container " + ns.container : "namespaces of another process";
}
