// Colours of the picture.  The names they are keyed by (namespace types) come
// from vocab.js, generated from Python; tests/unit/test_web_vocab.py checks that
// every type has a colour here.

// Colour-blind-safe-ish palette, one colour per namespace type.
export const TYPE_COLORS = {
  user: "#8c564b",
  pid: "#d62728",
  mnt: "#1f77b4",
  net: "#2ca02c",
  uts: "#9467bd",
  ipc: "#ff7f0e",
  cgroup: "#17becf",
  time: "#bcbd22",
};

export const HIGHLIGHT_COLORS = {
  new: "#00a651",
  joined: "#ff8c00",
  ended: "#e00000",
  demo: "#c800c8",
  search: "#0055ff",
  selected: "#111111",
};

export const PROCESS_COLOR = "#6b7280";
export const JOIN_COLOR = "#ff8c00";

export function typeColor(type) {
  return TYPE_COLORS[type] || "#999999";
}
