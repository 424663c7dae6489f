"""Shared fixtures for the agent's tests: a real HTTP server that can fail in every way."""

from __future__ import annotations

import gzip
import http.server
import json
import os
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parent.parent


class FakeApi:
    """A tiny real HTTP/1.1 server on 127.0.0.1; `script` is the queue of next answers."""

    def __init__(self) -> None:
        self.script: deque[tuple] = deque()
        self.received: list[dict] = []  # every request that arrived, answered or not
        self.connections = 0
        self.lock = threading.Lock()
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with api.lock:
                    api.connections += 1

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with api.lock:
                    action = api.script.popleft() if api.script else ("ok",)
                    api.received.append(
                        {
                            "path": self.path,
                            "raw": raw,
                            "headers": dict(self.headers),
                            "action": action[0],
                            "body": _maybe_json(raw, self.headers.get("Content-Encoding")),
                        }
                    )
                kind = action[0]
                if kind == "die":  # the server dies mid-request: no answer at all
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if kind == "sleep":
                    time.sleep(action[1])
                    kind, action = "ok", ("ok",)
                if kind == "ok":
                    body = api.received[-1]["body"] or {}
                    n = sum(len(s["points"]) for s in body.get("series", []))
                    self._answer(200, {"accepted": n, "windows": 1})
                else:
                    status, headers = action[1], (action[2] if len(action) > 2 else {})
                    self._answer(status, {"error": f"scripted {status}", "details": {}}, headers)

            def _answer(self, status: int, payload: dict, headers: dict | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def delivered(self) -> list[dict]:
        """Bodies the server answered 200 to."""
        with self.lock:
            return [r for r in self.received if r["action"] in ("ok", "sleep")]

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


def _maybe_json(raw: bytes, encoding: str | None) -> dict | None:
    try:
        return json.loads(gzip.decompress(raw) if encoding == "gzip" else raw)
    except (OSError, ValueError, EOFError):
        return None


@pytest.fixture
def fake_api() -> Iterator[FakeApi]:
    """A real HTTP server that answers what the test scripts."""
    api = FakeApi()
    yield api
    api.close()


@pytest.fixture
def closed_port_url() -> str:
    """A URL where nothing listens: connections are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def agent_env(tmp_path: Path) -> dict[str, str]:
    """Environment for a `python -m agent` subprocess: fast windows, a private spool."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETPULSE_")}
    env.update(
        {
            "PYTHONPATH": str(REPO),
            "FLEETPULSE_TOKEN": "test-token",
            "FLEETPULSE_HOST": "test-host",
            "FLEETPULSE_SPOOL_DIR": str(tmp_path / "spool"),
            "FLEETPULSE_COLLECTORS": "cpu,memory",
            "FLEETPULSE_INTERVAL": "0.1",
            "FLEETPULSE_WINDOW": "1",
            "FLEETPULSE_TIMEOUT": "2",
        }
    )
    return env


@pytest.fixture
def python() -> str:
    """The interpreter running the tests (the project venv)."""
    return sys.executable


def canned(**kw: object) -> SimpleNamespace:
    """A stand-in for a psutil namedtuple."""
    return SimpleNamespace(**kw)
