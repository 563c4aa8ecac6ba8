// Hover texts and band labels of the graph (Plotly's pseudo-HTML).

// Plotly renders hover and label text as pseudo-HTML; neutralise markup
// characters from names we did not choose.
export function escapeSvgText(s) {
  return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

export function nsHover(ns, model) {
  const lines = [
    "<b>" + escapeSvgText(ns.type) + " namespace</b>" + (ns.alive === false ? " (ended)" : ""),
    "inode " + ns.inode + (ns.ns_id ? " · ns_id " + ns.ns_id : ""),
  ];
  if (ns.container) lines.push("container " + escapeSvgText(ns.container));
  if (model.isHostNs(ns.id)) lines.push("the host's");
  if (ns.creator) lines.push("created by " + escapeSvgText(ns.creator.comm || "") + " [" + ns.creator.pid + "] via " + escapeSvgText(ns.creator.syscall || ""));
  const n = (ns.pids || []).length;
  if (n) lines.push(n + " member process" + (n === 1 ? "" : "es"));
  if ((ns.pinned || []).length) lines.push("pinned at " + escapeSvgText(ns.pinned.join(", ")));
  return lines.join("<br>");
}

export function procHover(p) {
  return "<b>" + escapeSvgText(p.comm || "?") + "</b> pid " + p.pid + " (ppid " + p.ppid + ", uid " + p.uid + ")" +
    (p.container ? "<br>container " + escapeSvgText(p.container) : "") +
    (p.cmdline ? "<br>" + escapeSvgText(String(p.cmdline).slice(0, 120)) : "");
}

export function collHover(procs) {
  const comms = new Map();
  for (const p of procs) comms.set(p.comm, (comms.get(p.comm) || 0) + 1);
  const top = Array.from(comms.entries()).sort((a, b) => b[1] - a[1]).slice(0, 6)
    .map(([c, n]) => escapeSvgText(c) + " ×" + n).join(", ");
  return "<b>" + procs.length + " processes</b> sharing the same namespaces<br>" + top + "<br><i>click to expand</i>";
}

export function joinHover(j) {
  return "<b>join session #" + j.id + "</b><br>" + escapeSvgText(j.summary || "") +
    "<br>" + escapeSvgText(j.comm || "") + " [" + j.pid + "] → " + escapeSvgText((j.types || []).join(", "));
}

// Two short lines for the gutter left of the columns: name, then what it is.
export function groupLabel(group, model) {
  const cut = (t, n) => (t.length > n ? t.slice(0, n - 1) + "…" : t);
  if (group === "host") return "<b>host</b><br>" + escapeSvgText(cut(model.node || "", 18));
  if (group === "other") return "<b>other</b><br>unshare, nsenter,<br>sandboxes…";
  const name = group.slice(2);
  const c = model.containers.get(name);
  return "<b>" + escapeSvgText(cut(name, 18)) + "</b><br>container" + (c && c.image ? " · " + escapeSvgText(cut(c.image, 14)) : "");
}
