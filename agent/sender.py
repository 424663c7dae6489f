"""Delivers spooled batches to POST /api/v1/samples: oldest first, backoff with jitter.

What each answer does to the batch:
  2xx             delivered: removed from the spool
  400, 415, 422   the batch itself is bad: moved to the dead-letter folder with the reason
  413             split into two batches by series (each series keeps its carry and points,
                  so the stored result is unchanged); a single series too big: dead letter
  401, 403        not the batch's fault (token revoked or wrong host): kept, logged as an
                  error, retried with backoff
  429, 503        kept; Retry-After is honoured
  other 4xx/5xx   kept, retried with backoff
  no answer       (refused, timeout, reset, died mid-request) kept, retried with backoff
"""

from __future__ import annotations

import email.utils
import http.client
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from agent import __version__
from agent.batcher import decode, encode
from agent.spool import Spool

log = logging.getLogger(__name__)

DEAD_LETTER = frozenset({400, 415, 422})
BACKOFF_BASE = 1.0
BACKOFF_CAP = 60.0  # after an outage the backlog goes out within a minute of recovery
RETRY_AFTER_CAP = 3600.0


@dataclass
class Answer:
    """An HTTP answer, read to the end so the keep-alive connection can be reused."""

    status: int
    body: bytes
    retry_after: float | None


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), RETRY_AFTER_CAP)
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, min(when - (time.time() if now is None else now), RETRY_AFTER_CAP))


class HttpClient:
    """One keep-alive connection (http.client); TLS verification is always on."""

    def __init__(self, url: str, token: str, timeout: float = 10.0, ca_file: str | None = None):
        parts = urlsplit(url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port
        self._base = parts.path.rstrip("/")
        self._path = self._base + "/api/v1/samples"
        self._timeout = timeout
        self._ca_file = ca_file
        self._headers = {
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            "Authorization": f"Bearer {token}",
            "User-Agent": f"fleetpulse-agent/{__version__}",
            "Connection": "keep-alive",
        }
        self._conn: http.client.HTTPConnection | None = None

    def _connect(self) -> http.client.HTTPConnection:
        if self._https:
            import ssl  # only https pays for the ssl module's memory

            ctx = ssl.create_default_context(cafile=self._ca_file)
            return http.client.HTTPSConnection(
                self._host, self._port, timeout=self._timeout, context=ctx
            )
        return http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)

    def close(self) -> None:
        """Drop the connection (after an error, or at shutdown)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def set_token(self, token: str) -> None:
        """Send with this token from now on (one an enrollment just gave)."""
        self._headers["Authorization"] = f"Bearer {token}"

    def post(self, body: bytes, path: str = "", headers: dict[str, str] | None = None) -> Answer:
        """POST one body (a gzip batch to /api/v1/samples unless ``path`` says otherwise);
        raises OSError/HTTPException when no answer came back."""
        sent = {**self._headers, **(headers or {})}
        target = self._base + path if path else self._path
        for attempt in (1, 2):
            reused = self._conn is not None
            if self._conn is None:
                self._conn = self._connect()
            try:
                self._conn.request("POST", target, body=body, headers=sent)
                resp = self._conn.getresponse()
                data = resp.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()
                if reused and attempt == 1:
                    continue  # the server closed an idle keep-alive connection: one fresh try
                raise
            except (OSError, http.client.HTTPException):
                self.close()
                raise
            if resp.will_close:
                self.close()
            return Answer(resp.status, data, parse_retry_after(resp.getheader("Retry-After")))
        raise http.client.HTTPException("unreachable")  # pragma: no cover


def split_body(body: bytes) -> list[bytes] | None:
    """Halve a batch by series for a 413; None when it holds a single series."""
    payload = decode(body)
    series = payload["series"]
    if len(series) < 2:
        return None
    mid = len(series) // 2
    return [
        encode({"host": payload["host"], "series": series[:mid]}),
        encode({"host": payload["host"], "series": series[mid:]}),
    ]


class Delivery:
    """The sending loop, run on its own thread so a slow API never delays sampling."""

    def __init__(
        self,
        spool: Spool,
        client: HttpClient,
        rng: random.Random | None = None,
        sleep_cap: float = BACKOFF_CAP,
    ) -> None:
        self.spool = spool
        self.client = client
        self.wake = threading.Event()
        self._rng = rng or random.Random()
        self._cap = sleep_cap
        self.failures = 0
        self.delivered = 0
        self.dead_lettered = 0
        self._last_error: str | None = None

    def _backoff(self, retry_after: float | None = None) -> float:
        self.failures += 1
        delay = min(self._cap, BACKOFF_BASE * 2 ** min(self.failures - 1, 30))
        delay = delay / 2 + self._rng.uniform(0, delay / 2)  # jitter: agents do not stampede
        if retry_after is not None:
            delay = max(delay, retry_after)
        return delay

    def _note(self, level: int, message: str) -> None:
        if message != self._last_error or level >= logging.ERROR:
            log.log(level, message)
        self._last_error = message

    def step(self) -> float | None:
        """Try the oldest batch once; returns seconds to wait before the next try (None: idle)."""
        item = self.spool.oldest()
        if item is None:
            return None
        batch_id, window, body = item
        try:
            ans = self.client.post(body)
        except (OSError, http.client.HTTPException) as exc:
            delay = self._backoff()
            msg = f"API unreachable ({exc!r}); batch kept, retry in {delay:.1f}s"
            self._note(logging.WARNING, msg)
            return delay
        status = ans.status
        if 200 <= status < 300:
            self.spool.ack(batch_id)
            self.delivered += 1
            if self.failures:
                log.info("API reachable again; sending the spool")
            self.failures, self._last_error = 0, None
            return 0.0
        reason = ans.body[:2000].decode("utf-8", "replace")
        if status in DEAD_LETTER:
            path = self.spool.dead_letter(batch_id, body, status, reason)
            self.dead_lettered += 1
            log.error(
                "API refused the batch of window %s (%d): %s; moved to %s",
                window, status, reason, path,
            )  # fmt: skip
            return 0.0
        if status == 413:
            parts = split_body(body)
            if parts is None:
                path = self.spool.dead_letter(batch_id, body, status, reason)
                self.dead_lettered += 1
                log.error("a single series is too large for the API (413); moved to %s", path)
            else:
                self.spool.replace(batch_id, window, parts)
                log.warning("413 from the API: batch split in two by series")
            return 0.0
        delay = self._backoff(ans.retry_after)
        if status in (401, 403):
            self._note(
                logging.ERROR,
                f"API answered {status} (token missing, revoked or not for this host): "
                f"batches kept in the spool, retry in {delay:.1f}s: {reason}",
            )
        else:
            self._note(logging.WARNING, f"API answered {status}; batch kept, retry in {delay:.1f}s")
        return delay

    def run(self, stop: threading.Event, idle_wait: float = 5.0) -> None:
        """Send until stop is set; wakes at once when a new batch is spooled."""
        while not stop.is_set():
            try:
                delay = self.step()
            except Exception:  # never let the sender thread die: log, wait, go on
                log.exception("sender error")
                delay = self._backoff()
            if delay is None:
                self.wake.wait(idle_wait)  # idle: a newly spooled batch wakes us at once
                self.wake.clear()
            elif delay > 0:
                stop.wait(delay)  # backing off: new batches do not cut the wait short
        self.client.close()

    def drain(self, deadline: float, clock: Callable[[], float] = time.monotonic) -> None:
        """At shutdown: send what can be sent before the deadline, stop at the first failure."""
        while clock() < deadline:
            delay = self.step()
            if delay != 0.0:
                return
