// Same-origin JSON calls.  The auth cookie goes along by itself; an expired or
// missing cookie becomes an ApiError the page explains instead of a blank view.

// Where this page's app is mounted: "" for `nsgraph serve`, "/node/NAME" for one node
// of a fleet dashboard (templates/index.html puts it in <html data-base>).
export const BASE = document.documentElement.dataset.base || "";

export function apiPath(path) {
  return path.startsWith("/") ? BASE + path : path;
}

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

async function parse(resp) {
  const type = resp.headers.get("Content-Type") || "";
  if (type.includes("json")) {
    try {
      return await resp.json();
    } catch (err) {
      throw new ApiError(resp.status, "the server sent malformed JSON (" + err.message + ")");
    }
  }
  return resp.text();
}

function explain(status, body, path) {
  const detail = body && typeof body === "object" ? (body.error || body.message || "") : String(body || "").slice(0, 200);
  if (status === 401 || status === 403) {
    return "not authorised for " + path + (detail ? ": " + detail : "") +
      " - open the URL that `nsgraph serve` printed (it carries ?token=...)";
  }
  return path + " failed with HTTP " + status + (detail ? ": " + detail : "");
}

export async function getJSON(path, { allow = [] } = {}) {
  let resp;
  try {
    resp = await fetch(apiPath(path), { credentials: "same-origin", headers: { Accept: "application/json" } });
  } catch (err) {
    throw new ApiError(0, "cannot reach the nsgraph server (" + err.message + "); is `nsgraph serve` still running?");
  }
  const body = await parse(resp);
  if (!resp.ok && !allow.includes(resp.status)) throw new ApiError(resp.status, explain(resp.status, body, path), body);
  return { status: resp.status, body };
}

export async function postJSON(path, payload) {
  let resp;
  try {
    resp = await fetch(apiPath(path), {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(payload || {}),
    });
  } catch (err) {
    throw new ApiError(0, "cannot reach the nsgraph server (" + err.message + ")");
  }
  const body = await parse(resp);
  if (!resp.ok) throw new ApiError(resp.status, explain(resp.status, body, path), body);
  return body;
}
