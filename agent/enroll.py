"""Enrollment (contract section 7): an agent started with an enrollment token and no token of
its own asks the API once for an agent token bound to its host, keeps it in its spool
directory (mode 0600) and uses it from then on, across restarts.

It runs beside sampling: what is sampled meanwhile waits in the spool, nothing is lost. A
refusal (the host already enrolled, the token expired or used up, a bad host name) is logged
once and retried slowly, so a misconfigured fleet never hammers the API.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from agent.config import Config
from agent.sender import HttpClient

log = logging.getLogger(__name__)

TOKEN_FILE = "agent-token"
RETRY_REFUSED = 300.0  # seconds: a refusal needs a person; asking again soon changes nothing
RETRY_DOWN = (5.0, 60.0)  # the API unreachable or busy: backoff from, to
# what each refusal means, and what a person does about it
REFUSED = {
    400: "the API refuses the host name {host!r}",
    401: "the enrollment token is expired, used up or revoked",
    403: "the token given as FLEETPULSE_ENROLL_TOKEN may not enroll",
    409: "the host name {host!r} already has an agent token",
}
NEXT_STEP = {
    400: "set FLEETPULSE_HOST to 1-128 of A-Z a-z 0-9 . _ -",
    401: "give this host a fresh enrollment token (FLEETPULSE_ENROLL_TOKEN) or an agent token",
    403: 'give it a token made with {"role": "enroll"}',
    409: "revoke that token (DELETE /api/v1/tokens/ID) if this is a reinstalled host, "
    "or give this host another FLEETPULSE_HOST",
}


def saved_token(spool_dir: Path) -> str | None:
    """The agent token an earlier enrollment kept, if any."""
    try:
        return (spool_dir / TOKEN_FILE).read_text().strip() or None
    except FileNotFoundError:
        return None


def save_token(spool_dir: Path, token: str) -> None:
    """Keep the token readable by this user alone, written whole or not at all."""
    spool_dir.mkdir(parents=True, exist_ok=True)
    tmp = spool_dir / f".{TOKEN_FILE}.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, spool_dir / TOKEN_FILE)


class Enrollment:
    """Asks for the host's agent token until it has it (or stop is set)."""

    def __init__(self, cfg: Config, on_token: Callable[[str], None]) -> None:
        self.cfg = cfg
        self.on_token = on_token
        self.client = HttpClient(cfg.url, cfg.enroll_token, cfg.timeout, cfg.ca_file)

    def run(self, stop: threading.Event) -> None:
        """The loop: one request, then the answer decides how long to wait."""
        delay, said = RETRY_DOWN[0], set()
        while not stop.is_set():
            wait = self.attempt(said)
            if wait is None:
                return
            if wait == RETRY_DOWN[0]:
                wait, delay = delay, min(delay * 2, RETRY_DOWN[1])
            stop.wait(wait)

    def attempt(self, said: set[int]) -> float | None:
        """One request: None once the token is kept, else the seconds to wait."""
        body = json.dumps({"host": self.cfg.host}).encode()
        plain = {"Content-Type": "application/json", "Content-Encoding": "identity"}
        try:
            answer = self.client.post(body, "/api/v1/enroll", plain)
        except OSError as exc:
            log.warning("enrollment: API unreachable (%s); trying again", exc)
            return RETRY_DOWN[0]
        except Exception as exc:  # http.client errors: no answer came back
            log.warning("enrollment: no answer (%s); trying again", exc)
            return RETRY_DOWN[0]
        if answer.status == 201:
            token = json.loads(answer.body)["token"]
            save_token(self.cfg.spool_dir, token)
            self.on_token(token)
            log.info("enrolled as host %r; token kept in %s", self.cfg.host, self.cfg.spool_dir)
            return None
        if answer.status in REFUSED:
            if answer.status not in said:  # one line per kind of refusal, not one per try
                said.add(answer.status)
                log.error(
                    "enrollment refused (%d): %s; %s. Sampling goes on into the spool; asking "
                    "again every %d s (%s)", answer.status,
                    REFUSED[answer.status].format(host=self.cfg.host),
                    NEXT_STEP[answer.status], RETRY_REFUSED, _reason(answer.body),
                )  # fmt: skip
            return RETRY_REFUSED
        return answer.retry_after or RETRY_DOWN[0]


def _reason(body: bytes) -> str:
    try:
        doc = json.loads(body)
        return f"{doc.get('error')} {doc.get('details')}"
    except ValueError:
        return body[:200].decode(errors="replace")
