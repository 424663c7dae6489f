"""The web page's files (CONTRACT.md section 9) through the Flask client, on every store: no
token needed, one origin only (CSP), gzip and 304s, and nothing else under its paths."""

from __future__ import annotations

import gzip
import re

import pytest

from app.web.views.page import STATIC

PAGE_FILES = ["/", "/assets/page.css", "/assets/js/main.js", "/assets/vendor/uPlot.iife.min.js"]


@pytest.mark.parametrize("path", PAGE_FILES)
def test_page_and_its_files_need_no_token(client, path):
    r = client.get(path, token=None)
    assert r.status_code == 200
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Cache-Control"] == "no-cache"
    assert r.data


def test_page_forbids_other_origins(client):
    r = client.get("/", token=None)
    assert r.mimetype == "text/html"
    csp = dict(d.strip().split(" ", 1) for d in r.headers["Content-Security-Policy"].split(";"))
    assert csp["default-src"] == "'none'"
    for directive in ("script-src", "style-src", "img-src", "connect-src"):
        assert csp[directive] == "'self'", directive
    assert csp["frame-ancestors"] == "'none'"
    # every reference in the page is to this server
    refs = re.findall(r'(?:src|href)="([^"]+)"', r.get_data(as_text=True))
    assert refs and all(ref.startswith(("/assets/", "#")) for ref in refs), refs


def test_files_have_their_types(client):
    assert client.get("/assets/js/main.js", token=None).mimetype == "text/javascript"
    assert client.get("/assets/page.css", token=None).mimetype == "text/css"
    assert client.get("/assets/icon.svg", token=None).mimetype == "image/svg+xml"


def test_gzip_when_accepted_and_304_when_unchanged(client):
    plain = client.get("/assets/vendor/uPlot.iife.min.js", token=None)
    zipped = client.get(
        "/assets/vendor/uPlot.iife.min.js", token=None, headers={"Accept-Encoding": "gzip, br"}
    )
    assert "Content-Encoding" not in plain.headers
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert zipped.headers["Vary"] == "Accept-Encoding"
    assert gzip.decompress(zipped.data) == plain.data
    assert len(zipped.data) < len(plain.data) / 2
    again = client.get(
        "/assets/vendor/uPlot.iife.min.js",
        token=None,
        headers={"Accept-Encoding": "gzip", "If-None-Match": zipped.headers["ETag"]},
    )
    assert again.status_code == 304 and again.data == b""


@pytest.mark.parametrize(
    "path",
    [
        "/assets/nope.js",
        "/assets/index.html",  # the page only at /, with its policy
        "/assets/../views/page.py",
        "/assets/%2e%2e/views/page.py",
        "/assets/..%2fviews%2fpage.py",
        "/assets/js",
    ],
)
def test_nothing_else_is_served(client, path):
    r = client.get(path, token=None)
    assert r.status_code == 404
    assert r.json["error"]


def test_the_api_still_needs_its_token(client):
    assert client.get("/api/v1/hosts", token=None).status_code == 401


def test_vendored_uplot_is_pinned_with_its_license():
    vendor = STATIC / "vendor"
    assert "uplot 1.6.32" in (vendor / "VERSION.txt").read_text()
    assert "MIT License" in (vendor / "uPlot.LICENSE").read_text()
    assert (
        (vendor / "uPlot.iife.min.js")
        .read_text()
        .startswith("/*! https://github.com/leeoniya/uPlot (v1.6.32) */")
    )


def test_scripts_never_write_html():
    """Host, metric and tag text reach the page as text only: no innerHTML and the like."""
    for js in (STATIC / "js").glob("*.js"):
        text = js.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in text, f"{js.name} uses {sink}"
