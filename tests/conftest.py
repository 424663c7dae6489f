"""Shared fixtures: apps on each store, tokens, and a real gunicorn for end-to-end tests."""

from __future__ import annotations

import contextlib
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from app.core.records import Batch
from app.web import create_app
from harness.server import LOG_NAME, LiveApi, stop_gunicorn
from harness.server import start_gunicorn as harness_start_gunicorn

ROOT = Path(__file__).resolve().parent.parent
pytest_plugins = [
    m
    for m in ("tests.agent_fixtures", "tests.influx_fixtures", "tests.pg_fixtures")
    if (ROOT / (m.replace(".", "/") + ".py")).exists()
]

# Every contract test runs on each store listed here.
STORES = ["sqlite", "influxdb"]
ADMIN = "test-admin-token"


# Logs of the servers the running test started: a failing test's report carries their tails,
# so a CI log shows the server's side of an end-to-end failure.
SERVER_LOGS: list[Path] = []


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    SERVER_LOGS.clear()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.failed:
        for log in SERVER_LOGS:
            if log.exists():
                tail = log.read_text(errors="replace")[-4000:]
                report.sections.append((f"server log {log.parent.name}/{log.name}", tail))
    return report


# An end-to-end test that fails on the connection itself (reset, refused, cut, timed out), not
# on an assertion, runs once more; the first failure stays in the report (-ra lists RERUN, with
# the server log above). Assertion failures are never rerun. The one cause of such failures
# found so far was a product bug (a worker failing at boot on "database is locked" made gunicorn
# stop every worker; fixed in app/storage/sqldb.py and tested there); this stays as a net.
CONNECTION_FAULTS = [
    "ConnectionError",
    "ConnectionResetError",
    "RemoteDisconnected",
    "ProtocolError",
    "ReadTimeout",
]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.pluginmanager.hasplugin("rerunfailures"):
        return
    for item in items:
        if item.get_closest_marker("e2e") and not item.get_closest_marker("flaky"):
            item.add_marker(
                pytest.mark.flaky(reruns=1, reruns_delay=2, only_rerun=CONNECTION_FAULTS)
            )


def now30() -> int:
    """The start of the current 30-second window, minus two windows: safely in the past."""
    return int(time.time()) // 30 * 30 - 60


@pytest.fixture(params=STORES)
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/fleetpulse.db"
    influxd = request.getfixturevalue("influxd")
    return influxd.new_db_url()


@pytest.fixture
def app(storage_url: str, tmp_path: Path):
    application = create_app(
        {
            "storage_url": storage_url,
            "metadata_path": str(tmp_path / "meta.db"),
            "admin_token": ADMIN,
            "jobs": False,
        }
    )
    yield application
    ext = application.extensions["fleetpulse"]
    ext.store.close()
    ext.meta.close()


class Client:
    """The Flask test client with bearer-token and JSON helpers."""

    def __init__(self, flask_client, token: str = ADMIN) -> None:
        self.c = flask_client
        self.token = token

    def headers(self, token: str | None, extra: dict | None = None) -> dict:
        h = {} if token is None else {"Authorization": f"Bearer {token}"}
        h.update(extra or {})
        return h

    def post(self, path: str, body=None, token: str | None = "", **kw):
        tok = self.token if token == "" else token
        return self.c.post(
            path, json=body, headers=self.headers(tok, kw.pop("headers", None)), **kw
        )

    def get(self, path: str, token: str | None = "", **kw):
        tok = self.token if token == "" else token
        return self.c.get(path, headers=self.headers(tok, kw.pop("headers", None)), **kw)

    def delete(self, path: str, token: str | None = "", **kw):
        tok = self.token if token == "" else token
        return self.c.delete(path, headers=self.headers(tok), **kw)

    def token_for(self, role: str, host: str | None = None) -> str:
        body = {"role": role} if host is None else {"role": role, "host": host}
        r = self.post("/api/v1/tokens", body)
        assert r.status_code == 201, r.json
        return r.json["token"]

    def samples(self, host: str, series: list[dict], token: str | None = "", **kw):
        return self.post("/api/v1/samples", {"host": host, "series": series}, token=token, **kw)

    def series(self, host: str, metric: str, start, end, **params):
        q = {"host": host, "metric": metric, "start": start, "end": end, **params}
        return self.get("/api/v1/series", query_string=q)


@pytest.fixture
def client(app) -> Client:
    return Client(app.test_client())


# ---- a real gunicorn (the launcher is harness.server) ---------------------------------------


def start_gunicorn(
    tmp: Path,
    workers: int = 2,
    env_extra: dict | None = None,
    storage_url: str | None = None,
    tls: tuple[Path, Path] | None = None,
) -> LiveApi:
    """harness.server.start_gunicorn with the tests' admin token; its log joins failure reports."""
    SERVER_LOGS.append(tmp / LOG_NAME)
    return harness_start_gunicorn(
        tmp, workers=workers, env_extra=env_extra, storage_url=storage_url, tls=tls, admin=ADMIN
    )


@pytest.fixture
def live_api(tmp_path: Path) -> Iterator[LiveApi]:
    """A real gunicorn with 2 workers on a free port, on a fresh SQLite store."""
    api = start_gunicorn(tmp_path)
    try:
        yield api
    finally:
        stop_gunicorn(api.proc)


@pytest.fixture(params=STORES)
def live_api_any(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LiveApi]:
    """A real gunicorn on each store: SQLite, then a real influxd."""
    url = None
    if request.param == "influxdb":
        url = request.getfixturevalue("influxd").new_db_url()
    (tmp_path / "api").mkdir()
    api = start_gunicorn(tmp_path / "api", storage_url=url)
    try:
        yield api
    finally:
        stop_gunicorn(api.proc)


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A small tmpfs at ``path`` (a real file system that fills up); skip where mounting is
    refused (it needs root)."""
    path.mkdir()
    got = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if got.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {got.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def unique_host() -> str:
    return "h-" + uuid.uuid4().hex[:10]


def one_series_batch(
    host: str, ts, vals, carry=None, metric: str = "m.x", tags=(), unit: str = "percent"
) -> Batch:
    """A one-series Batch as the API builds it, for tests that talk to a store directly."""
    sid = np.zeros(len(ts), dtype=np.int64)
    ct = np.array([np.nan if carry is None else carry[0]])
    cv = np.array([np.nan if carry is None else carry[1]])
    t, v = np.asarray(ts, float), np.asarray(vals, float)
    return Batch(host, [(metric, tuple(sorted(tags)))], [unit], sid, t, v, ct, cv)
