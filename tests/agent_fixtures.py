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
import urllib.request
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parent.parent


class FakeApi:
    """A tiny real HTTP/1.1 server on 127.0.0.1; `script` is the queue of next answers."""

    def __init__(self, tls: tuple[str, str] | None = None) -> None:
        self.script: deque[tuple] = deque()
        self.default: tuple = ("ok",)  # the answer once the script is used up
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
                    action = api.script.popleft() if api.script else api.default
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
        scheme = "http"
        if tls is not None:  # (cert file, key file)
            import ssl

            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
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


def api_call(method: str, url: str, token: str, body: dict | None = None) -> tuple[int, object]:
    """One JSON call to a real API as an admin or reader script would make it."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as resp:
        raw = resp.read()
        return resp.status, json.loads(raw) if raw else None


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
def tls_api(tmp_path: Path) -> Iterator[tuple[FakeApi, str]]:
    """The fake API over https with a self-signed certificate; yields (api, CA file)."""
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("no openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    api = FakeApi(tls=(str(cert), str(key)))
    yield api, str(cert)
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


class FakeNvml:
    """Mirrors pynvml's names, signatures and errors (the real NVMLError and error codes).

    `fail` maps a function name to an NVML error code it raises; `gpus` is a list of dicts.
    """

    def __init__(self, gpus: list[dict] | None = None, fail: dict[str, int] | None = None):
        import pynvml

        self._real = pynvml
        self.NVMLError = pynvml.NVMLError
        for name in dir(pynvml):
            if name.startswith(("NVML_ERROR_", "NVML_CLOCK_", "NVML_TEMPERATURE_")):
                setattr(self, name, getattr(pynvml, name))
        self.gpus = gpus if gpus is not None else []
        self.fail = dict(fail or {})
        self.calls: list[str] = []
        self.initialised = 0

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if name in self.fail:
            raise self.NVMLError(self.fail[name])

    def _gpu(self, handle: object) -> dict:
        self._check_init()
        return self.gpus[handle]  # type: ignore[index]

    def _check_init(self) -> None:
        if not self.initialised:
            raise self.NVMLError(self.NVML_ERROR_UNINITIALIZED)

    def nvmlInit(self) -> None:
        self._call("nvmlInit")
        self.initialised += 1

    def nvmlShutdown(self) -> None:
        self._call("nvmlShutdown")
        self.initialised = max(0, self.initialised - 1)

    def nvmlDeviceGetCount(self) -> int:
        self._check_init()
        self._call("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        self._call("nvmlDeviceGetHandleByIndex")
        if not 0 <= index < len(self.gpus):
            raise self.NVMLError(self.NVML_ERROR_INVALID_ARGUMENT)
        return index

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> SimpleNamespace:
        g = self._gpu(handle)
        self._call("nvmlDeviceGetUtilizationRates")
        return SimpleNamespace(gpu=g["util"], memory=g.get("mem_util", 0))

    def nvmlDeviceGetMemoryInfo(self, handle: int, version: object = None) -> SimpleNamespace:
        g = self._gpu(handle)
        self._call("nvmlDeviceGetMemoryInfo")
        return SimpleNamespace(total=g["total"], used=g["used"], free=g["total"] - g["used"])

    def nvmlDeviceGetTemperature(self, handle: int, sensor: int) -> int:
        g = self._gpu(handle)
        self._call("nvmlDeviceGetTemperature")
        assert sensor == self.NVML_TEMPERATURE_GPU
        return g["temp"]

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        g = self._gpu(handle)
        self._call("nvmlDeviceGetPowerUsage")
        return g["power_mw"]

    def nvmlDeviceGetClockInfo(self, handle: int, type: int) -> int:
        g = self._gpu(handle)
        self._call("nvmlDeviceGetClockInfo")
        return {self.NVML_CLOCK_SM: g["sm"], self.NVML_CLOCK_MEM: g["mem"]}[type]

    def nvmlDeviceGetComputeRunningProcesses(self, handle: int) -> list[SimpleNamespace]:
        g = self._gpu(handle)
        self._call("nvmlDeviceGetComputeRunningProcesses")
        return [SimpleNamespace(pid=p, usedGpuMemory=m) for p, m in g.get("procs", [])]

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: int) -> list[SimpleNamespace]:
        g = self._gpu(handle)
        self._call("nvmlDeviceGetGraphicsRunningProcesses")
        return [SimpleNamespace(pid=p, usedGpuMemory=m) for p, m in g.get("gprocs", [])]


def agent_process_env(url: str, token: str, host: str, spool: Path, **extra: str) -> dict[str, str]:
    """The environment a real agent process starts with in the end-to-end tests."""
    return {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
        "FLEETPULSE_URL": url,
        "FLEETPULSE_TOKEN": token,
        "FLEETPULSE_HOST": host,
        "FLEETPULSE_SPOOL_DIR": str(spool),
        **extra,
    }
