"""A real Prometheus (Debian's ``prometheus``) scraping a real ``node_exporter`` every second and
remote-writing to an API, each on a free port in a temp dir (as ``harness.influxd``)."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import requests

from harness.net import free_port
from harness.procs import stop_group

CONFIG = """\
global:
  scrape_interval: 1s
  scrape_timeout: 900ms
  evaluation_interval: 1m
  external_labels:
    host: {host}
scrape_configs:
  - job_name: node
    static_configs:
      - targets: ["127.0.0.1:{exporter_port}"]
remote_write:
  - url: {url}/api/v1/prom/write
    basic_auth:
      username: prometheus
      password: {token}
    queue_config:
      batch_send_deadline: 1s
      max_shards: 1
      min_backoff: 100ms
      max_backoff: 1s
    metadata_config:
      send_interval: 2s
"""


def _spawn(cmd: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        cmd, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True
    )


def _wait(proc: subprocess.Popen, url: str, log: Path, timeout: float) -> None:
    """Until ``url`` answers 200; the process' log in the error otherwise."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited: {log.read_text()[-3000:]}")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer: {log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen | None) -> None:
    if proc is not None:
        stop_group(proc, signal.SIGTERM, 15)


class PromPair:
    """``node_exporter`` (cpu and meminfo collectors) and a Prometheus remote-writing its series
    to ``api_url`` with ``token`` as HTTP Basic password, every series labelled ``host``."""

    def __init__(self, workdir: Path, api_url: str, token: str, host: str) -> None:
        self.dir = Path(workdir)
        self.exporter_port, self.port = free_port(), free_port()
        self.conf = self.dir / "prometheus.yml"
        self.conf.write_text(
            CONFIG.format(host=host, exporter_port=self.exporter_port, url=api_url, token=token)
        )
        self.procs: list[subprocess.Popen] = []

    def start(self, exporter: str = "prometheus-node-exporter", binary: str = "prometheus") -> None:
        """Both processes, each ready (answering over HTTP)."""
        log = self.dir / "node_exporter.log"
        cmd = [exporter, f"--web.listen-address=127.0.0.1:{self.exporter_port}"]
        cmd += ["--collector.disable-defaults", "--collector.cpu", "--collector.meminfo"]
        self.procs.append(_spawn(cmd, log))
        _wait(self.procs[-1], f"http://127.0.0.1:{self.exporter_port}/metrics", log, 20)
        log = self.dir / "prometheus.log"
        cmd = [binary, f"--config.file={self.conf}", f"--storage.tsdb.path={self.dir / 'data'}"]
        cmd += [f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"]
        self.procs.append(_spawn(cmd, log))
        _wait(self.procs[-1], f"http://127.0.0.1:{self.port}/-/ready", log, 30)

    def stop(self) -> None:
        """Prometheus first (it flushes its queue), then the exporter."""
        for proc in reversed(self.procs):
            _stop(proc)
