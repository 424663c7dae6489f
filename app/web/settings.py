"""Every server setting, read in one place from ``FLEETPULSE_*`` variables (and a ``.env`` file)."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from app.core.durations import parse_duration
from app.ingest import Limits
from app.storage import Credentials, StoreOptions
from app.storage.metadb import is_shared


@dataclass(frozen=True)
class Settings:
    """The server's configuration; each field's default is the documented one."""

    storage_url: str = ""  # FLEETPULSE_STORAGE_URL; "" = sqlite://<cwd>/var/fleetpulse.db
    metadata_url: str = ""  # FLEETPULSE_METADATA_URL: sqlite:///PATH or postgresql://...
    metadata_path: str = ""  # FLEETPULSE_METADATA_PATH: the older name of an SQLite one
    node_id: str = ""  # FLEETPULSE_NODE_ID: this node's name among several; "" = host:bind
    influxdb_token: str = ""  # FLEETPULSE_INFLUXDB_TOKEN
    influxdb_username: str = ""  # FLEETPULSE_INFLUXDB_USERNAME
    influxdb_password: str = ""  # FLEETPULSE_INFLUXDB_PASSWORD
    influxdb_timeout: float = 5.0  # FLEETPULSE_INFLUXDB_TIMEOUT seconds per call
    admin_token: str = ""  # FLEETPULSE_ADMIN_TOKEN
    raw_retention: float = 0.0  # FLEETPULSE_RAW_RETENTION; 0 = raw samples are not kept
    retention_30s: float = 7 * 86400.0  # FLEETPULSE_30S_RETENTION
    retention_30m: float = 400 * 86400.0  # FLEETPULSE_30M_RETENTION
    hold: float = 90.0  # FLEETPULSE_HOLD seconds a sample's value holds at most
    max_body_bytes: int = 8 * 1024 * 1024  # FLEETPULSE_MAX_BODY_BYTES, after gunzip too
    max_points: int = 500_000  # FLEETPULSE_MAX_POINTS in one request
    future_slack: float = 300.0  # how far ahead of the server clock a timestamp may be
    jobs: bool = True  # FLEETPULSE_JOBS: run downsampling/retention inside the server
    job_interval: float = 900.0  # FLEETPULSE_JOB_INTERVAL: the 30-minute job's period
    retry_after: int = 5  # FLEETPULSE_RETRY_AFTER seconds advertised on 503
    rate_limit: float = 50.0  # FLEETPULSE_RATE_LIMIT requests/s per token (0 = off)
    rate_burst: float = 200.0  # FLEETPULSE_RATE_BURST
    log_level: str = "INFO"  # FLEETPULSE_LOG_LEVEL

    @classmethod
    def from_env(
        cls,
        env: dict[str, str] | None = None,
        dotenv: Path | None = Path(".env"),
        **overrides: Any,
    ) -> Settings:
        """Build from ``env`` (default: the environment) plus the ``dotenv`` file (the contract's
        ``.env``, relative to the working directory; None: none), then explicit overrides."""
        env = dict(os.environ if env is None else env)
        for k, v in (_read_dotenv(dotenv) if dotenv is not None else {}).items():
            env.setdefault(k, v)
        kw: dict[str, Any] = {}
        names = {
            "raw_retention": "FLEETPULSE_RAW_RETENTION",
            "retention_30s": "FLEETPULSE_30S_RETENTION",
            "retention_30m": "FLEETPULSE_30M_RETENTION",
        }
        for f in fields(cls):
            var = names.get(f.name, "FLEETPULSE_" + f.name.upper())
            if var not in env or env[var] == "":
                continue
            raw = env[var]
            if f.name in names or f.name == "hold":
                kw[f.name] = parse_duration(raw)
            elif f.type == "bool":
                kw[f.name] = raw.strip().lower() in {"1", "true", "yes", "on"}
            elif f.type == "int":
                kw[f.name] = int(raw)
            elif f.type == "float":
                kw[f.name] = float(raw)
            else:
                kw[f.name] = raw
        return replace(cls(**kw), **overrides).resolved()

    def resolved(self) -> Settings:
        """Fill the path defaults that depend on the working directory."""
        url = self.storage_url or f"sqlite://{Path('var').absolute() / 'fleetpulse.db'}"
        meta = self.metadata_url
        if not meta and self.metadata_path:
            meta = f"sqlite://{Path(self.metadata_path).absolute()}"
        if not meta:  # the SQLite store's own file, else a file under ./var
            meta = (
                url
                if url.startswith("sqlite:")
                else f"sqlite://{Path('var').absolute()}/metadata.db"
            )
        if is_shared(meta) and url.startswith("sqlite:"):
            raise ValueError(
                "FLEETPULSE_METADATA_URL is PostgreSQL, for several API nodes, but "
                "FLEETPULSE_STORAGE_URL is the embedded SQLite file, which lives on one node's "
                "disk: use an InfluxDB store (influxdb:// or influxdb2://) or SQLite metadata"
            )
        return replace(self, storage_url=url, metadata_url=meta)

    def retention(self) -> dict[str, float]:
        """Seconds each series kind is kept, as the stores take it."""
        return {"raw": self.raw_retention, "30s": self.retention_30s, "30m": self.retention_30m}

    def store_options(self) -> StoreOptions:
        """What ``open_store`` takes, from these settings."""
        return StoreOptions(
            hold=self.hold,
            retention=self.retention(),
            metadata_url=self.metadata_url,
            credentials=Credentials(
                self.influxdb_token, self.influxdb_username, self.influxdb_password
            ),
            timeout=self.influxdb_timeout,
        )

    def fleet_settings(self) -> dict[str, str]:
        """What every node serving one metadata database must agree on (checked at start)."""
        store = urlsplit(self.storage_url)
        query = "&".join(sorted(store.query.split("&"))) if store.query else ""
        return {
            "FLEETPULSE_HOLD": f"{self.hold:g}s",
            "FLEETPULSE_RAW_RETENTION": f"{self.raw_retention:g}s",
            "FLEETPULSE_30S_RETENTION": f"{self.retention_30s:g}s",
            "FLEETPULSE_30M_RETENTION": f"{self.retention_30m:g}s",
            "FLEETPULSE_JOB_INTERVAL": f"{self.job_interval:g}s",
            "FLEETPULSE_STORAGE_URL database": f"{store.scheme}:{store.path}?{query}",
        }

    def limits(self) -> Limits:
        """What the wire decoders enforce."""
        return Limits(
            max_body_bytes=self.max_body_bytes,
            max_points=self.max_points,
            retention_30s=self.retention_30s,
            future_slack=self.future_slack,
            hold=self.hold,
        )


def _read_dotenv(path: Path) -> dict[str, str]:
    """``KEY=value`` lines of a .env file; the real environment wins over it."""
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        k, v = line.split("=", 1)
        out[k.strip().removeprefix("export ").strip()] = v.strip().strip("'\"")
    return out
