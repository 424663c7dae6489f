"""The shipped balancer config (deploy/nginx/fleetpulse.conf) run by a real, unprivileged nginx.

The config is the file docker-compose.ha.yml mounts, with only its addresses rendered: the
``server apiN:8000`` lines become the given upstreams (real gunicorn nodes) and ``listen 8000``
a free loopback port. A small wrapper nginx.conf supplies what the official image's own
nginx.conf would (events, pid, logs, temporary folders) inside a work dir, plus an access log
that names the node (or nodes, on a retry) of every request.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from harness.net import free_port
from harness.procs import stop_group

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "deploy" / "nginx" / "fleetpulse.conf"
UPSTREAM_RE = re.compile(r"^(\s*server\s+)(api\d+:8000)(\s[^;]*)?;", re.M)
LISTEN_RE = re.compile(r"^(\s*listen\s+)8000;", re.M)
ACCESS_LOG = "access.log"


def nginx_exe() -> str | None:
    """Debian's nginx lives in /usr/sbin, which an unprivileged PATH may lack."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")


def upstream_names(text: str) -> list[str]:
    """The ``host:port`` of each ``server`` line of the config's upstream block."""
    return [m.group(2) for m in UPSTREAM_RE.finditer(text)]


def render(text: str, upstreams: list[str], port: int) -> str:
    """The config with its nodes replaced by ``upstreams`` (in order) and its port by ``port``."""
    names = upstream_names(text)
    if len(names) != len(upstreams):
        raise ValueError(f"the config names {names}, {len(upstreams)} upstreams given")
    it = iter(upstreams)
    text = UPSTREAM_RE.sub(lambda m: f"{m.group(1)}{next(it)}{m.group(3) or ''};", text)
    text, n = LISTEN_RE.subn(rf"\g<1>127.0.0.1:{port};", text)
    if n != 1:
        raise ValueError("the config has no single `listen 8000;`")
    return text


def wrapper(workdir: Path, site: Path) -> str:
    """What the image's nginx.conf gives: the http block around the site, files in workdir."""
    user = "user root;\n" if os.geteuid() == 0 else ""  # root: workers stay root (tmp is 0700)
    temp = "\n".join(
        f"    {kind}_temp_path {workdir / (kind + '_temp')};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""{user}worker_processes 1;
daemon off;
pid {workdir / "nginx.pid"};
error_log {workdir / "error.log"} info;
events {{ worker_connections 256; }}
http {{
    log_format nodes '$request_method|$uri|$status|$upstream_addr|$upstream_status';
    access_log {workdir / ACCESS_LOG} nodes;
{temp}
    include {site};
}}
"""


@dataclass
class LiveNginx:
    url: str
    proc: subprocess.Popen
    workdir: Path

    def access_lines(self) -> list[list[str]]:
        """[method, uri, status, nodes tried, their answers] of each request so far; a request
        retried on another node names both (``127.0.0.1:A,127.0.0.1:B`` and ``502,200``)."""
        path = self.workdir / ACCESS_LOG
        text = path.read_text() if path.exists() else ""
        return [line.replace(" ", "").split("|") for line in text.splitlines()]


def write_config(workdir: Path, upstreams: list[str], port: int) -> Path:
    """The rendered site and its wrapper in ``workdir``; returns the wrapper's path."""
    workdir.mkdir(parents=True, exist_ok=True)
    site = workdir / "fleetpulse.conf"
    site.write_text(render(CONFIG.read_text(), upstreams, port))
    conf = workdir / "nginx.conf"
    conf.write_text(wrapper(workdir, site))
    return conf


def check_config(exe: str, workdir: Path, upstreams: list[str]) -> subprocess.CompletedProcess:
    """``nginx -t`` on the rendered config."""
    conf = write_config(workdir, upstreams, free_port())
    return subprocess.run(
        [exe, "-t", "-p", str(workdir), "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def start_nginx(workdir: Path, upstreams: list[str]) -> LiveNginx:
    """nginx in the foreground on a free loopback port; returns once it answers."""
    exe = nginx_exe()
    if exe is None:
        raise RuntimeError("nginx is not installed")
    port = free_port()
    conf = write_config(workdir, upstreams, port)
    out = (workdir / "nginx.out").open("wb")
    proc = subprocess.Popen(
        [exe, "-p", str(workdir), "-c", str(conf)],
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 15
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nginx exited: {(workdir / 'nginx.out').read_text()[-3000:]}")
        try:  # a bare connection: a request would go on to a node and into the access log
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return LiveNginx(url, proc, workdir)
        except OSError:
            time.sleep(0.05)
    stop_nginx(proc)
    raise RuntimeError("nginx did not start")


def stop_nginx(proc: subprocess.Popen) -> None:
    """SIGQUIT (graceful), then SIGKILL of the group."""
    stop_group(proc, signal.SIGQUIT, 10)
