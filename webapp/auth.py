"""Who may talk to the dashboard, and from where.

Launching demo containers is root-equivalent, so every request passes, in order:
1. the Host header allow-list (DNS rebinding: a hostile page whose name
   resolves to 127.0.0.1 would otherwise be "same-origin" with us);
2. a body-size cap;
3. the token: `?token=` on `/` is exchanged for an HttpOnly SameSite=Strict
   cookie and a redirect that drops it from the address bar; the API, /stream
   and /metrics accept that cookie, `Authorization: Bearer TOKEN`, or `?token=`
   (scripts and the provisioner's health check);
4. for state-changing methods, proof of same origin: Sec-Fetch-Site
   same-origin/none, else a matching Origin, else a Bearer header (a browser
   cannot add one cross-site without a CORS preflight we never answer).
Every response carries a strict Content-Security-Policy and friends.
"""

from __future__ import annotations

import hmac
from typing import Optional
from urllib.parse import urlencode

from flask import Flask, Response, jsonify, redirect, request
from werkzeug.exceptions import RequestEntityTooLarge

from .config import WebConfig

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")

# style-src allows inline styles because plotly.js writes <style> rules for its
# modebar and hover labels; scripts stay 'self' only, which is what matters.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data: blob:; font-src 'self'; connect-src 'self'; object-src 'none'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")

UNAUTHORIZED_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>nsgraph: token needed</title></head>
<body><h1>401: this dashboard needs its access token</h1>
<p>Open the URL that <code>nsgraph serve</code> printed when it started
(<code>http://HOST:PORT/?token=...</code>). With <code>--token-file PATH</code> the token is in
that file; otherwise restart <code>nsgraph serve</code> to get a new URL.</p></body></html>
"""


def cookie_name(config: WebConfig) -> str:
    # Cookies ignore the port: two dashboards on one host must not overwrite each other's.
    return "nsgraph_token_%d" % config.port


def needs_token(path: str, config: WebConfig) -> bool:
    if path.startswith("/api/") or path == "/api" or path == "/stream":
        return True
    if path == "/metrics":
        return not config.public_metrics
    return False


def token_matches(candidate: Optional[str], config: WebConfig) -> bool:
    if not candidate:
        return False
    return hmac.compare_digest(candidate.encode("utf-8", "replace"), config.token.encode("utf-8"))


def credentials(config: WebConfig):
    """(how, ok): the first credential the request presents and whether it is valid."""
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return "bearer", token_matches(header[7:].strip(), config)
    query = request.args.get("token")
    if query is not None:
        return "query", token_matches(query, config)
    cookie = request.cookies.get(cookie_name(config))
    if cookie is not None:
        return "cookie", token_matches(cookie, config)
    return None, False


def same_origin(how: Optional[str]) -> Optional[str]:
    """None when the request provably comes from our own page, else why not."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        if site in ("same-origin", "none"):
            return None
        return "Sec-Fetch-Site is %r" % site
    origin = request.headers.get("Origin")
    if origin is not None:
        expected = "%s://%s" % (request.scheme, request.host)
        if origin.lower() == expected.lower():
            return None
        return "Origin %r is not %r" % (origin, expected)
    if how == "bearer":
        return None
    return "no Origin or Sec-Fetch-Site header and no Authorization: Bearer header"


def error(status: int, message: str) -> Response:
    response = jsonify({"error": message, "status": status})
    response.status_code = status
    return response


def init_app(app: Flask, config: WebConfig, machine_addresses=()) -> None:
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    addresses = tuple(machine_addresses)

    @app.before_request
    def _guard():
        state = app.extensions["nsgraph"]
        if not config.host_allowed(request.headers.get("Host"), addresses):
            state.count("rejected_host")
            return error(400, "Host header %r is not one this dashboard answers to (DNS-rebinding "
                         "defence). Use http://127.0.0.1:%d/ or start nsgraph serve with "
                         "--allowed-host NAME." % (request.headers.get("Host"), config.port))
        too_big = _body_over_limit(config.max_body_bytes)
        if too_big:
            state.count("rejected_body")
            return error(413, "request body of %s is over the %d-byte limit" % (too_big, config.max_body_bytes))
        if request.path == "/" and "token" in request.args:
            return _exchange_token(config, state)
        how, ok = credentials(config)
        if needs_token(request.path, config) and not ok:
            state.count("rejected_auth")
            response = error(401, "missing or wrong token: open the URL nsgraph serve printed "
                             "(http://HOST:PORT/?token=...) or send 'Authorization: Bearer TOKEN'")
            response.headers["WWW-Authenticate"] = 'Bearer realm="nsgraph"'
            return response
        if request.path == "/" and not ok:
            state.count("rejected_auth")
            return Response(UNAUTHORIZED_PAGE, status=401, mimetype="text/html")
        if request.method not in SAFE_METHODS:
            why = same_origin(how)
            if why is not None:
                state.count("rejected_origin")
                return error(403, "cross-origin request refused (%s): state-changing requests "
                             "must come from the dashboard page itself" % why)
        return None

    @app.after_request
    def _headers(response: Response) -> Response:
        headers = response.headers
        headers["Content-Security-Policy"] = CSP
        headers["X-Content-Type-Options"] = "nosniff"
        headers["Referrer-Policy"] = "no-referrer"
        headers["X-Frame-Options"] = "DENY"
        headers["Cross-Origin-Opener-Policy"] = "same-origin"
        headers["Cross-Origin-Resource-Policy"] = "same-origin"
        if not request.path.startswith("/static/"):
            headers.setdefault("Cache-Control", "no-store")
        return response


def _body_over_limit(limit: int) -> Optional[str]:
    """How big the body is when it is over `limit`, else None.  A body without a length
    (chunked, when the server passes it on undecoded) is read up to limit + 1 bytes and
    kept for the view, so it is refused whole, never cut short."""
    length = request.content_length
    if length is not None:
        return "%d bytes" % length if length > limit else None
    if "chunked" not in request.headers.get("Transfer-Encoding", "").lower():
        return None
    try:
        data = request.get_data(cache=True)      # bounded by MAX_CONTENT_LENGTH
    except RequestEntityTooLarge:
        return "more than %d bytes (chunked)" % limit
    return "%d bytes (chunked)" % len(data) if len(data) > limit else None


def _exchange_token(config: WebConfig, state):
    if not token_matches(request.args.get("token"), config):
        state.count("rejected_auth")
        return Response(UNAUTHORIZED_PAGE, status=401, mimetype="text/html")
    # 303 to "/" so the token leaves the address bar and the history; the rest of
    # the query (a deep link: view, selection, filters, time) stays.
    rest = urlencode([(k, v) for k, v in request.args.items(multi=True) if k != "token"])
    response = redirect("/?" + rest if rest else "/", code=303)
    response.set_cookie(cookie_name(config), config.token, httponly=True, samesite="Strict",
                        path="/")
    return response
