"""A real ``influxd`` (Debian's 1.6.7) on free ports in a temp dir, ready when /ping answers."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import requests

from harness.net import free_port
from harness.procs import stop_group

CONFIG = """\
reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = "{dir}/meta"
  retention-autocreate = false
  logging-enabled = false

[data]
  dir = "{dir}/data"
  wal-dir = "{dir}/wal"
  wal-fsync-delay = "0s"
  query-log-enabled = false
  trace-logging-enabled = false

[coordinator]
  log-queries-after = "0s"

[retention]
  enabled = true

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{port}"
  auth-enabled = false
  log-enabled = false
  suppress-write-log = true
  pprof-enabled = false
  flux-enabled = false

[logging]
  level = "warn"
  suppress-logo = true

[[graphite]]
  enabled = false

[[collectd]]
  enabled = false

[[opentsdb]]
  enabled = false

[[udp]]
  enabled = false

[continuous_queries]
  enabled = true
  log-enabled = false
  run-interval = "1s"
"""


class Influxd:
    """One ``influxd`` process on free ports; ``stop``/``start`` keep the port and the data."""

    def __init__(self, workdir: Path, binary: str = "influxd") -> None:
        self.dir = Path(workdir)
        self.binary = binary
        self.port = free_port()
        self.rpc_port = free_port()
        self.http_url = f"http://127.0.0.1:{self.port}"
        self.conf = self.dir / "influxdb.conf"
        self.conf.write_text(CONFIG.format(dir=self.dir, port=self.port, rpc_port=self.rpc_port))
        self.log = self.dir / "influxd.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> None:
        """Start (or restart) on the same ports and data dir; wait until /ping answers 204."""
        if self.proc is not None and self.proc.poll() is None:
            return
        self.proc = subprocess.Popen(
            [self.binary, "-config", str(self.conf)],
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"influxd exited: {self.log.read_text()[-3000:]}")
            try:
                if requests.get(self.http_url + "/ping", timeout=1).status_code == 204:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"influxd did not answer /ping: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        """SIGTERM and wait: influxd flushes its WAL, so every acknowledged write survives."""
        if self.proc is not None:
            stop_group(self.proc, signal.SIGTERM, 20)

    def new_db_url(self) -> str:
        """A URL naming a database no other test uses."""
        return f"influxdb://127.0.0.1:{self.port}/fp_{uuid.uuid4().hex[:12]}"

    def query(self, q: str, db: str = "", epoch: str = "s") -> dict:
        """Run InfluxQL directly (POST, so SELECT INTO and CREATE work); raise on errors."""
        r = requests.post(
            self.http_url + "/query", data={"q": q, "db": db, "epoch": epoch}, timeout=30
        )
        r.raise_for_status()
        body = r.json()
        for res in body.get("results", []):
            if "error" in res:
                raise RuntimeError(res["error"])
        return body


def kill_influxd(influxd: Influxd) -> None:
    """SIGKILL the server (no flush: a crash, not a shutdown); ``.start()`` revives it."""
    os.killpg(influxd.proc.pid, signal.SIGKILL)
    influxd.proc.wait(10)
