"""The session's real PostgreSQL as pytest fixtures (the launcher itself is harness.postgres)."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness.postgres import Postgres
from harness.server import LiveApi, start_gunicorn, stop_gunicorn


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """One server for the session; each test takes its own database (``pg_url``)."""
    if not glob.glob("/usr/lib/postgresql/*/bin/postgres"):
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but PostgreSQL is not installed (apt-get install postgresql)")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    server = Postgres()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def pg_url(postgres: Postgres) -> str:
    """A fresh database of the session's server, as FLEETPULSE_METADATA_URL takes it."""
    if postgres.proc is None or postgres.proc.poll() is not None:
        postgres.start()  # a test that stopped it and failed before starting it again
    return postgres.new_db_url()


@dataclass
class Fleet:
    """Real gunicorn nodes on one PostgreSQL metadata database and one InfluxDB database."""

    root: Path
    storage_url: str
    metadata_url: str
    env: dict = field(default_factory=dict)
    nodes: list[LiveApi] = field(default_factory=list)

    def start(self, env: dict | None = None, workers: int = 2) -> LiveApi:
        """One more node with the fleet's settings (plus ``env``)."""
        work = self.root / f"node{len(self.nodes)}"
        work.mkdir()
        node = start_gunicorn(
            work,
            workers,
            env_extra={**self.node_env(), **(env or {})},
            storage_url=self.storage_url,
        )
        self.nodes.append(node)
        return node

    def node_env(self) -> dict:
        return {**NODE_ENV, "FLEETPULSE_METADATA_URL": self.metadata_url, **self.env}

    def stop(self) -> None:
        for n in self.nodes:
            stop_gunicorn(n.proc)


NODE_ENV = {"FLEETPULSE_RATE_LIMIT": "0", "FLEETPULSE_JOBS": "0", "FLEETPULSE_LOG_LEVEL": "INFO"}


@pytest.fixture
def fleet(influxd, pg_url: str, tmp_path: Path) -> Iterator[Fleet]:
    """Two nodes, two workers each, on a fresh InfluxDB database and PostgreSQL database."""
    f = Fleet(tmp_path, influxd.new_db_url(), pg_url)
    try:
        f.start()
        f.start()
        yield f
    finally:
        f.stop()
