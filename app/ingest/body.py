"""Request bodies: gzip with a hard limit on the inflated size, then JSON."""

from __future__ import annotations

import zlib

import orjson

from app.core.errors import Invalid, TooLarge


def inflate(body: bytes, encoding: str | None, limit: int) -> bytes:
    """The body, gunzipped if it says so; a gzip bomb is refused after ``limit`` bytes."""
    enc = (encoding or "identity").strip().lower()
    if enc == "identity":
        return body
    if enc != "gzip":
        raise Invalid(
            "unsupported Content-Encoding",
            {"Content-Encoding": [f"{encoding!r}: use gzip or none"]},
        )
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(body, limit + 1)
        if len(out) > limit or d.unconsumed_tail:
            raise TooLarge(f"body inflates to more than {limit} bytes")
        out += d.flush()
    except zlib.error as e:
        raise Invalid("body is not valid gzip", {"_body": [str(e)]}) from e
    if not d.eof:
        raise Invalid("body is not valid gzip", {"_body": ["truncated gzip stream"]})
    if d.unused_data:
        # A second gzip member (or junk) after the first would otherwise be dropped silently.
        raise Invalid(
            "body is not valid gzip", {"_body": ["data after the end of the gzip stream"]}
        )
    return out


def decode_json(body: bytes, encoding: str | None, limit: int) -> object:
    """JSON from a (maybe gzipped) body."""
    try:
        return orjson.loads(inflate(body, encoding, limit))
    except orjson.JSONDecodeError as e:
        raise Invalid("body is not valid JSON", {"_body": [str(e)]}) from e
