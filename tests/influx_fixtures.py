"""The session's real ``influxd`` as a pytest fixture (the launcher itself is harness.influxd)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.influxd import Influxd


def influxd_binary() -> str | None:
    """The influxd on PATH; with CI=true a missing one is an error, not a skip."""
    found = shutil.which("influxd")
    if found is None and os.environ.get("CI", "").lower() == "true":
        pytest.fail("CI=true but influxd is not installed (apt-get install influxdb)")
    return found


@pytest.fixture(scope="session")
def influxd() -> Iterator[Influxd]:
    """One influxd for the whole session; each test takes its own database (new_db_url)."""
    binary = influxd_binary()
    if binary is None:
        pytest.skip("influxd is not installed (apt-get install influxdb)")
    with tempfile.TemporaryDirectory(prefix="fp-influxd-") as d:
        server = Influxd(Path(d), binary)
        server.start()
        try:
            yield server
        finally:
            server.stop()
