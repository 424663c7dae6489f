"""A real PostgreSQL (Debian's ``postgresql``) in a temp dir on a free port: ``initdb`` with a
password, the server started and stopped here (as the ``postgres`` user when run as root,
since PostgreSQL refuses to run as root), one fresh database per test."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

from harness.net import free_port

USER, PASSWORD = "fleetpulse", "pg-secret"


def bin_dir() -> Path:
    """The newest installed PostgreSQL's binaries (Debian keeps them out of $PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=_version)
    if not found:
        raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
    return Path(found[-1]).parent


def _version(path: str) -> int:
    return int(Path(path).parent.parent.name)


class Postgres:
    """One server; ``new_db_url()`` gives each test its own database."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="fleetpulse-pg-"))
        self.port = free_port()
        self.bin = bin_dir()
        self.proc: subprocess.Popen | None = None
        self._as = _run_as()
        if self._as:
            os.chown(self.dir, *self._as)
        pw = self.dir / "pw"
        pw.write_text(PASSWORD)
        if self._as:
            os.chown(pw, *self._as)
        self._run([
            str(self.bin / "initdb"), "-D", str(self.dir / "data"), "-U", USER,
            f"--pwfile={pw}", "--auth=scram-sha-256", "-E", "UTF8", "--no-sync",
        ])  # fmt: skip
        self.start()

    def _run(self, cmd: list[str]) -> None:
        subprocess.run(cmd, check=True, capture_output=True, **self._user_kw())

    def _user_kw(self) -> dict:
        return {"user": self._as[0], "group": self._as[1], "extra_groups": []} if self._as else {}

    @property
    def url(self) -> str:
        return f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/postgres"

    def start(self, timeout: float = 30.0) -> None:
        """Start the server (again, after ``stop`` or ``kill``) and wait until it answers."""
        log = open(self.dir / "server.log", "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            [
                str(self.bin / "postgres"), "-D", str(self.dir / "data"), "-p", str(self.port),
                "-k", str(self.dir), "-c", "listen_addresses=127.0.0.1",
                "-c", "max_connections=200", "-c", "shared_buffers=32MB",
            ],
            stdout=log, stderr=subprocess.STDOUT, **self._user_kw(),
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(self.url, connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"postgres did not start: {self.log_tail()}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        """A fast shutdown (SIGINT): sessions are ended, the data is kept."""
        self._signal(signal.SIGINT)

    def kill(self) -> None:
        """SIGKILL the postmaster and its children: a crash, recovered at the next start."""
        if self.proc is not None:
            self.proc.kill()
            subprocess.run(["pkill", "-KILL", "-P", str(self.proc.pid)], check=False)
            self.proc.wait(10)
            self.proc = None

    def _signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(30)
        self.proc = None

    def new_db_url(self) -> str:
        """A fresh, empty database on this server."""
        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url, autocommit=True) as con:
            con.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{name}"

    def log_tail(self, n: int = 2000) -> str:
        p = self.dir / "server.log"
        return p.read_text(errors="replace")[-n:] if p.exists() else ""

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _run_as() -> tuple[int, int] | None:
    """(uid, gid) of ``postgres`` when running as root, else None (run as ourselves)."""
    if os.geteuid() != 0:
        return None
    pw = pwd.getpwnam("postgres")
    return pw.pw_uid, pw.pw_gid
