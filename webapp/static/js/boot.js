// The first thing the page runs (a classic script, before the modules have
// loaded): ask for the graph now, so it downloads in parallel with plotly.js and
// the page's modules.  main.js takes the answer; null when the server is still
// starting (503) or unreachable, and main.js then waits and asks again.
window.nsgraphEarly = fetch("/api/graph", { credentials: "same-origin", headers: { Accept: "application/json" } })
  .then((r) => (r.ok ? r.json() : null))
  .catch(() => null);
