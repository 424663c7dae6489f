from pathlib import Path

import pytest

from agent.collectors import COLLECTORS
from agent.config import ConfigError, WatchSpec, load, parse_watch


def test_defaults_from_an_empty_environment():
    cfg = load(environ={}, hostname="web 01.example.com")
    assert cfg.url == "http://127.0.0.1:8000"
    assert cfg.host == "web-01.example.com"  # sanitised to the API's host alphabet
    assert cfg.interval == 1.0 and cfg.window == 30.0
    assert cfg.spool_max_batches == 10000 and cfg.spool_max_mb == 200.0
    assert cfg.collectors == tuple(COLLECTORS) and cfg.watch == ()
    assert cfg.ca_file is None and cfg.token == ""


def test_toml_file_then_environment_overrides(tmp_path):
    f = tmp_path / "agent.toml"
    f.write_text(
        'url = "https://api.example.com/"\ntoken = "from-file"\ninterval = 5\n'
        'watch = ["web=nginx*", "db=pid:42"]\ncollectors = ["cpu", "memory"]\n'
        f'spool_dir = "{tmp_path}/sp"\n'
    )
    cfg = load(f, environ={"FLEETPULSE_TOKEN": "from-env", "FLEETPULSE_HOST": "h1"})
    assert cfg.url == "https://api.example.com"
    assert cfg.token == "from-env" and cfg.host == "h1" and cfg.interval == 5.0
    assert cfg.watch == (WatchSpec("web", "name", "nginx*"), WatchSpec("db", "pid", "42"))
    assert cfg.collectors == ("cpu", "memory") and cfg.spool_dir == Path(tmp_path / "sp")


def test_token_file_and_table_watch(tmp_path):
    (tmp_path / "tok").write_text("s3cret\n")
    f = tmp_path / "a.toml"
    f.write_text(f'token_file = "{tmp_path}/tok"\n[watch]\ntrain = "cmd:python*train.py*"\n')
    cfg = load(f, environ={})
    assert cfg.token == "s3cret"
    assert cfg.watch == (WatchSpec("train", "cmd", "python*train.py*"),)


def test_watch_string_forms():
    assert parse_watch("postgres, web=nginx ,pid:7") == (
        WatchSpec("postgres", "name", "postgres"),
        WatchSpec("web", "name", "nginx"),
        WatchSpec("pid_7", "pid", "7"),
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FLEETPULSE_INTERVAL": "fast"}, "interval"),
        ({"FLEETPULSE_INTERVAL": "0"}, "interval"),
        ({"FLEETPULSE_URL": "ftp://x"}, "url"),
        ({"FLEETPULSE_HOST": "bad host"}, "host"),
        ({"FLEETPULSE_COLLECTORS": "cpu,fan"}, "collectors"),
        ({"FLEETPULSE_CA_FILE": "/nonexistent.pem"}, "ca_file"),
        ({"FLEETPULSE_WATCH": "x=pid:abc"}, "watch"),
        ({"FLEETPULSE_SPOOL_MAX_BATCHES": "-1"}, "spool_max_batches"),
    ],
)
def test_bad_values_name_their_key(env, message):
    with pytest.raises(ConfigError, match=message):
        load(environ=env)


def test_bad_toml_is_a_config_error(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text("url = \n")
    with pytest.raises(ConfigError, match=r"bad\.toml"):
        load(f, environ={})
