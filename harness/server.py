"""The one gunicorn launcher: ``gunicorn -c gunicorn.conf.py`` as users start it, on a free port."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
import requests

from harness.net import free_port
from harness.procs import stop_group

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ADMIN = "harness-admin-token"
LOG_NAME = "gunicorn.log"  # in the work dir: callers that report logs know where it is


@dataclass
class LiveApi:
    """A running gunicorn: its URL, admin token, SQLite path (if default), process and log."""

    url: str
    admin_token: str
    db_path: Path
    proc: subprocess.Popen
    log_path: Path

    @property
    def port(self) -> int:
        """The bound port, for callers that speak http.client."""
        return int(self.url.rsplit(":", 1)[1])

    def request(self, method: str, path: str, token: str | None = None, **kw) -> requests.Response:
        """One request with an optional bearer token, so callers skip header plumbing."""
        headers = kw.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return requests.request(method, self.url + path, headers=headers, timeout=30, **kw)

    def token_for(self, role: str, host: str | None = None) -> str:
        """A new token of ``role`` (bound to ``host``), created with the admin token."""
        body = {"role": role} if host is None else {"role": role, "host": host}
        r = self.request("POST", "/api/v1/tokens", self.admin_token, json=body)
        assert r.status_code == 201, r.text
        return r.json()["token"]

    def post_samples(
        self, token: str, host: str, series: list[dict], gz: bool = True
    ) -> requests.Response:
        """POST one batch as the agent does (gzip by default)."""
        body = orjson.dumps({"host": host, "series": series})
        headers = {"Content-Type": "application/json"}
        if gz:
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        return self.request("POST", "/api/v1/samples", token, data=body, headers=headers)


def start_gunicorn(
    workdir: Path,
    workers: int = 2,
    env_extra: dict | None = None,
    storage_url: str | None = None,
    tls: tuple[Path, Path] | None = None,
    admin: str = DEFAULT_ADMIN,
) -> LiveApi:
    """gunicorn -c gunicorn.conf.py from the repo root; returns once every worker is ready.

    ``tls`` = (cert, key): gunicorn serves https itself and is polled with that certificate.
    The store defaults to ``workdir/live.db``; the log is ``workdir/gunicorn.log``.
    """
    port = free_port()
    db = workdir / "live.db"
    log = workdir / LOG_NAME
    env = {
        **os.environ,
        # gunicorn's own lines (boot, ready, exits) at info whatever the app's log level
        "GUNICORN_CMD_ARGS": f"--bind 127.0.0.1:{port} --workers {workers} --log-level info",
        "FLEETPULSE_STORAGE_URL": storage_url or f"sqlite:///{db}",
        "FLEETPULSE_METADATA_URL": f"sqlite://{workdir / 'meta.db'}",
        "FLEETPULSE_ADMIN_TOKEN": admin,
        **({"FLEETPULSE_TLS_CERT": str(tls[0]), "FLEETPULSE_TLS_KEY": str(tls[1])} if tls else {}),
        **(env_extra or {}),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    verify = str(tls[0]) if tls else True
    deadline = time.time() + 30
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited: {log.read_text()[-3000:]}")
        # every worker booted (one answering /healthz is not enough: a test that needs both
        # workers, or that kills one, must not race the second one's boot)
        ready = log.read_text(errors="replace").count("Worker ready (pid:") >= workers
        try:
            if ready and requests.get(url + "/healthz", timeout=1, verify=verify).ok:
                return LiveApi(url, admin, db, proc, log)
        except requests.RequestException:  # not up yet, or a busy machine: ask again
            pass
        time.sleep(0.1)
    stop_gunicorn(proc)  # the workers too: nothing outlives a failed start
    raise RuntimeError(f"gunicorn did not start: {log.read_text()[-3000:]}")


def stop_gunicorn(proc: subprocess.Popen, grace: float = 30.0) -> None:
    """SIGTERM the group (graceful_timeout is 20 s); SIGKILL what is left after ``grace``."""
    stop_group(proc, signal.SIGTERM, grace)
