"""The deployment files: docker-compose, Dockerfile, Grafana provisioning and dashboards.

Static checks on the real files, plus `docker-compose config`, the dashboards' InfluxQL run
against a real influxd (marker `influx`), and the Dockerfile's install and start commands
run outside Docker (marker `e2e`).
"""

from __future__ import annotations

import ast
import fnmatch
import functools
import importlib.metadata
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from harness.net import free_port

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_1X = ROOT / "docker-compose.influxdb1.yml"
COMPOSE_HA = ROOT / "docker-compose.ha.yml"  # several API nodes: tests/test_deploy_ha.py
SAMPLE_ENV = ROOT / "sample.env"
DOCKERFILE = ROOT / "Dockerfile"
GRAFANA = ROOT / "deploy" / "grafana"
DATASOURCE_2X = GRAFANA / "provisioning" / "datasources" / "influxdb.yml"
DATASOURCE_1X = GRAFANA / "provisioning-influxdb1" / "datasources" / "influxdb.yml"
DASHBOARD_PROVIDER = GRAFANA / "provisioning" / "dashboards" / "fleetpulse.yml"
DASHBOARDS = GRAFANA / "dashboards"
CI = os.environ.get("CI", "").lower() == "true"

# The InfluxDB layout the API writes (the dashboards must use exactly these names).
DATABASE = "fleetpulse"
RETENTION_POLICIES = {"rp_30s", "rp_30m"}
FIELDS = {"mean", "min", "max", "last", "count", "covered", "integral", "energy_wh"}
METRICS: dict[str, tuple[str, ...]] = {
    "cpu.percent": ("cpu",),
    "cpu.user.percent": ("cpu",),
    "cpu.system.percent": ("cpu",),
    "cpu.iowait.percent": ("cpu",),
    "load.1m": (),
    "load.5m": (),
    "load.15m": (),
    "mem.used.bytes": (),
    "mem.available.bytes": (),
    "mem.percent": (),
    "swap.used.bytes": (),
    "disk.used.bytes": ("mount",),
    "disk.free.bytes": ("mount",),
    "disk.percent": ("mount",),
    "disk.read.bytes_per_s": ("device",),
    "disk.write.bytes_per_s": ("device",),
    "disk.read.iops": ("device",),
    "disk.write.iops": ("device",),
    "net.recv.bytes_per_s": ("interface",),
    "net.sent.bytes_per_s": ("interface",),
    "net.recv.packets_per_s": ("interface",),
    "net.sent.packets_per_s": ("interface",),
    "net.errors.in_per_s": ("interface",),
    "net.errors.out_per_s": ("interface",),
    "gpu.utilization.percent": ("gpu",),
    "gpu.memory.used.bytes": ("gpu",),
    "gpu.memory.total.bytes": ("gpu",),
    "gpu.temperature.celsius": ("gpu",),
    "gpu.power.watts": ("gpu",),
    "gpu.clock.sm.mhz": ("gpu",),
    "gpu.clock.mem.mhz": ("gpu",),
    "gpu.process.memory.bytes": ("gpu", "pid"),
    "power.cpu_package.watts": ("package",),
    "proc.cpu.percent": ("process",),
    "proc.rss.bytes": ("process",),
}
WATT_METRICS = {"gpu.power.watts", "power.cpu_package.watts"}
TAG_KEYS = {"host"} | {t for tags in METRICS.values() for t in tags}
SERVICES = {"influxdb", "api", "grafana", "agent"}
DATA_MOUNTS = {
    "influxdb": "/var/lib/influxdb2",
    "api": "/data",
    "grafana": "/var/lib/grafana",
    "agent": "/spool",
}
DASHBOARD_UIDS = {
    "fleet-overview.json": "fleetpulse-overview",
    "host-detail.json": "fleetpulse-host",
}
HOST_VAR_QUERY = 'SHOW TAG VALUES FROM "rp_30s"."cpu.percent" WITH KEY = "host"'


def load_yaml(path: Path) -> dict:
    with path.open() as f:
        doc = yaml.safe_load(f)
    assert isinstance(doc, dict), f"{path.name}: not a YAML mapping"
    return doc


def env_list_to_dict(env: dict | list | None) -> dict[str, str]:
    if env is None:
        return {}
    if isinstance(env, dict):
        return {k: "" if v is None else str(v) for k, v in env.items()}
    return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)


def mounts(service: dict) -> dict[str, tuple[str, str]]:
    """container path -> (source, mode) of a service's short-syntax volumes."""
    out = {}
    for vol in service.get("volumes", []):
        assert isinstance(vol, str), f"use the short volume syntax: {vol!r}"
        parts = vol.split(":")
        source, target = parts[0], parts[1]
        out[target] = (source, parts[2] if len(parts) > 2 else "rw")
    return out


def compose_vars(text: str) -> set[str]:
    return set(re.findall(r"\$\{([A-Z0-9_]+)(?::?[-?][^}]*)?\}", text))


def sample_env() -> dict[str, str]:
    out = {}
    for line in SAMPLE_ENV.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_yaml(COMPOSE)


@pytest.fixture(scope="module")
def compose_1x() -> dict:
    return load_yaml(COMPOSE_1X)


# --- docker-compose ---------------------------------------------------------------------


def test_compose_has_the_services(compose):
    assert set(compose["services"]) == SERVICES


def is_pinned(image: str) -> bool:
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and tag != "latest" and re.search(r"\d+\.\d+", tag)


def check_pinned_healthchecked_restarting(name: str, svc: dict) -> None:
    """What every service of every compose file must be: pinned, healthchecked, restarting."""
    if "build" in svc:
        # built here; the local tag names a version, never `latest`
        assert re.fullmatch(r"fleetpulse:\$\{FLEETPULSE_IMAGE_TAG:-\d+\.\d+\.\d+\}", svc["image"])
    else:
        assert is_pinned(svc["image"]), f"{name}: pin the image to a version tag"
    test = svc.get("healthcheck", {}).get("test")
    assert test and test[0] in {"CMD", "CMD-SHELL"}, f"{name}: no healthcheck"
    assert svc.get("restart") in {"always", "unless-stopped", "on-failure"}


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_service_is_pinned_healthchecked_persistent_and_restarts(compose, name):
    svc = compose["services"][name]
    check_pinned_healthchecked_restarting(name, svc)
    source, _mode = mounts(svc)[DATA_MOUNTS[name]]
    assert source in compose["volumes"], f"{name}: data must live in a named volume"


def test_third_party_images_are_pinned_to_exact_versions(compose, compose_1x):
    assert re.fullmatch(r"influxdb:2\.7\.\d+", compose["services"]["influxdb"]["image"])
    assert re.fullmatch(
        r"grafana/grafana(-oss)?:\d+\.\d+\.\d+", compose["services"]["grafana"]["image"]
    )
    assert re.fullmatch(r"influxdb:1\.8\.\d+", compose_1x["services"]["influxdb"]["image"])
    for name in ("api", "agent"):
        assert compose["services"][name]["build"] == "."


def test_api_service(compose):
    api = compose["services"]["api"]
    env = env_list_to_dict(api["environment"])
    assert env["FLEETPULSE_STORAGE_URL"].startswith("influxdb2://influxdb:8086/?org=")
    assert required_var(env["FLEETPULSE_INFLUXDB_TOKEN"]) == "FLEETPULSE_INFLUXDB_TOKEN"
    assert required_var(env["FLEETPULSE_ADMIN_TOKEN"]) == "FLEETPULSE_ADMIN_TOKEN"
    assert env["FLEETPULSE_METADATA_URL"] == "sqlite:////data/meta.db"
    assert "/data" in mounts(api)
    assert api["depends_on"]["influxdb"]["condition"] == "service_healthy"
    assert "/readyz" in " ".join(api["healthcheck"]["test"])
    # Published on loopback by default: TLS is the reverse proxy's job.
    assert any("API_PUBLISH_ADDR:-127.0.0.1" in p for p in api["ports"])


def test_influxdb_2x_first_start_setup(compose):
    env = env_list_to_dict(compose["services"]["influxdb"]["environment"])
    assert env["DOCKER_INFLUXDB_INIT_MODE"] == "setup"
    assert required_var(env["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"]) == "FLEETPULSE_INFLUXDB_TOKEN"
    assert env["DOCKER_INFLUXDB_INIT_BUCKET"] == f"{DATABASE}/rp_30s"
    for key in ("USERNAME", "PASSWORD", "ORG"):
        assert env[f"DOCKER_INFLUXDB_INIT_{key}"].startswith("${")


def test_agent_service_reports_the_docker_host(compose):
    agent = compose["services"]["agent"]
    assert agent["command"] == ["python", "-m", "agent"]
    assert agent["pid"] == "host"
    assert agent["network_mode"] == "host", "the host's interfaces, not the container's"
    assert agent["image"] == compose["services"]["api"]["image"], "one image for API and agent"
    m = mounts(agent)
    assert m["/host/proc"] == ("/proc", "ro")
    assert m["/host/sys"] == ("/sys", "ro")
    assert m["/rootfs"] == ("/", "ro")
    env = env_list_to_dict(agent["environment"])
    # host network: the API is reached where compose publishes it on the host
    assert env["FLEETPULSE_URL"] == "http://127.0.0.1:${API_PUBLISH_PORT:-8000}"
    assert env["FLEETPULSE_TOKEN"].startswith("${")
    assert env["FLEETPULSE_HOST"].startswith("${")
    assert env["FLEETPULSE_SPOOL_DIR"] == "/spool"
    assert m["/spool"][0] in compose["volumes"]
    assert env["FLEETPULSE_PROCFS"] == "/host/proc"
    assert env["FLEETPULSE_SYSFS"] == "/host/sys"
    assert env["FLEETPULSE_ROOTFS"] == "/rootfs"


def test_design_describes_the_agent_containers_network(compose):
    assert compose["services"]["agent"]["network_mode"] == "host"
    design = (ROOT / "DESIGN.md").read_text()
    section = design.split("### The agent container", 1)[1].split("\n### ", 1)[0]
    assert "`network_mode: host`" in section
    assert "own network namespace" not in design and "http://api:8000" not in design


def test_influxdb_1x_variant(compose, compose_1x):
    svc = compose_1x["services"]
    env = env_list_to_dict(svc["api"]["environment"])
    assert env["FLEETPULSE_STORAGE_URL"] == f"influxdb://influxdb:8086/{DATABASE}"
    assert env["FLEETPULSE_INFLUXDB_USERNAME"].startswith("${")
    assert env["FLEETPULSE_INFLUXDB_PASSWORD"].startswith("${")
    influx = svc["influxdb"]
    assert env_list_to_dict(influx["environment"])["INFLUXDB_HTTP_AUTH_ENABLED"] == "true"
    assert "/ping" in " ".join(influx["healthcheck"]["test"])
    source, _ = mounts(influx)["/var/lib/influxdb"]
    assert source in compose_1x["volumes"]
    # The 1.x datasource replaces the 2.x one (same container path).
    base = mounts(compose["services"]["grafana"])
    over = mounts(svc["grafana"])
    target = "/etc/grafana/provisioning/datasources"
    assert base[target][0] == "./" + str(DATASOURCE_2X.parent.relative_to(ROOT))
    assert over[target][0] == "./" + str(DATASOURCE_1X.parent.relative_to(ROOT))


def test_every_compose_variable_is_documented_in_sample_env():
    documented = sample_env()
    text = SAMPLE_ENV.read_text()
    for path in (COMPOSE, COMPOSE_1X, COMPOSE_HA):
        for var in compose_vars(path.read_text()):
            assert var in documented, f"{path.name} uses ${{{var}}}: document it in sample.env"
            # a comment line right above the variable or its group explains it
            assert re.search(rf"#[^\n]*\n(?:[A-Z0-9_]+=[^\n]*\n)*{var}=", text), var


def required_var(value: str) -> str | None:
    """VAR of a required `${VAR:?message}` whose message names VAR and sample.env, else None."""
    m = re.fullmatch(r"\$\{([A-Z0-9_]+):\?([^}]*)\}", value)
    return m.group(1) if m and m.group(1) in m.group(2) and "sample.env" in m.group(2) else None


# Without these a stack would start with a blank password or token (InfluxDB set up with an
# empty operator token, Grafana with its default admin password): compose must stop instead.
REQUIRED = {
    "INFLUXDB_ADMIN_USER",
    "INFLUXDB_ADMIN_PASSWORD",
    "FLEETPULSE_INFLUXDB_TOKEN",
    "GRAFANA_INFLUXDB_TOKEN",
    "FLEETPULSE_ADMIN_TOKEN",
    "FLEETPULSE_AGENT_TOKEN",
    "GRAFANA_ADMIN_PASSWORD",
    "INFLUXDB_READ_PASSWORD",
    "POSTGRES_PASSWORD",
}


def test_no_secret_is_written_into_the_compose_files():
    for path in (COMPOSE, COMPOSE_1X, COMPOSE_HA):
        doc = load_yaml(path)
        for name, svc in doc["services"].items():
            for key, value in env_list_to_dict(svc.get("environment")).items():
                if re.search(r"TOKEN|PASSWORD|SECRET", key):
                    assert value == "" or required_var(value), (
                        f"{path.name}: {name}.{key} must come from .env as "
                        "${VAR:?set VAR in .env (see sample.env)}"
                    )


def test_required_secrets_stop_compose_with_a_message():
    """Every use of a required variable is `${VAR:?...}`, in every file."""
    seen = set()
    for path in (COMPOSE, COMPOSE_1X, COMPOSE_HA):
        for m in re.finditer(r"\$\{([A-Z0-9_]+)([^}]*)\}", path.read_text()):
            if m.group(1) in REQUIRED:
                seen.add(m.group(1))
                assert required_var(m.group(0)) == m.group(1), f"{path.name}: {m.group(0)}"
    assert seen == REQUIRED


def test_env_file_is_ignored_by_git_and_docker():
    assert ".env" in (ROOT / ".gitignore").read_text().split()
    assert ".env" in (ROOT / ".dockerignore").read_text().split()


def docker_compose() -> str:
    exe = shutil.which("docker-compose")
    if exe is None:
        if CI:
            pytest.fail("docker-compose is missing (CI=true): install Debian's docker-compose")
        pytest.skip("docker-compose is not installed")
    return exe


@pytest.mark.parametrize(
    "files",
    [("docker-compose.yml",), ("docker-compose.yml", "docker-compose.influxdb1.yml")],
    ids=["influxdb2", "influxdb1"],
)
def test_docker_compose_config_is_valid(files, tmp_path):
    exe = docker_compose()
    env_file = tmp_path / ".env"
    env_file.write_text(SAMPLE_ENV.read_text())
    args = [exe, "--env-file", str(env_file)]
    for f in files:
        args += ["-f", str(ROOT / f)]
    run = subprocess.run(
        [*args, "config"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert run.returncode == 0, run.stderr
    assert "is not set" not in run.stderr, run.stderr  # sample.env covers every variable
    merged = yaml.safe_load(run.stdout)
    assert set(merged["services"]) == SERVICES
    api_env = env_list_to_dict(merged["services"]["api"]["environment"])
    if len(files) == 1:
        assert api_env["FLEETPULSE_STORAGE_URL"] == "influxdb2://influxdb:8086/?org=fleetpulse"
        assert merged["services"]["influxdb"]["image"].startswith("influxdb:2.")
    else:
        assert api_env["FLEETPULSE_STORAGE_URL"] == "influxdb://influxdb:8086/fleetpulse"
        assert merged["services"]["influxdb"]["image"].startswith("influxdb:1.8.")


@pytest.mark.parametrize(
    "files",
    [
        ("docker-compose.yml",),
        ("docker-compose.yml", "docker-compose.influxdb1.yml"),
        ("docker-compose.ha.yml",),
    ],
    ids=["influxdb2", "influxdb1", "ha"],
)
def test_docker_compose_config_without_env_stops_naming_the_variable(files, tmp_path):
    """No `.env`: compose refuses, naming a missing secret, instead of starting blank ones."""
    exe = docker_compose()
    empty = tmp_path / "empty.env"
    empty.write_text("")
    args = [exe, "--env-file", str(empty)]
    for f in files:
        args += ["-f", str(ROOT / f)]
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
    run = subprocess.run(
        [*args, "config", "-q"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode != 0, "compose accepted a stack with blank secrets"
    named = [v for v in REQUIRED if f"set {v} in .env (see sample.env)" in run.stderr]
    assert named, run.stderr


def test_make_compose_check_validates_both_files_with_sample_env(tmp_path):
    """`make compose-check` passes in CI (no .env there): every stack, with sample.env."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    docker_compose()
    run = subprocess.run(
        ["make", "--no-print-directory", "compose-check"],
        cwd=ROOT,
        env={**os.environ, "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    commands = [line for line in run.stdout.splitlines() if " config" in line]
    assert len(commands) == 3, run.stdout
    assert all("--env-file sample.env" in c for c in commands), run.stdout
    assert "docker-compose.influxdb1.yml" in commands[1], run.stdout
    assert "docker-compose.ha.yml" in commands[2], run.stdout


# --- Grafana provisioning -------------------------------------------------------------


@pytest.mark.parametrize("path", [DATASOURCE_2X, DATASOURCE_1X], ids=["influxdb2", "influxdb1"])
def test_datasource_provisioning(path, compose, compose_1x):
    doc = load_yaml(path)
    assert doc["apiVersion"] == 1
    (ds,) = doc["datasources"]
    assert ds["type"] == "influxdb"
    assert ds["uid"] == "fleetpulse-influxdb"
    assert ds["url"] == "http://influxdb:8086"
    assert ds["jsonData"]["dbName"] == DATABASE
    assert ds["jsonData"].get("version", "InfluxQL") == "InfluxQL"
    grafana_env = env_list_to_dict(compose["services"]["grafana"]["environment"])
    if path == DATASOURCE_2X:
        assert ds["jsonData"]["httpHeaderName1"] == "Authorization"
        assert re.fullmatch(r"Token \$\{[A-Z0-9_]+\}", ds["secureJsonData"]["httpHeaderValue1"])
    else:
        assert ds["user"].startswith("${") and ds["secureJsonData"]["password"].startswith("${")
        grafana_env |= env_list_to_dict(compose_1x["services"]["grafana"]["environment"])
    # Grafana expands ${VAR} from its own environment: compose must pass each one.
    for var in compose_vars(path.read_text()):
        assert var in grafana_env, f"{path.name} needs {var} in the grafana service's env"


def test_dashboard_provider_points_at_the_mounted_dashboards(compose):
    doc = load_yaml(DASHBOARD_PROVIDER)
    assert doc["apiVersion"] == 1
    (provider,) = doc["providers"]
    assert provider["type"] == "file"
    grafana = mounts(compose["services"]["grafana"])
    source, mode = grafana[provider["options"]["path"]]
    assert (ROOT / source).resolve() == DASHBOARDS and mode == "ro"
    assert (
        grafana["/etc/grafana/provisioning/dashboards"][0]
        == "./deploy/grafana/provisioning/dashboards"
    )


def load_dashboards() -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def all_panels(dash: dict) -> list[dict]:
    out = []
    for p in dash["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def queries(dash: dict) -> list[str]:
    return [t["query"] for p in all_panels(dash) for t in p.get("targets", [])]


def test_dashboards_have_fixed_uids_titles_and_panels():
    dashboards = load_dashboards()
    assert set(dashboards) == set(DASHBOARD_UIDS)
    for name, dash in dashboards.items():
        assert dash["uid"] == DASHBOARD_UIDS[name]
        assert dash["title"]
        assert [p for p in dash["panels"] if p["type"] != "row"]
        ids = [p["id"] for p in all_panels(dash)]
        assert len(ids) == len(set(ids))
        for p in all_panels(dash):
            for t in p.get("targets", []):
                assert t["rawQuery"] is True
                assert t["datasource"]["uid"] == "fleetpulse-influxdb"


def test_host_detail_has_a_host_variable():
    dash = load_dashboards()["host-detail.json"]
    (host,) = [v for v in dash["templating"]["list"] if v["name"] == "host"]
    assert host["type"] == "query"
    assert host["query"] == HOST_VAR_QUERY
    for q in queries(dash):
        assert "'$host'" in q, f"host detail query without the host filter: {q}"


def test_dashboards_are_generated_from_build_dashboards_py():
    run = subprocess.run(
        [sys.executable, str(GRAFANA / "build_dashboards.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr


SOURCE_RE = re.compile(r'"([^"]+)"\."([^"]+)"')


def check_query_names(query: str) -> set[str]:
    """Every quoted name is a known RP.measurement, field, tag key or alias; return measurements."""
    assert "SELECT" in query
    sources = SOURCE_RE.findall(query)
    assert sources, f'no "rp"."measurement" in {query}'
    for rp, measurement in sources:
        assert rp in RETENTION_POLICIES, f"unknown retention policy {rp!r}: {query}"
        assert measurement in METRICS, f"unknown measurement {measurement!r}: {query}"
    rest = SOURCE_RE.sub("", query)
    rest = re.sub(r'AS "[^"]+"', "", rest)  # aliases name output columns
    for fn, field in re.findall(r'(\w+)\("([^"]+)"\)', rest):
        assert field in FIELDS, f"{fn}() of unknown field {field!r}: {query}"
    tags_needed = set()
    for name in re.findall(r'"([^"]+)"', rest):
        assert name in FIELDS | TAG_KEYS, f"unknown name {name!r}: {query}"
        if name in TAG_KEYS:
            tags_needed.add(name)
    measurements = {m for _, m in sources}
    for m in measurements:
        assert tags_needed <= {"host", *METRICS[m]}, f"{m} has no tag {tags_needed}: {query}"
        if "energy_wh" in query:
            assert m in WATT_METRICS, f"energy_wh exists only for unit W series: {query}"
    return measurements


def test_every_dashboard_query_uses_the_data_layout():
    for name, dash in load_dashboards().items():
        qs = queries(dash)
        assert qs, name
        for q in qs:
            check_query_names(q)
            if "GROUP BY time(" in q or "energy_wh" in q:
                # a range query reads 30-second points for the recent past, 30-minute ones before
                assert '"rp_30s".' in q and '"rp_30m".' in q, q
                assert "now() - $hires" in q, q


def test_fleet_overview_covers_every_host_and_the_main_resources():
    dash = load_dashboards()["fleet-overview.json"]
    measurements = set().union(*(check_query_names(q) for q in queries(dash)))
    for needed in (
        "cpu.percent",
        "mem.percent",
        "disk.percent",
        "gpu.utilization.percent",
        "gpu.power.watts",
        "power.cpu_package.watts",
    ):
        assert needed in measurements
    assert not any("$host" in q for q in queries(dash)), "the overview shows every host"
    last_seen = [
        p
        for p in all_panels(dash)
        if p["type"] == "table" and any('last("last")' in t["query"] for t in p["targets"])
    ]
    assert last_seen and 'GROUP BY "host"' in last_seen[0]["targets"][0]["query"]


# --- Dockerfile -----------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out, buf = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        buf += line
        word, _, args = buf.strip().partition(" ")
        out.append((word.upper(), args.strip()))
        buf = ""
    return out


def instruction(name: str) -> list[str]:
    return [args for word, args in dockerfile() if word == name]


def exec_form(args: str) -> list[str]:
    return json.loads(args) if args.startswith("[") else shlex.split(args)


def test_dockerfile_base_is_a_pinned_slim_python_311():
    (base,) = instruction("FROM")
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-bookworm|-trixie)?", base), base


def test_dockerfile_runs_as_non_root():
    users = instruction("USER")
    assert users, "no USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    assert any("useradd" in r for r in instruction("RUN"))


def test_dockerfile_installs_both_requirement_files_without_cache():
    pip = [r for r in instruction("RUN") if "pip install" in r]
    assert len(pip) == 1
    assert "--no-cache-dir" in pip[0]
    assert requirement_files() == ["requirements.txt", "requirements-agent.txt"]


def test_dockerfile_copies_the_code_and_exposes_8000():
    copied = [exec_form(c)[:-1] for c in instruction("COPY")]
    sources = {s.rstrip("/") for srcs in copied for s in srcs}
    assert {"app", "agent", "gunicorn.conf.py"} <= sources
    assert instruction("EXPOSE") == ["8000"]
    ignore = [
        p.strip().rstrip("/")
        for p in (ROOT / ".dockerignore").read_text().splitlines()
        if p.strip() and not p.startswith("#") and not p.startswith("!")
    ]
    for src in sources:
        assert not any(fnmatch.fnmatch(src, pat) for pat in ignore), f".dockerignore drops {src}"


def test_dockerfile_healthcheck_and_cmd():
    (health,) = instruction("HEALTHCHECK")
    assert "CMD" in health
    assert "http://127.0.0.1:8000/readyz" in health
    assert "urllib.request" in health
    (cmd,) = instruction("CMD")
    assert exec_form(cmd) == ["gunicorn", "-c", "gunicorn.conf.py"]


def test_dockerfile_copy_sources_exist():
    for c in instruction("COPY"):
        for src in exec_form(c)[:-1]:
            assert (ROOT / src).exists(), f"COPY {src}: missing from the repository"


def requirement_files() -> list[str]:
    (pip,) = [r for r in instruction("RUN") if "pip install" in r]
    words = shlex.split(pip[pip.index("pip install") :])
    return [words[i + 1] for i, w in enumerate(words) if w == "-r"]


def pinned_requirements(path: Path, seen: set[Path] | None = None) -> dict[str, str]:
    seen = set() if seen is None else seen
    if path in seen:
        return {}
    seen.add(path)
    out = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-r"):
            out |= pinned_requirements(path.parent / line[2:].strip(), seen)
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.\-\[\]]+)==([^\s;]+)", line)
        assert m, f"{path.name}: not pinned with ==: {line!r}"
        out[re.sub(r"\[.*\]", "", m.group(1))] = m.group(2)
    return out


@pytest.mark.e2e
def test_dockerfile_requirements_are_what_the_venv_has():
    """The image's `pip install -r ...` gets the same pinned versions the suite runs with."""
    for name in requirement_files():
        for dist, version in pinned_requirements(ROOT / name).items():
            assert importlib.metadata.version(dist) == version, f"{name}: {dist}"


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            pytest.fail(f"gunicorn exited with {proc.returncode}:\n{out[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return resp.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"no answer from {url} within {timeout} s")


@pytest.mark.e2e
def test_dockerfile_cmd_starts_the_api(tmp_path):
    """Run the image's CMD from the repo root (as WORKDIR /app holds the same files)."""
    (cmd,) = instruction("CMD")
    argv = exec_form(cmd)
    exe = Path(sys.executable).parent / argv[0]
    assert exe.exists(), f"{argv[0]} is not installed in the venv"
    port = free_port()
    env = {
        **os.environ,
        "GUNICORN_CMD_ARGS": f"--bind 127.0.0.1:{port} --workers 1",
        "FLEETPULSE_STORAGE_URL": f"sqlite:///{tmp_path / 'x.db'}",
        "FLEETPULSE_METADATA_URL": f"sqlite://{tmp_path / 'meta.db'}",
    }
    proc = subprocess.Popen(
        [str(exe), *argv[1:]],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        assert wait_http(f"http://127.0.0.1:{port}/healthz", proc) == 200
        assert wait_http(f"http://127.0.0.1:{port}/readyz", proc) == 200
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# --- the agent container's health check ---------------------------------------------------


@pytest.mark.skipif(not Path("/proc/self/cgroup").exists(), reason="needs Linux /proc")
def test_agent_healthcheck_script_finds_the_agent_process():
    script = ROOT / "deploy" / "agent_healthcheck.py"
    check = [sys.executable, str(script)]
    assert subprocess.run(check, capture_output=True, timeout=20, check=False).returncode == 1
    # A stand-in whose command line is `python -c ... -m agent`.
    stand_in = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)", "-m", "agent"]
    )
    try:
        time.sleep(0.2)
        assert subprocess.run(check, capture_output=True, timeout=20, check=False).returncode == 0
    finally:
        stand_in.kill()
        stand_in.wait()
    svc = load_yaml(COMPOSE)["services"]["agent"]
    assert svc["healthcheck"]["test"][-1] == "/app/deploy/agent_healthcheck.py"
    assert any("deploy/agent_healthcheck.py" in c for c in instruction("COPY"))


# --- the dashboards' InfluxQL against a real influxd --------------------------------------


@pytest.fixture(scope="module")
def influxd(tmp_path_factory):
    exe = shutil.which("influxd")
    if exe is None:
        if CI:
            pytest.fail("influxd is missing (CI=true): install Debian's influxdb")
        pytest.skip("influxd is not installed")
    base = tmp_path_factory.mktemp("influxd")
    port, rpc = free_port(), free_port()
    conf = base / "influxd.conf"
    conf.write_text(
        f'reporting-disabled = true\nbind-address = "127.0.0.1:{rpc}"\n'
        f'[meta]\n  dir = "{base}/meta"\n'
        f'[data]\n  dir = "{base}/data"\n  wal-dir = "{base}/wal"\n  query-log-enabled = false\n'
        f'[http]\n  bind-address = "127.0.0.1:{port}"\n  log-enabled = false\n'
        "[monitor]\n  store-enabled = false\n"
        "[continuous_queries]\n  enabled = false\n"
    )
    proc = subprocess.Popen(
        [exe, "-config", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_http(f"{url}/ping", proc, timeout=30) == 204
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def influx(url: str, path: str, params: dict, body: bytes | None = None) -> dict:
    req = urllib.request.Request(
        f"{url}{path}?{urllib.parse.urlencode(params)}", data=body, method="POST"
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        text = resp.read()
    return json.loads(text) if text else {}


def point_lines(now: int) -> dict[str, list[str]]:
    """Points in the API's layout: 30-second windows for 2 hours, 30-minute ones 2-4 days ago."""
    lines: dict[str, list[str]] = {"rp_30s": [], "rp_30m": []}
    tag_values = {
        "cpu": ["total", "0"],
        "mount": ["/"],
        "device": ["sda"],
        "interface": ["eth0"],
        "gpu": ["0"],
        "pid": ["42"],
        "package": ["0"],
        "process": ["api"],
    }
    for rp, step, start, n in (
        ("rp_30s", 30, now // 30 * 30 - 7200, 240),
        ("rp_30m", 1800, now // 1800 * 1800 - 4 * 86400, 96),
    ):
        for host in ("web-01", "gpu.box-2"):
            for metric, tags in METRICS.items():
                tag_sets = [{}]
                for key in tags:
                    tag_sets = [{**ts, key: v} for ts in tag_sets for v in tag_values[key]]
                for ts in tag_sets:
                    key = ",".join(
                        [f"{metric}", f"host={host}", *(f"{k}={v}" for k, v in ts.items())]
                    )
                    for i in range(n):
                        v = float(i % 50)
                        fields = (
                            f"mean={v},min={v - 1},max={v + 1},last={v},count=30i,"
                            f"covered={step}.0,integral={v * step}"
                        )
                        if metric in WATT_METRICS:
                            fields += f",energy_wh={v * step / 3600}"
                        lines[rp].append(f"{key} {fields} {start + i * step}")
    return lines


@pytest.fixture(scope="module")
def loaded_influxd(influxd):
    q = influx(influxd, "/query", {"q": f"CREATE DATABASE {DATABASE}"})
    assert "error" not in q["results"][0]
    for stmt in (
        f"CREATE RETENTION POLICY rp_30s ON {DATABASE} DURATION 7d REPLICATION 1",
        f"CREATE RETENTION POLICY rp_30m ON {DATABASE} DURATION 400d REPLICATION 1",
    ):
        q = influx(influxd, "/query", {"q": stmt})
        assert "error" not in q["results"][0], q
    now = int(time.time())
    for rp, lines in point_lines(now).items():
        for i in range(0, len(lines), 5000):
            body = "\n".join(lines[i : i + 5000]).encode()
            influx(influxd, "/write", {"db": DATABASE, "rp": rp, "precision": "s"}, body)
    return influxd, now


def grafana_interpolate(query: str, time_range: str, interval: str) -> str:
    """What Grafana's InfluxQL datasource sends for the dashboard variables used here."""
    return (
        query.replace("$timeFilter", f"time >= now() - {time_range}")
        .replace("$__interval", interval)
        .replace("$hires", "1d")
        .replace("$host", "gpu.box-2")
    )


@pytest.mark.influx
@pytest.mark.parametrize(
    ("time_range", "interval"), [("1h", "30s"), ("7d", "30m")], ids=["short", "long"]
)
def test_dashboard_queries_run_on_influxdb(loaded_influxd, time_range, interval):
    url, _now = loaded_influxd
    for name, dash in load_dashboards().items():
        for raw in [*queries(dash), HOST_VAR_QUERY]:
            query = grafana_interpolate(raw, time_range, interval)
            answer = influx(url, "/query", {"db": DATABASE, "q": query, "epoch": "s"})
            result = answer["results"][0]
            assert "error" not in result, f"{name}: {result.get('error')}\n{query}"
            series = result.get("series", [])
            assert series, f"{name}: no data for\n{query}"
            if "$host" in raw:
                assert all(
                    s.get("tags", {}).get("host", "gpu.box-2") == "gpu.box-2" for s in series
                )
            if "GROUP BY time(" in raw and time_range == "7d":
                # the 30-minute points from days ago are part of the long range
                times = [row[0] for s in series for row in s["values"]]
                assert min(times) < time.time() - 2 * 86400 and max(times) > time.time() - 3600


@pytest.mark.influx
def test_time_weighted_mean_spans_both_series(loaded_influxd):
    """sum(integral)/sum(covered) over 30-second and 30-minute points is the time-weighted mean."""
    url, now = loaded_influxd
    dash = load_dashboards()["host-detail.json"]
    (query,) = [q for q in queries(dash) if '"mem.percent"' in q]
    query = grafana_interpolate(query, "5d", "1d")
    result = influx(url, "/query", {"db": DATABASE, "q": query})["results"][0]
    (series,) = result["series"]
    got = {row[0]: row[1] for row in series["values"]}
    # the points point_lines() wrote for mem.percent, either series: (time, value, seconds)
    points = [(now // 30 * 30 - 7200 + i * 30, float(i % 50), 30) for i in range(240)]
    points += [(now // 1800 * 1800 - 4 * 86400 + i * 1800, float(i % 50), 1800) for i in range(96)]
    want: dict[int, list[float]] = {}
    for t, v, step in points:
        acc = want.setdefault(t // 86400 * 86400, [0.0, 0.0])
        acc[0] += v * step
        acc[1] += step
    assert len(got) == len(want) >= 3
    for day, (integral, covered) in want.items():
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(day))
        assert got[stamp] == pytest.approx(integral / covered, rel=1e-9)


# --- the architecture diagram -------------------------------------------------------------


def test_architecture_diagram_renders_and_names_the_parts(tmp_path):
    dot_file = ROOT / "architecture_diagram.dot"
    text = dot_file.read_text()
    for part in (
        "collectors",
        "batcher",
        "spool",
        "HTTPS POST",
        "probe",
        "gunicorn",
        "marshmallow",
        "numpy",
        "Store.write",
        "app/ingest",
        "app/core",
        "app/web",
        "30 s table",
        "30 min table",
        "lease",
        "rp_30s",
        "rp_30m",
        "continuous query",
        "Flux task",
        "Grafana",
    ):
        assert part in text, f"architecture_diagram.dot does not show {part!r}"
    png = ROOT / "architecture_diagram.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", "run `make diagram`"
    exe = shutil.which("dot")
    if exe is None:
        if CI:
            pytest.fail("graphviz (dot) is missing (CI=true)")
        pytest.skip("graphviz is not installed")
    out = tmp_path / "diagram.svg"
    run = subprocess.run(
        [exe, "-Tsvg", str(dot_file), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0 and not run.stderr.strip(), run.stderr
    assert out.stat().st_size > 0


# --- the docs point at files that exist and document every setting ------------------------

DOCS = [
    ROOT / "README.md",
    ROOT / "DESIGN.md",
    ROOT / "SECURITY.md",
    SAMPLE_ENV,
    *sorted(p for p in (ROOT / "deploy").rglob("*") if p.is_file() and p.suffix != ".json"),
]
EXTENSIONLESS = {"Dockerfile", "Makefile"}
OUTSIDE = {"CONTRACT.md"}  # the public contract, ../shared/CONTRACT.md
RUNTIME = {"var", ".venv"}  # made by `make run` / `make venv`, ignored by git


def looks_like_a_repo_file(ref: str) -> bool:
    """A repo-relative file or folder: `deploy/x.service`, `DESIGN.md`, `deploy/grafana/`."""
    if not re.fullmatch(r"(\.\./)*[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*/?", ref):
        return False
    if ref.startswith("../") or ref in OUTSIDE:
        return False  # outside the repository
    ref = ref.removeprefix("./")
    if ref.split("/")[0] in RUNTIME:
        return False
    first, *_ = ref.split("/")
    last = ref.rstrip("/").rsplit("/", 1)[-1]
    if "/" in ref.rstrip("/"):
        # a path: it is the repo's when its first part is one of the repo's top-level entries
        return (ROOT / first).exists() or first in {"deploy", "scripts", "bench", "tests"}
    # a bare name: a file at the top level (README.md, sample.env, Dockerfile ...)
    return last in EXTENSIONLESS or bool(
        re.fullmatch(r"[A-Za-z0-9_.-]+\.(md|env|yml|yaml|py|sh|service|dot|png|toml|txt)", last)
    )


@functools.cache
def repo_file_names() -> frozenset[str]:
    """The names of the repository's own files (not the venv's, nor local data)."""
    skip = {".venv", "var", ".git", "node_modules", ".hypothesis"}
    return frozenset(
        p.name for p in ROOT.rglob("*") if p.is_file() and not skip & set(p.relative_to(ROOT).parts)
    )


def doc_refs(path: Path) -> set[str]:
    text = path.read_text()
    refs: set[str] = set()
    if path.suffix == ".md":
        text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)  # fenced code is commands
        refs |= set(re.findall(r"`([^`\n]+)`", text))
        refs |= set(re.findall(r"\]\(([^)#\s]+)", text))
    # any file path in running text (comments of sample.env, the unit, the Grafana files ...)
    path_re = r"(?<![\w/.$~:-])(?:[A-Za-z0-9_-]+/)+[A-Za-z0-9_.-]*[A-Za-z0-9_](?![\w<*{$/-])"
    refs |= set(re.findall(path_re, text))
    refs |= set(re.findall(r"(?<![\w/.$~-])[A-Za-z0-9_-]+\.(?:md|env)\b", text))
    return {r for r in refs if looks_like_a_repo_file(r)}


@pytest.mark.parametrize("doc", DOCS, ids=[str(p.relative_to(ROOT)) for p in DOCS])
def test_every_file_a_doc_names_exists(doc):
    missing = []
    for ref in sorted(doc_refs(doc)):
        # a bare file name in a table of a folder's modules: some file of the repo has that name
        bare = "/" not in ref and ref in repo_file_names()
        if not ((ROOT / ref).exists() or (doc.parent / ref).exists() or bare):
            missing.append(ref)
    assert not missing, f"{doc.relative_to(ROOT)} names files that do not exist: {missing}"


def settings_variables() -> set[str]:
    """Every FLEETPULSE_* variable the server, gunicorn and the agent read (from their text)."""
    found: set[str] = set()
    texts = {
        name: (ROOT / name).read_text()
        for name in ("app/web/settings.py", "gunicorn.conf.py", "agent/config.py")
    }
    for text in texts.values():
        found |= set(re.findall(r"FLEETPULSE_[A-Z0-9_]*[A-Z0-9]", text))
    # app/web/settings.py: each field of Settings is FLEETPULSE_<FIELD>, except those it renames
    tree = ast.parse(texts["app/web/settings.py"])
    (settings,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Settings"]
    renamed: dict[str, str] = {}
    for node in ast.walk(settings):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "names":
            renamed = ast.literal_eval(node.value)
    for node in settings.body:
        if isinstance(node, ast.AnnAssign):
            field = node.target.id
            found.add(renamed.get(field, "FLEETPULSE_" + field.upper()))
    # agent/config.py: every key of `known` is FLEETPULSE_<KEY>
    for node in ast.walk(ast.parse(texts["agent/config.py"])):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "known":
            found |= {"FLEETPULSE_" + k.upper() for k in ast.literal_eval(node.value)}
    return found


def readme_table_variables() -> set[str]:
    """FLEETPULSE_* names in the first column of the README's configuration tables."""
    out: set[str] = set()
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith("| `FLEETPULSE_"):
            first = line.split("|")[1]
            out |= set(re.findall(r"`(FLEETPULSE_[A-Z0-9_]+)`", first))
    return out


def test_every_setting_is_in_the_readme_configuration_tables():
    read = settings_variables()
    assert {"FLEETPULSE_STORAGE_URL", "FLEETPULSE_WORKERS", "FLEETPULSE_URL"} <= read
    missing = sorted(read - readme_table_variables())
    assert not missing, f"read by the code, missing from README's configuration tables: {missing}"


# --- the systemd unit of the agent and the README's install steps --------------------------

UNIT = ROOT / "deploy" / "fleetpulse-agent.service"
AGENT_USER = "fleetpulse-agent"


def unit_settings() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def readme_install_steps() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("### Installing the agent (systemd)", 1)[1]
    return section.split("```sh", 1)[1].split("```", 1)[0]


def test_agent_unit_runs_as_its_own_user_with_a_state_directory():
    unit = unit_settings()
    assert unit["User"] == [AGENT_USER] and unit["Group"] == [AGENT_USER]
    assert "DynamicUser" not in unit, "the token file is owned by a fixed user"
    assert unit["StateDirectory"] == [AGENT_USER]
    assert unit["Environment"].count(f"FLEETPULSE_SPOOL_DIR=/var/lib/{AGENT_USER}") == 1
    # hardening that still lets psutil read every process in /proc and the host's /sys
    assert unit["NoNewPrivileges"] == ["yes"] and unit["ProtectSystem"] == ["strict"]
    hiding = ("ProtectProc", "ProcSubset", "PrivateDevices", "DeviceAllow", "ProtectClock")
    for hides_data in (*hiding, "PrivateNetwork"):
        assert hides_data not in unit, f"{hides_data} hides what the collectors read"
    assert unit.get("ProtectHome", ["read-only"]) == ["read-only"], "disk usage of /home"
    # everything it points at is put there by the README's install steps
    steps = readme_install_steps()
    for doc in unit.get("Documentation", []):
        for url in doc.split():
            assert url.startswith("file:///"), url
            assert url.removeprefix("file://") in steps, f"the install never puts {url} there"
    assert re.search(rf"useradd\b[^\n]*--system[^\n]*\b{AGENT_USER}\b", steps)
    token = "/etc/fleetpulse-agent/token"
    assert re.search(rf"install\b[^\n]*-o {AGENT_USER}\b[^\n]*-m 0?600\b[^\n]*{token}", steps), (
        "the token file: owned by the agent's user, mode 0600"
    )


def test_readme_describes_the_unit_as_it_is():
    text = (ROOT / "README.md").read_text()
    unit = unit_settings()
    for value in re.findall(r"`StateDirectory=([^`]+)`", text):
        assert [value] == unit["StateDirectory"]
    assert "DynamicUser" not in text
    assert f"`User={AGENT_USER}`" in text


def test_agent_unit_passes_systemd_analyze_verify(tmp_path):
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze is not installed")
    # The install's paths do not exist here: point ExecStart at this venv's python.
    unit = tmp_path / UNIT.name
    unit.write_text(
        UNIT.read_text().replace("/opt/fleetpulse-agent/venv/bin/fleetpulse-agent", sys.executable)
    )
    run = subprocess.run(
        [exe, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    complaints = [
        line
        for line in (run.stdout + run.stderr).splitlines()
        if UNIT.name in line or "Unknown" in line or "ignoring" in line.lower()
    ]
    assert run.returncode == 0 and not complaints, run.stdout + run.stderr
