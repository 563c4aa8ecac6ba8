// The first thing the page runs (a classic script, before the modules have
// loaded): ask for the graph now, so it downloads in parallel with plotly.js and
// the page's modules.  main.js takes the answer; null when the server is still
// starting (503) or unreachable, and main.js then waits and asks again.
// The base is where the app is mounted ("/node/NAME" for a node of a fleet dashboard;
// api.js's apiPath reads the same attribute).
const nsgraphBase = document.documentElement.dataset.base || "";
window.nsgraphEarly = fetch(nsgraphBase + "/api/graph", { credentials: "same-origin", headers: { Accept: "application/json" } })
  .then((r) => (r.ok ? r.json() : null))
  .catch(() => null);
