"""InfluxDB 1.x wire details: line-protocol and InfluxQL escaping, and one pooled HTTP client."""

from __future__ import annotations

import contextlib
import functools
import gzip
import os
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode, urlsplit

import orjson
import urllib3

from app.core.errors import StorageUnavailable

GZIP_MIN_BYTES = 64 * 1024  # below this, compressing costs more CPU than loopback bandwidth
SUBSTITUTE_BACKSLASH = "\u29f5"  # REVERSE SOLIDUS OPERATOR, for tag values 1.x cannot carry


def escape_measurement(name: str) -> str:
    """Measurement names escape commas and spaces (metric names never have them, but still)."""
    return name.replace(",", "\\,").replace(" ", "\\ ")


def escape_key(key: str) -> str:
    """Tag keys and field keys escape commas, equals signs and spaces."""
    return key.replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _parse_tag_value_1x(text: str) -> str | None:
    """What influxd 1.x stores for an escaped tag value: it skips ``\\x`` pairs when scanning
    for the separator, then unescapes only ``\\,``, ``\\=`` and ``\\ `` (never ``\\\\``)."""
    i = 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] in ", =":
            return None
        i += 1
    if i != len(text):  # a trailing lone backslash ate the separator
        return None
    for c in ",= ":
        text = text.replace("\\" + c, c)
    return text


@functools.lru_cache(maxsize=65536)
def stored_tag_value(value: str) -> str:
    """The value influxd will hold for a tag value: itself when 1.x's line protocol can carry
    it, else the same text with backslashes replaced by U+29F5 (documented in DESIGN)."""
    if _parse_tag_value_1x(_escape_tag_raw(value)) == value:
        return value
    return value.replace("\\", SUBSTITUTE_BACKSLASH)


def _escape_tag_raw(value: str) -> str:
    return value.replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def escape_tag_value(value: str) -> str:
    """Line-protocol text of a tag value that influxd 1.x reads back as ``stored_tag_value``."""
    return _escape_tag_raw(stored_tag_value(value))


def escape_string_field(value: str) -> str:
    """A double-quoted string field value."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_ident(name: str) -> str:
    """An InfluxQL identifier, double-quoted."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_literal(value: str) -> str:
    """An InfluxQL string literal, single-quoted."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@functools.lru_cache(maxsize=65_536)
def series_key(metric: str, host: str, tags: tuple[tuple[str, str], ...]) -> str:
    """``measurement,tag=v,...`` with the tags sorted by key (influxd's own order); remembered,
    as every batch of a host escapes the same series again."""
    pairs = sorted((("host", host), *tags))
    return escape_measurement(metric) + "".join(
        f",{escape_key(k)}={escape_tag_value(v)}" for k, v in pairs
    )


def fmt_float(x: float) -> str:
    """Shortest exact text of a float (repr round-trips; influxd accepts the exponent form)."""
    return repr(float(x))


class InfluxHTTP:
    """The 1.x HTTP API (/write, /query, /ping): one keep-alive pool per process and thread."""

    def __init__(
        self,
        base_url: str,
        timeout: float,
        token: str = "",
        username: str = "",
        password: str = "",
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.headers: dict[str, str] = {}
        self.auth_params: dict[str, str] = {}
        if token:
            self.headers["Authorization"] = f"Token {token}"
        elif username:
            self.auth_params = {"u": username, "p": password}
        parts = urlsplit(self.base_url)
        self.scheme = parts.scheme
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if self.scheme == "https" else 8086)
        self._pool: urllib3.HTTPConnectionPool | None = None
        self._pid = os.getpid()
        self._local = threading.local()

    @contextlib.contextmanager
    def budget(self, seconds: float | None = None) -> Iterator[float]:
        """One deadline (``seconds``, default ``timeout``, from now) for every call inside: a
        store operation of several HTTP calls answers, or raises StorageUnavailable, by then."""
        outer = getattr(self._local, "deadline", None)
        if outer is not None:
            yield outer
            return
        self._local.deadline = time.monotonic() + (seconds or self.timeout)
        try:
            yield self._local.deadline
        finally:
            self._local.deadline = None

    def remaining(self) -> float:
        """Seconds left in the current budget (the whole timeout outside of one)."""
        deadline = getattr(self._local, "deadline", None)
        if deadline is None:
            return self.timeout
        left = deadline - time.monotonic()
        if left <= 0:
            raise StorageUnavailable(f"influxdb did not answer within {self.timeout:g}s")
        return left

    def pool(self) -> urllib3.HTTPConnectionPool:
        """This process's keep-alive pool; a fresh one after a fork (sockets never cross)."""
        if self._pool is None or self._pid != os.getpid():
            cls = (
                urllib3.HTTPSConnectionPool
                if self.scheme == "https"
                else urllib3.HTTPConnectionPool
            )
            self._pool = cls(
                self.host,
                self.port,
                maxsize=16,  # gthread workers: one connection per busy thread
                block=False,
                timeout=urllib3.Timeout(connect=self.timeout, read=self.timeout),
                retries=False,
                headers=self.headers,
            )
            self._pid = os.getpid()
        return self._pool

    def _request(self, method: str, path: str, **kw: Any) -> urllib3.BaseHTTPResponse:
        try:
            headers = {**self.headers, **kw.pop("headers", {})}
            left = self.remaining()
            r = self.pool().request(
                method,
                path,
                headers=headers,
                timeout=urllib3.Timeout(connect=left, read=left, total=left),
                **kw,
            )
        except urllib3.exceptions.HTTPError as e:
            self._pool = None  # drop a pool whose sockets may be half-dead
            raise StorageUnavailable(f"influxdb {method} {path}: {e.__class__.__name__}") from e
        if r.status >= 500:
            raise StorageUnavailable(f"influxdb {path} answered {r.status}: {_text(r)}")
        return r

    def ping(self) -> None:
        """Raise StorageUnavailable unless /ping answers 204 within the timeout."""
        r = self._request("GET", "/ping")
        if r.status != 204:
            raise StorageUnavailable(f"influxdb /ping answered {r.status}")

    def write(self, body: bytes, db: str, rp: str, precision: str = "s") -> None:
        """One /write; anything but 204 raises (beyond-retention drops are expected, see below)."""
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if len(body) >= GZIP_MIN_BYTES:
            body = gzip.compress(body, 1)
            headers["Content-Encoding"] = "gzip"
        params = {"db": db, "rp": rp, "precision": precision, **self.auth_params}
        r = self._request("POST", "/write?" + urlencode(params), body=body, headers=headers)
        if r.status == 204:
            return
        text = _text(r, 500)
        if r.status == 400 and "beyond retention policy" in text and "dropped=" in text:
            # Windows that start just before the retention edge: already expired, as a
            # retention job would delete them; the other lines of the body are stored.
            return
        if r.status == 404:
            raise StorageUnavailable(f"influxdb: {text}")
        if r.status in (401, 403):
            raise StorageUnavailable(f"influxdb refused the credentials: {text}")
        raise RuntimeError(f"influxdb /write answered {r.status}: {text}")

    def query(
        self, statements: list[str], db: str = "", epoch: str = "s", post: bool = False
    ) -> list[dict]:
        """Run statements in one /query call; returns one result dict per statement."""
        params = {"q": ";".join(statements), "epoch": epoch, **self.auth_params}
        if db:
            params["db"] = db
        if post or len(params["q"]) > 4000:  # long statements: keep the URL short
            r = self._request(
                "POST",
                "/query",
                body=urlencode(params).encode(),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
        else:
            r = self._request("GET", "/query?" + urlencode(params))
        if r.status in (401, 403):
            raise StorageUnavailable(f"influxdb refused the credentials: {_text(r)}")
        try:
            body = orjson.loads(r.data)
        except orjson.JSONDecodeError as e:
            raise RuntimeError(f"influxdb /query answered {r.status}: {_text(r)}") from e
        if "error" in body:
            raise RuntimeError(f"influxdb /query: {body['error']}")
        results = body.get("results", [])
        for res in results:
            err = res.get("error")
            if err:
                if "database not found" in err:
                    raise StorageUnavailable(f"influxdb: {err}")
                raise RuntimeError(f"influxdb /query: {err}")
        return results


def _text(r: urllib3.BaseHTTPResponse, limit: int = 200) -> str:
    return r.data[:limit].decode("utf-8", "replace")
