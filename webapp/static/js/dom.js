// DOM helpers.  Everything the server sends is untrusted text (process names,
// command lines, container labels), so nodes are built with textContent only:
// no innerHTML with data anywhere in the front end.

export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  if (attrs) {
    for (const [key, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = String(value);
      else if (key === "dataset") Object.assign(node.dataset, value);
      // CSSOM, not a style attribute: the CSP may forbid inline style attributes.
      else if (key === "style") Object.assign(node.style, value);
      else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// Append children, skipping null/undefined/false (Node.append would print "null").
export function put(node, ...children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

export function $(id) {
  return document.getElementById(id);
}

export function fmtTime(ts) {
  if (ts === null || ts === undefined || ts === "") return "";
  const d = typeof ts === "number" ? new Date(ts * 1000) : new Date(ts);
  if (Number.isNaN(d.getTime())) return String(ts);
  return d.toISOString().replace("T", " ").replace("Z", "").slice(0, 23);
}

// Event timestamps arrive as ISO strings (Event.to_json) or epoch seconds.
export function toEpoch(ts) {
  if (typeof ts === "number") return ts;
  if (typeof ts === "string") {
    const ms = Date.parse(ts);
    if (!Number.isNaN(ms)) {
      // Date.parse drops the microseconds; keep them for latency measurements.
      const micro = /\.(\d{3})(\d{1,3})/.exec(ts);
      return ms / 1000 + (micro ? Number(micro[2].padEnd(3, "0")) / 1e6 : 0);
    }
  }
  return NaN;
}

export function fmtCount(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return "–";
  if (typeof n !== "number") return String(n);
  return n >= 10000 ? n.toLocaleString("en-US") : String(Math.round(n * 10) / 10);
}
