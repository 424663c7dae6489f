"""The web page (CONTRACT.md section 9): ``GET /`` and its own files, served without a token.

The page is static: its scripts call the API with the reader token the user typed (kept in the
browser's session storage), so nothing here reads data or checks a token. Every file comes from
``app/web/static`` (uPlot vendored there by ``make vendor``), gzipped once per process when the
browser accepts it, with an ETag so a reload costs 304s; the Content-Security-Policy lets the
page load and call nothing but this origin.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path

from flask import Blueprint, Flask, Response, abort, request

STATIC = Path(__file__).resolve().parent.parent / "static"
INDEX = "index.html"
# Only this origin: scripts, styles, images and API calls. uPlot sizes its elements through
# element.style (CSSOM), which style-src 'self' allows; inline <style>/<script> stay refused.
CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidate each load (a 304 via the ETag): no stale scripts
}
TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}

bp = Blueprint("page", __name__)


@dataclass(frozen=True)
class StaticFile:
    """One file of the page, read once: its bytes, gzipped bytes (if smaller) and tag."""

    body: bytes
    gz: bytes | None
    etag: str
    mimetype: str


@functools.cache
def _files(root: Path) -> dict[str, StaticFile]:
    """Every file under ``root`` by its relative path: the only names the page serves."""
    out = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        body = path.read_bytes()
        mimetype = TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0]
        packed = gzip.compress(body, 9, mtime=0)
        out[rel] = StaticFile(
            body=body,
            gz=packed if len(packed) < len(body) else None,
            etag=hashlib.sha256(body).hexdigest()[:20],
            mimetype=mimetype or "application/octet-stream",
        )
    return out


def _send(name: str) -> Response:
    """One page file, gzipped when the browser takes it, answered 304 when it has it already."""
    found = _files(STATIC).get(name)
    if found is None:
        abort(404)
    zipped = found.gz is not None and "gzip" in request.headers.get("Accept-Encoding", "")
    resp = Response(found.gz if zipped else found.body, mimetype=found.mimetype)
    if zipped:
        resp.headers["Content-Encoding"] = "gzip"
    resp.headers["Vary"] = "Accept-Encoding"
    resp.set_etag(found.etag + ("-gz" if zipped else ""))
    resp.headers.update(HEADERS)
    return resp.make_conditional(request)


@bp.get("/")
def index() -> Response:
    """The page itself, under a policy that forbids every other origin."""
    resp = _send(INDEX)
    resp.headers["Content-Security-Policy"] = CSP
    resp.headers["X-Frame-Options"] = "DENY"
    return resp


@bp.get("/assets/<path:name>")
def static_file(name: str) -> Response:
    """The page's scripts, styles and vendored uPlot (only files that exist under static/)."""
    if name == INDEX:
        abort(404)  # the page is served at / only, with its policy
    return _send(name)


def init_app(app: Flask) -> None:
    """Register the page's routes (no token, no rate limit: they carry no data)."""
    app.register_blueprint(bp)
