"""The session's real PostgreSQL as pytest fixtures (the launcher itself is harness.postgres)."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator

import pytest

from harness.postgres import Postgres


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
