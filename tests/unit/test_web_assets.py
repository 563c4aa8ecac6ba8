"""Static assets (webapp/assets.py): the vendored plotly.js bundle, content-hashed URLs,
precompressed bodies, cache headers, and deep links surviving the token exchange."""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import re
import shutil

import brotli
import pytest

from webapp import assets, vocab
from web_fixtures import TOKEN, World, authed, make_client, serving

VENDOR = os.path.join(assets.STATIC, "vendor")


@pytest.fixture(scope="module")
def client():
    _, c = authed(serving(World()))
    return c


def test_vendored_bundle_is_the_pinned_release():
    with open(assets.VENDOR_MANIFEST) as f:
        manifest = json.load(f)
    path = os.path.join(VENDOR, manifest["file"])
    with open(path, "rb") as f:
        data = f.read()
    assert hashlib.sha256(data).hexdigest() == manifest["sha256"], "edited by hand? run scripts/vendor-plotly.sh"
    banner = data[:200].decode()
    assert "plotly.js (basic - minified) v%s" % manifest["version"] in banner and "MIT" in banner
    assert manifest["tarball_integrity"].startswith("sha512-")
    assert os.path.isfile(os.path.join(VENDOR, "plotly-LICENSE.txt"))
    # The committed compressed copies are that file (the server checks this too).
    with open(path + ".br", "rb") as f:
        assert brotli.decompress(f.read()) == data
    with open(path + ".gz", "rb") as f:
        assert gzip.decompress(f.read()) == data


def page_urls(html: str) -> dict:
    return {
        "scripts": re.findall(r'<script src="([^"]+)"', html),
        "modules": re.findall(r'<script type="module" src="([^"]+)"', html),
        "preload": re.findall(r'<link rel="modulepreload" href="([^"]+)"', html),
        "css": re.findall(r'<link rel="stylesheet" href="([^"]+)"', html),
        "plotly": re.findall(r'<meta name="nsgraph-plotly" content="([^"]+)"', html),
    }


def test_page_links_hashed_assets_that_are_cached_for_a_year(client):
    html = client.get("/").data.decode()
    urls = page_urls(html)
    assert urls["scripts"][0].endswith("/js/boot.js")           # the graph request starts first
    assert re.search(r'<script src="[^"]+/js/boot.js" async>', html)
    assert urls["modules"] and urls["modules"][0].endswith("/js/main.js")
    modules = sorted(n for n in os.listdir(os.path.join(assets.STATIC, "js")) if n.endswith(".js") and n != "boot.js")
    assert sorted(u.rsplit("/", 1)[1] for u in urls["preload"]) == sorted(modules + ["vocab.js"])
    every = urls["scripts"] + urls["modules"] + urls["preload"] + urls["css"] + urls["plotly"]
    prefixes = {u.rsplit("/js/", 1)[0].rsplit("/css/", 1)[0] for u in every if "/static/a/" in u}
    assert len(prefixes) == 1, prefixes                        # one build: relative imports stay inside it
    assert urls["plotly"][0].startswith("/static/v/") and urls["plotly"][0].endswith("/plotly.min.js")
    for url in every:
        r = client.get(url)
        assert r.status_code == 200, url
        assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable", url
        r.close()
    assert "<script>" not in html.replace(" ", "")               # still no inline script


def test_the_page_gets_the_partial_bundle_not_the_full_one(client):
    html = client.get("/").data.decode()
    body = client.get(page_urls(html)["plotly"][0]).data
    with open(os.path.join(VENDOR, "plotly-basic.min.js"), "rb") as f:
        assert body == f.read()
    assert len(body) < 2_000_000


@pytest.mark.parametrize("accept,encoding,decode", [
    ("gzip, deflate, br, zstd", "br", brotli.decompress),
    ("gzip, deflate", "gzip", gzip.decompress),
    ("br;q=0, gzip", "gzip", gzip.decompress),
    ("", None, lambda b: b),
    ("identity", None, lambda b: b),
])
def test_bodies_are_compressed_by_accept_encoding(client, accept, encoding, decode):
    for path, source in (("/static/js/figure.js", os.path.join(assets.STATIC, "js", "figure.js")),
                         ("/static/vendor/plotly.min.js", os.path.join(VENDOR, "plotly-basic.min.js"))):
        r = client.get(path, headers={"Accept-Encoding": accept})
        assert r.status_code == 200
        assert r.headers.get("Content-Encoding") == encoding
        assert r.headers["Vary"] == "Accept-Encoding"
        with open(source, "rb") as f:
            assert decode(r.data) == f.read()


def test_revalidation_and_stale_builds(client):
    r = client.get("/static/js/model.js", headers={"Accept-Encoding": "gzip"})
    assert r.headers["Cache-Control"] == "no-cache"             # stable names are revalidated
    again = client.get("/static/js/model.js", headers={"Accept-Encoding": "gzip", "If-None-Match": r.headers["ETag"]})
    assert again.status_code == 304
    # A tab from before an upgrade asks for its old build: today's file, not cached.
    old = client.get("/static/a/0123456789abcdef/js/model.js")
    assert old.status_code == 200 and old.headers["Cache-Control"] == "no-cache"
    assert client.get("/static/a/0123456789abcdef/js/nothing.js").status_code == 404
    assert client.get("/static/../webapp/__init__.py").status_code == 404
    r = client.get(vocab.PATH)
    assert r.status_code == 200 and b"export const NS_TYPES" in r.data


def copy_static(tmp_path, vendored=True):
    static = tmp_path / "static"
    shutil.copytree(assets.STATIC, static)
    for folder in ("js", "css"):             # the app's precompressed copies, if setup.sh made them
        for name in os.listdir(static / folder):
            if name.endswith((".gz", ".br")):
                os.remove(static / folder / name)
    if not vendored:
        shutil.rmtree(static / "vendor")
    return str(static)


def test_any_change_makes_a_new_build_hash(tmp_path):
    static = copy_static(tmp_path)
    before = assets.AssetCatalog(static, {vocab.ASSET: vocab.render()})
    with open(os.path.join(static, "js", "hover.js"), "a") as f:
        f.write("\n// changed\n")
    after = assets.AssetCatalog(static, {vocab.ASSET: vocab.render()})
    assert before.app_hash != after.app_hash
    assert before.url("js/main.js") != after.url("js/main.js")
    regenerated = assets.AssetCatalog(static, {vocab.ASSET: vocab.render() + "// another vocabulary\n"})
    assert regenerated.app_hash not in (before.app_hash, after.app_hash)
    assert before.plotly.etag == after.plotly.etag                # the bundle keeps its own hash


def test_stale_precompressed_copies_are_not_served(tmp_path):
    static = copy_static(tmp_path)
    assert assets.precompress(static, progress=lambda _m: None) > 0
    path = os.path.join(static, "js", "hover.js")
    with open(path, "a") as f:
        f.write("\n// edited after precompress\n")
    catalog = assets.AssetCatalog(static)
    with open(path, "rb") as f:
        assert brotli.decompress(catalog.files["js/hover.js"].body("br")) == f.read()
    assert assets.precompress(static, progress=lambda _m: None) == 2   # only the edited file again


def test_without_the_partial_bundle_the_full_one_is_served_with_a_warning(tmp_path, caplog):
    static = copy_static(tmp_path, vendored=False)
    with caplog.at_level(logging.WARNING, logger="webapp.assets"):
        catalog = assets.AssetCatalog(static)
    assert catalog.plotly is not None and not catalog.plotly_partial
    assert len(catalog.plotly.data) > 3_000_000
    assert "vendor-plotly.sh" in caplog.text


def test_pick_encoding():
    assert assets.pick_encoding("gzip, deflate, br") == "br"
    assert assets.pick_encoding("br;q=0, gzip;q=0.5") == "gzip"
    assert assets.pick_encoding("*") == "br"
    assert assets.pick_encoding("deflate") is None
    assert assets.pick_encoding("gzip;q=junk") is None


def test_precompress_command_usage(capsys):
    assert assets.main(["nonsense"]) == 2
    assert "usage" in capsys.readouterr().err


def test_token_exchange_keeps_the_deep_link_and_drops_the_token():
    _, client = make_client(serving(World()))
    r = client.get("/?token=%s&view=focus&sel=container%%3Amyapp&at=2026-12-03T14%%3A02%%3A00Z" % TOKEN)
    assert r.status_code == 303
    location = r.headers["Location"]
    assert "token" not in location and TOKEN not in location
    assert location.startswith("/?") and "view=focus" in location and "sel=container%3Amyapp" in location
    assert "at=2026-12-03T14%3A02%3A00Z" in location
    assert client.get(location).status_code == 200               # the cookie was set on the way
    plain = make_client(serving(World()))[1].get("/?token=" + TOKEN)
    assert plain.headers["Location"] in ("/", "http://localhost/")
