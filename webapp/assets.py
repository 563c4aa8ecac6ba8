"""The page's static assets: content-hashed URLs, compressed once, cached for a year.

Which assets exist and how they are served is this module's job (the HTTP server
and the header policy are webapp/commands/serve.py's and auth.py's):

* /static/a/<hash>/<path>  the app's files (js/, css/, and the generated js/vocab.js)
  under one prefix made from the hash of all of them: ES modules import each other by
  relative path, so one prefix per build keeps every import inside the same build.
  `Cache-Control: public, max-age=31536000, immutable`.  A request for an older
  prefix (a tab opened before an upgrade) gets today's file with `no-cache`.
* /static/v/<hash>/plotly.min.js  the plotly.js bundle, hashed on its own (it changes
  far less often than the app).  The vendored partial bundle
  (static/vendor/plotly-basic.min.js, see static/vendor/plotly.json) when it is there,
  else the full one inside the plotly wheel, with a warning in the log.
* /static/<path> and /static/vendor/plotly.min.js: the same files at stable names,
  `no-cache` + ETag (tests, benchmarks and hand-typed URLs).

Compression: br or gzip by the request's Accept-Encoding, `Vary: Accept-Encoding`.
A `<file>.br` / `<file>.gz` next to a file is used when it decompresses to exactly
that file (the vendored bundle ships both, compressed at the highest levels; `python
-m webapp.assets precompress` writes them for every asset); otherwise the file is
compressed in memory on its first request and kept.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import logging
import os
import sys
import threading
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional

from flask import Blueprint, Flask, Response, current_app, request

try:
    import brotli
except ImportError:  # pragma: no cover - a dependency; without it only gzip is offered
    brotli = None

log = logging.getLogger(__name__)

HERE = os.path.dirname(os.path.abspath(__file__))
STATIC = os.path.join(HERE, "static")
VENDOR_MANIFEST = os.path.join(STATIC, "vendor", "plotly.json")
APP_FOLDERS = ("js", "css")
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
PLOTLY_NAME = "plotly.min.js"
COMPRESSIBLE = {".js": "text/javascript", ".css": "text/css", ".json": "application/json",
                ".svg": "image/svg+xml", ".txt": "text/plain"}
MIN_COMPRESS = 512
CLASSIC_SCRIPTS = ("js/boot.js",)           # not ES modules: no modulepreload
# Quality for compressing on a request: 11 costs ~10 s per MB on a busy 2-core machine,
# 5 under half a second for ~10 % more bytes.  precompress() uses 11.
LIVE_BR_QUALITY = {True: 11, False: 5}       # keyed by "is it small (< 256 KiB)"


def content_type(path: str) -> str:
    return COMPRESSIBLE.get(os.path.splitext(path)[1], "application/octet-stream")


def short_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def full_plotly_path() -> Optional[str]:
    """plotly.min.js inside the plotly wheel: the fallback when the partial bundle is missing."""
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "package_data", PLOTLY_NAME)
    return path if os.path.isfile(path) else None


def vendored_plotly_path(static: str = STATIC) -> Optional[str]:
    try:
        with open(os.path.join(static, "vendor", "plotly.json")) as f:
            name = json.load(f)["file"]
    except (OSError, ValueError, KeyError):
        return None
    path = os.path.join(static, "vendor", name)
    return path if os.path.isfile(path) else None


@dataclass
class Asset:
    """One file's bytes, its validators and its compressed forms (made at most once)."""
    data: bytes
    ctype: str
    source: Optional[str] = None          # the file on disk (to look for .br/.gz next to it)
    etag: str = ""
    encoded: Dict[str, bytes] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self):
        self.etag = short_hash(self.data)

    def body(self, encoding: str) -> Optional[bytes]:
        """The body in `encoding` ("br", "gzip"), or None when it is not worth it or not possible."""
        if len(self.data) < MIN_COMPRESS or not self.ctype.startswith(("text/", "application/json", "image/svg")):
            return None
        if encoding == "br" and brotli is None:
            return None
        with self.lock:
            if encoding not in self.encoded:
                self.encoded[encoding] = self._sibling(encoding) or compress(self.data, encoding)
            return self.encoded[encoding]

    def _sibling(self, encoding: str) -> Optional[bytes]:
        """A precompressed <file>.br/.gz, if it really is this file compressed."""
        if not self.source:
            return None
        path = self.source + (".br" if encoding == "br" else ".gz")
        try:
            with open(path, "rb") as f:
                packed = f.read()
            return packed if decompress(packed, encoding) == self.data else None
        except Exception:      # missing, unreadable, or not valid br/gzip (brotli.error is plain)
            return None


def compress(data: bytes, encoding: str, best: bool = False) -> bytes:
    if encoding == "br":
        return brotli.compress(data, quality=11 if best else LIVE_BR_QUALITY[len(data) < 256 * 1024])
    return gzip.compress(data, 9, mtime=0)


def decompress(data: bytes, encoding: str) -> bytes:
    return brotli.decompress(data) if encoding == "br" else gzip.decompress(data)


class AssetCatalog:
    """Every asset the page loads, read once when the app is made."""

    def __init__(self, static: str = STATIC, generated: Optional[Dict[str, str]] = None,
                 plotly_path: Optional[str] = None):
        self.static = static
        self.files: Dict[str, Asset] = {}
        for folder in APP_FOLDERS:
            for root, dirs, names in os.walk(os.path.join(static, folder)):
                dirs.sort()
                for name in sorted(names):
                    if name.endswith((".br", ".gz")):
                        continue
                    path = os.path.join(root, name)
                    rel = os.path.relpath(path, static).replace(os.sep, "/")
                    with open(path, "rb") as f:
                        self.files[rel] = Asset(f.read(), content_type(rel), source=path)
        for rel, text in (generated or {}).items():
            self.files[rel] = Asset(text.encode(), content_type(rel))
        tree = hashlib.sha256()
        for rel in sorted(self.files):
            tree.update(rel.encode() + b"\0" + self.files[rel].etag.encode() + b"\0")
        self.app_hash = tree.hexdigest()[:16]
        self.plotly_source = plotly_path or vendored_plotly_path(static) or full_plotly_path()
        self.plotly: Optional[Asset] = None
        self.plotly_partial = False
        if self.plotly_source:
            with open(self.plotly_source, "rb") as f:
                self.plotly = Asset(f.read(), "text/javascript", source=self.plotly_source)
            self.plotly_partial = os.path.dirname(self.plotly_source) == os.path.join(static, "vendor")
            if not self.plotly_partial:
                log.warning("serving the full plotly.js (%d KB) from the plotly package: the partial bundle "
                            "webapp/static/vendor/plotly-basic.min.js is missing (scripts/vendor-plotly.sh)",
                            len(self.plotly.data) // 1024)

    # -- URLs the page uses --

    def url(self, rel: str) -> str:
        if rel not in self.files:
            raise KeyError("no static asset %r" % rel)
        return "/static/a/%s/%s" % (self.app_hash, rel)

    def plotly_url(self) -> Optional[str]:
        return "/static/v/%s/%s" % (self.plotly.etag, PLOTLY_NAME) if self.plotly else None

    def modules(self) -> list:
        """Hashed URLs of every ES module, for <link rel=modulepreload> (fetched in parallel
        instead of one import level at a time)."""
        return [self.url(rel) for rel in sorted(self.files)
                if rel.startswith("js/") and rel.endswith(".js") and rel not in CLASSIC_SCRIPTS]

    # -- serving (framework-free, so a benchmark's stdlib server serves the same bytes) --

    def resolve(self, path: str):
        """(asset or None, Cache-Control) for a URL path under /static/."""
        parts = path.split("/", 4)            # "", "static", kind, key, rest
        if path.startswith("/static/a/") and len(parts) == 5:
            return self.files.get(parts[4]), IMMUTABLE if parts[3] == self.app_hash else REVALIDATE
        if path.startswith("/static/v/") and len(parts) == 5 and parts[4] == PLOTLY_NAME:
            current = self.plotly is not None and parts[3] == self.plotly.etag
            return self.plotly, IMMUTABLE if current else REVALIDATE
        if path == "/static/vendor/" + PLOTLY_NAME:
            return self.plotly, REVALIDATE
        if path.startswith("/static/"):
            return self.files.get(path[len("/static/"):]), REVALIDATE
        return None, REVALIDATE

    def encode(self, asset: Asset, accept_encoding: str):
        """(body, Content-Encoding or None, headers) for a request's Accept-Encoding."""
        encoding = pick_encoding(accept_encoding or "")
        body = asset.body(encoding) if encoding else None
        headers = {"Content-Type": asset.ctype, "Vary": "Accept-Encoding",
                   "ETag": '"%s%s"' % (asset.etag, "-" + encoding if body is not None else "")}
        if body is not None:
            headers["Content-Encoding"] = encoding
        return (body if body is not None else asset.data), headers


def pick_encoding(header: str) -> Optional[str]:
    """br when the client takes it, else gzip, else None (identity)."""
    offered = {}
    for part in header.split(","):
        name, _, params = part.strip().partition(";")
        q = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                q = float(params[2:])
            except ValueError:
                q = 0.0
        offered[name.strip().lower()] = q
    for encoding in ("br", "gzip"):
        if offered.get(encoding, offered.get("*", 0.0)) > 0 and (encoding != "br" or brotli is not None):
            return encoding
    return None


bp = Blueprint("assets", __name__)


@bp.route("/static/<path:_rel>")
def static_file(_rel):
    catalog: AssetCatalog = current_app.extensions["nsgraph_assets"]
    asset, cache = catalog.resolve(request.path)
    if asset is None:
        from .auth import error
        if request.path == "/static/vendor/" + PLOTLY_NAME:
            return error(404, "no plotly.js: neither webapp/static/vendor/plotly-basic.min.js nor the plotly "
                         "package's plotly.min.js is installed (pip install --force-reinstall plotly)")
        return error(404, "no static file %s" % request.path)
    body, headers = catalog.encode(asset, request.headers.get("Accept-Encoding", ""))
    response = Response(body, headers=headers)
    response.headers["Cache-Control"] = cache
    return response.make_conditional(request)


def init_app(app: Flask, generated: Optional[Dict[str, str]] = None) -> AssetCatalog:
    """Read the assets, register the routes and the template helper `assets`."""
    catalog = AssetCatalog(generated=generated)
    app.extensions["nsgraph_assets"] = catalog
    app.register_blueprint(bp)
    app.jinja_env.globals["assets"] = catalog
    return catalog


def precompress(static: str = STATIC, progress: Callable[[str], None] = print) -> int:
    """Write <file>.br and <file>.gz at the highest levels next to every compressible asset
    (skipping those already right).  Returns how many files were written."""
    written = 0
    for root, dirs, names in os.walk(static):
        dirs.sort()
        for name in sorted(names):
            if os.path.splitext(name)[1] not in (".js", ".css"):     # what the page loads
                continue
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                data = f.read()
            if len(data) < MIN_COMPRESS:
                continue
            for encoding, suffix in (("gzip", ".gz"), ("br", ".br")):
                if encoding == "br" and brotli is None:
                    continue
                if Asset(data, content_type(name), source=path)._sibling(encoding) is not None:
                    continue
                with open(path + suffix + ".tmp", "wb") as f:
                    f.write(compress(data, encoding, best=True))
                os.replace(path + suffix + ".tmp", path + suffix)
                written += 1
                progress("compressed %s%s" % (os.path.relpath(path, static), suffix))
    return written


def main(argv=None) -> int:
    """python -m webapp.assets precompress [DIR]  (scripts/setup.sh and scripts/vendor-plotly.sh)"""
    from tracer.exitcodes import EXIT_OK, EXIT_USAGE
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] != "precompress" or len(argv) > 2:
        print("usage: python -m webapp.assets precompress [DIR]   (default: webapp/static)", file=sys.stderr)
        return EXIT_USAGE
    precompress(argv[1] if len(argv) == 2 else STATIC)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
