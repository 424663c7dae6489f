"""The agent's configuration, parsed in this one place from the environment and/or a TOML file.

Precedence: built-in defaults < the TOML file (--config) < FLEETPULSE_* environment variables.
TOML keys are the variable names without the FLEETPULSE_ prefix, lower case (`url`, `token`,
`interval`, `watch`, ...).

| variable | TOML key | default | meaning |
| --- | --- | --- | --- |
| FLEETPULSE_URL | url | http://127.0.0.1:8000 | API base URL |
| FLEETPULSE_TOKEN | token | (none) | agent bearer token |
| FLEETPULSE_TOKEN_FILE | token_file | (none) | read the token from this file instead |
| FLEETPULSE_ENROLL_TOKEN | enroll_token | (none) | no token: enroll once, keep it in spool_dir |
| FLEETPULSE_HOST | host | host name, sanitised to [A-Za-z0-9._-] | host name sent |
| FLEETPULSE_INTERVAL | interval | 1 | seconds between samples |
| FLEETPULSE_SPOOL_DIR | spool_dir | see default_spool_dir() | spool + dead letters |
| FLEETPULSE_SPOOL_MAX_BATCHES | spool_max_batches | 10000 | spool bound (batches) |
| FLEETPULSE_SPOOL_MAX_MB | spool_max_mb | 200 | spool bound (MB of gzip bodies) |
| FLEETPULSE_CA_FILE | ca_file | (system CAs) | CA bundle for https; verification is always on |
| FLEETPULSE_TIMEOUT | timeout | 10 | HTTP timeout, seconds |
| FLEETPULSE_WATCH | watch | (none) | `name=glob`, `name=cmd:glob`, `name=pid:N`, ... |
| FLEETPULSE_COLLECTORS | collectors | all | subset of cpu,memory,disk,network,gpu,power,processes |
| FLEETPULSE_PROC_REFRESH | proc_refresh | 10 | seconds between re-reads of watched process trees |
| FLEETPULSE_LOG_LEVEL | log_level | INFO | logging level |
| FLEETPULSE_WINDOW | window | 30 | batch window s (tests only; the API uses 30) |
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.collectors import COLLECTORS
from agent.names import host_error, tag_value_error
from agent.samples import sanitize_host

PREFIX = "FLEETPULSE_"


class ConfigError(ValueError):
    """A configuration value is unusable; the message names the key."""


@dataclass(frozen=True)
class WatchSpec:
    """One watched process group: `name` is the `process` tag, kind is name, cmd or pid."""

    name: str
    kind: str
    pattern: str


@dataclass(frozen=True)
class Config:
    """Everything the agent needs; built by load()."""

    url: str = "http://127.0.0.1:8000"
    token: str = ""
    enroll_token: str = ""  # used only while no agent token is known (section 7)
    host: str = "localhost"
    interval: float = 1.0
    spool_dir: Path = Path("spool")
    spool_max_batches: int = 10000
    spool_max_mb: float = 200.0
    ca_file: str | None = None
    timeout: float = 10.0
    watch: tuple[WatchSpec, ...] = ()
    collectors: tuple[str, ...] = tuple(COLLECTORS)
    proc_refresh: float = 10.0
    log_level: str = "INFO"
    window: float = 30.0
    procfs: str | None = None  # the host's /proc when the agent runs in a container
    sysfs: str | None = None  # the host's /sys likewise
    rootfs: str | None = None  # the host's / likewise (disk usage of the host's mounts)


def default_spool_dir() -> Path:
    """Root (the systemd unit) keeps state in /var/lib; a user run keeps it in their home."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/fleetpulse-agent")
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(base) / "fleetpulse-agent"


def parse_watch(value: Any) -> tuple[WatchSpec, ...]:
    """Accept a comma-separated string, a list of strings or a TOML table name -> selector."""
    if value is None or value == "":
        return ()
    if isinstance(value, Mapping):
        items = [f"{k}={v}" for k, v in value.items()]
    elif isinstance(value, str):
        items = [part.strip() for part in value.split(",")]
    elif isinstance(value, list | tuple):
        items = [str(part).strip() for part in value]
    else:
        raise ConfigError(f"watch: expected a string, list or table, got {type(value).__name__}")
    specs: list[WatchSpec] = []
    for item in items:
        if not item:
            continue
        name, sep, selector = item.partition("=")
        if not sep:
            name, selector = "", item
        kind, pattern = "name", selector
        if selector.startswith("pid:"):
            kind, pattern = "pid", selector[4:]
            if not pattern.isdigit():
                raise ConfigError(f"watch: {item!r}: pid:N needs a number")
        elif selector.startswith("cmd:"):
            kind, pattern = "cmd", selector[4:]
        if not pattern:
            raise ConfigError(f"watch: {item!r}: empty selector")
        name = name.strip() or re.sub(r"[^A-Za-z0-9._-]", "_", selector)[:128]
        reason = tag_value_error(name)  # the name is the `process` tag's value
        if reason is not None:
            raise ConfigError(f"watch: {item!r}: the name must be 1-128 printable characters "
                              f"({reason})")  # fmt: skip
        specs.append(WatchSpec(name, kind, pattern))
    return tuple(specs)


def _number(key: str, value: Any, kind: type, minimum: float) -> Any:
    try:
        num = kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: not a number: {value!r}") from None
    if num < minimum:
        raise ConfigError(f"{key}: must be >= {minimum}, got {value!r}")
    return num


def _collectors(value: Any) -> tuple[str, ...]:
    """Names from the one collector table: a comma-separated string, a list, or `all`."""
    names = [c.strip() for c in value.split(",") if c.strip()] if isinstance(value, str) else value
    if list(names) == ["all"]:
        return tuple(COLLECTORS)
    unknown = [c for c in names if c not in COLLECTORS]
    if unknown:
        raise ConfigError(f"collectors: unknown {unknown}; known: {', '.join(COLLECTORS)}")
    return tuple(names)


def load(
    path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    hostname: str | None = None,
) -> Config:
    """Merge defaults, the TOML file and the environment into one validated Config."""
    env = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    if path is not None:
        import tomllib  # only when a file is given: it costs memory

        try:
            with open(path, "rb") as fh:
                raw.update(tomllib.load(fh))
        except OSError as exc:
            raise ConfigError(f"config file {path}: {exc.strerror or exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: {exc}") from None
        raw = {k.lower(): v for k, v in raw.items()}
    for key, value in env.items():
        if key.startswith(PREFIX) and value != "":
            raw[key[len(PREFIX) :].lower()] = value
    url = str(raw.get("url", Config.url)).rstrip("/")
    if not re.match(r"https?://[^/]+", url):
        raise ConfigError(f"url: expected http(s)://HOST[:PORT][/PATH], got {url!r}")
    token = str(raw.get("token", ""))
    if not token and raw.get("token_file"):
        try:
            token = Path(str(raw["token_file"])).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"token_file: {exc}") from None
    host = str(raw.get("host") or sanitize_host(hostname or socket.gethostname()))
    reason = host_error(host)
    if reason is not None:
        raise ConfigError(f"host: 1-128 of A-Z a-z 0-9 . _ - expected ({reason}), got {host!r}")
    ca_file = raw.get("ca_file") or None
    if ca_file is not None and not Path(str(ca_file)).is_file():
        raise ConfigError(f"ca_file: no such file {ca_file!r}")
    return Config(
        url=url,
        token=token,
        enroll_token=str(raw.get("enroll_token", "")),
        host=host,
        interval=_number("interval", raw.get("interval", 1.0), float, 0.01),
        spool_dir=Path(str(raw.get("spool_dir") or default_spool_dir())).expanduser(),
        spool_max_batches=_number("spool_max_batches", raw.get("spool_max_batches", 10000), int, 1),
        spool_max_mb=_number("spool_max_mb", raw.get("spool_max_mb", 200.0), float, 0.001),
        ca_file=str(ca_file) if ca_file else None,
        timeout=_number("timeout", raw.get("timeout", 10.0), float, 0.1),
        watch=parse_watch(raw.get("watch")),
        collectors=_collectors(raw.get("collectors", "all")),
        proc_refresh=_number("proc_refresh", raw.get("proc_refresh", 10.0), float, 0.1),
        log_level=str(raw.get("log_level", "INFO")).upper(),
        window=_number("window", raw.get("window", 30.0), float, 0.1),
        procfs=str(raw["procfs"]) if raw.get("procfs") else None,
        sysfs=str(raw["sysfs"]) if raw.get("sysfs") else None,
        rootfs=str(raw["rootfs"]) if raw.get("rootfs") else None,
    )
