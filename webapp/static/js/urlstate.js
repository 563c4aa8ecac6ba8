// Deep links: the view, the selection, the filters and the history time live in
// the URL's query string, so a link reopens the same view.  The access token is
// never written here (it travels in an HttpOnly cookie); a `token` parameter in
// the address is dropped, never copied.

import { NS_TYPES } from "./vocab.js";
import { parseSubject, subjectText } from "./focus.js";

export const VIEWS = ["overview", "graph", "focus"];

// The page's state as a link holds it.  Everything optional.
export function parseState(search) {
  const q = new URLSearchParams(search || "");
  const list = (name) => (q.get(name) || "").split(",").map((s) => s.trim()).filter(Boolean);
  const num = (name) => { const v = Number(q.get(name)); return q.get(name) !== null && Number.isFinite(v) ? v : null; };
  const view = VIEWS.includes(q.get("view")) ? q.get("view") : null;
  const types = list("types").filter((t) => NS_TYPES.includes(t));
  return {
    view,
    sel: parseSubject(q.get("sel")),
    expand: q.getAll("x").map(parseSubject).filter(Boolean),
    q: q.get("q") || "", group: q.get("group") || "", pid: q.get("pid") || "", comm: q.get("comm") || "",
    types: types.length ? types : null,
    collapse: num("collapse"),
    at: parseTime(q.get("at")),
    sort: q.get("sort") || "", desc: q.get("desc") === "1",
    find: q.get("find") || "", state: q.get("state") || "", share: q.get("share") || "",
  };
}

// ISO 8601 ("2026-12-03T14:02:00Z") or seconds since the epoch -> epoch seconds.
export function parseTime(text) {
  if (!text) return null;
  if (/^\d+(\.\d+)?$/.test(text)) return Number(text);
  const ms = Date.parse(text);
  return Number.isNaN(ms) ? null : ms / 1000;
}

export function formatTime(epoch) {
  return new Date(epoch * 1000).toISOString().replace(".000Z", "Z");
}

// The query string for a state (defaults left out, fixed key order, no token).
export function stateToSearch(s) {
  const q = new URLSearchParams();
  if (s.view) q.set("view", s.view);
  if (s.sel) q.set("sel", subjectText(s.sel));
  for (const x of s.expand || []) q.append("x", subjectText(x));
  if (s.at !== null && s.at !== undefined) q.set("at", formatTime(s.at));
  for (const key of ["q", "group", "pid", "comm", "find", "state", "share"]) if (s[key]) q.set(key, s[key]);
  if (s.types && s.types.length && s.types.length < NS_TYPES.length) q.set("types", s.types.join(","));
  if (s.collapse) q.set("collapse", String(s.collapse));
  if (s.sort && !(s.sort === "name" && !s.desc)) { q.set("sort", s.sort); if (s.desc) q.set("desc", "1"); }
  const text = q.toString();
  return text ? "?" + text : "";
}

// Write the state into the address bar: push for a new selection or view (so
// Back returns to the previous one), replace for filters typed letter by letter.
export function writeState(s, { push = false } = {}) {
  const search = stateToSearch(s);
  if (search === location.search) return;
  const url = location.pathname + search + location.hash;
  if (push) history.pushState(null, "", url);
  else history.replaceState(null, "", url);
}
