// Namespace types in the order of the graph's columns: user namespaces own the
// others, so they come first; the pid namespace (with its hierarchy) next.
export const NS_TYPES = ["user", "pid", "mnt", "net", "uts", "ipc", "cgroup", "time"];

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
