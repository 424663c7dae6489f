"""Packaging: `pip wheel .` builds one wheel; its plain install is the agent alone (psutil and
nvidia-ml-py, the `fleetpulse-agent` command), `[server]` adds the API's dependencies.

The end-to-end test works offline: the wheel is built without build isolation (the venv's
setuptools), and the agent's two dependencies come from a local wheelhouse
($FLEETPULSE_WHEELHOUSE, else var/wheelhouse from `make wheelhouse`, else `pip wheel` through
pip's configured index and cache); it skips, saying why, when none of those has them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]


def pins(requirements: str, direct_only: bool = False) -> list[str]:
    """`name==version` lines of a requirements file (direct ones: no `transitive` comment)."""
    out = []
    for line in (REPO / requirements).read_text().splitlines():
        spec = line.split("#", 1)[0].strip()
        if spec and not spec.startswith("-") and not (direct_only and "transitive" in line):
            out.append(spec)
    return out


def project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_the_wheel_pins_what_the_requirement_files_pin():
    proj = project()["project"]
    assert proj["dependencies"] == pins("requirements-agent.txt")
    assert proj["optional-dependencies"]["server"] == pins("requirements.txt", direct_only=True)
    assert proj["scripts"] == {"fleetpulse-agent": "agent.__main__:main"}
    from agent import __version__

    assert proj["version"] == __version__


def build_wheel(tmp: Path) -> Path:
    """The wheel, built from a copy of the sources (a build in the tree would leave build/)."""
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for pkg in ("agent", "app"):
        shutil.copytree(REPO / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp / "dist"
    subprocess.run(
        [*PIP, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(out),
         str(src)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    (wheel,) = out.glob("fleetpulse-*.whl")
    return wheel


def dependency_wheels(tmp: Path) -> Path:
    """A folder holding the agent's dependency wheels, or skip."""
    for folder in (os.environ.get("FLEETPULSE_WHEELHOUSE"), REPO / "var" / "wheelhouse"):
        if folder and any(Path(folder).glob("psutil-*.whl")):
            return Path(folder)
    out = tmp / "deps"
    got = subprocess.run(
        [*PIP, "wheel", "--no-deps", "-w", str(out), *pins("requirements-agent.txt")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if got.returncode != 0:
        pytest.skip(f"no wheels of {pins('requirements-agent.txt')} here (offline and no "
                    f"wheelhouse: `make wheelhouse`): {got.stderr.strip()[-300:]}")  # fmt: skip
    return out


@pytest.mark.e2e
def test_the_wheel_installs_the_agent_alone_and_runs(tmp_path):
    wheel = build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        meta = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        entry = zf.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "agent/__main__.py" in names and "app/web/__init__.py" in names
    assert not any(n.startswith(("tests/", "bench/", "harness/")) for n in names)
    assert "fleetpulse-agent = agent.__main__:main" in entry
    assert re.search(r'Requires-Dist: Flask==[\d.]+; extra == "server"', meta), meta
    assert "Requires-Dist: psutil==" in meta

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    deps = dependency_wheels(tmp_path)
    subprocess.run(
        [*PIP, "--python", str(py), "install", "--no-index", "--find-links", str(wheel.parent),
         "--find-links", str(deps), "fleetpulse"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path)}
    probe = (
        "import importlib.util as u, json, agent; print(json.dumps([agent.__file__, "
        "[m for m in ('flask', 'numpy', 'pandas', 'marshmallow') if u.find_spec(m)]]))"
    )
    got = subprocess.run(
        [py, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True, check=True
    )
    where, present = json.loads(got.stdout)
    assert where.startswith(str(venv)) and present == []
    once = subprocess.run(
        [venv / "bin" / "fleetpulse-agent", "--once"], cwd=tmp_path, capture_output=True,
        text=True, timeout=60, check=True,
        env={**env, "FLEETPULSE_HOST": "pkg-test", "FLEETPULSE_COLLECTORS": "cpu,memory"},
    )  # fmt: skip
    doc = json.loads(once.stdout)
    assert doc["host"] == "pkg-test"
    assert {"cpu.percent", "mem.used.bytes"} <= {s["metric"] for s in doc["samples"]}
