"""Settings come from FLEETPULSE_* variables, in one place, with documented defaults."""

from __future__ import annotations

import pytest

from app.core.durations import format_duration, parse_duration
from app.web.settings import Settings


@pytest.mark.parametrize(
    ("text", "secs"),
    [("90", 90), ("90s", 90), ("2h", 7200), ("7d", 604800), ("400d", 34560000), ("1.5m", 90)],
)
def test_durations(text, secs):
    assert parse_duration(text) == secs


def test_bad_duration():
    with pytest.raises(ValueError, match="duration"):
        parse_duration("soon")


def test_format_duration():
    assert format_duration(7 * 86400) == "168h"
    assert format_duration(3600) == "1h"
    assert format_duration(90) == "90s"


def test_env_and_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = Settings.from_env({})
    assert s.storage_url == f"sqlite://{tmp_path}/var/fleetpulse.db"
    assert s.retention_30s == 7 * 86400 and s.retention_30m == 400 * 86400 and s.raw_retention == 0
    s = Settings.from_env(
        {
            "FLEETPULSE_STORAGE_URL": "influxdb://db:8086/fp",
            "FLEETPULSE_30S_RETENTION": "2d",
            "FLEETPULSE_RAW_RETENTION": "2h",
            "FLEETPULSE_HOLD": "60",
            "FLEETPULSE_JOBS": "false",
            "FLEETPULSE_MAX_BODY_BYTES": "1000",
        }
    )
    assert (s.retention_30s, s.raw_retention, s.hold, s.jobs, s.max_body_bytes) == (
        172800,
        7200,
        60,
        False,
        1000,
    )
    assert s.metadata_url == f"sqlite://{tmp_path}/var/metadata.db"


def test_dotenv_adds_but_environment_wins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("FLEETPULSE_ADMIN_TOKEN=from-file\nFLEETPULSE_HOLD=45\n# c\n")
    s = Settings.from_env({"FLEETPULSE_HOLD": "30"})
    assert s.admin_token == "from-file" and s.hold == 30
