"""Several API nodes: docker-compose.ha.yml and the load balancer's config (deploy/nginx/).

Static checks on the real files and `docker-compose config`, `nginx -t` on the shipped config,
then (marker `e2e`) that very config run by Debian's nginx in front of two real gunicorn
nodes: both nodes get requests, headers and large gzipped bodies pass untouched, a POST a
node took and died on is retried on the other, writes read back exactly, and with no node
left the balancer answers the contract's 503 with Retry-After.

The nodes share one InfluxDB database and one PostgreSQL metadata database (`node_settings`),
as docker-compose.ha.yml runs them.
"""

from __future__ import annotations

import gzip
import os
import random
import re
import signal
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
import requests
import yaml

from app.web.settings import Settings
from harness import balancer
from harness.server import LiveApi, stop_gunicorn
from tests.conftest import ADMIN, now30, start_gunicorn
from tests.test_deploy import (
    CI,
    COMPOSE,
    COMPOSE_HA,
    SAMPLE_ENV,
    check_pinned_healthchecked_restarting,
    docker_compose,
    env_list_to_dict,
    load_yaml,
    mounts,
    required_var,
)

ROOT = Path(__file__).resolve().parent.parent
NGINX_CONF = balancer.CONFIG
NODES = ("api1", "api2")
SERVICES = {"postgres", "influxdb", *NODES, "lb", "grafana"}
# Where each stateful service keeps its data (a named volume); the nodes and the balancer
# keep nothing of their own.
DATA_MOUNTS = {
    "postgres": "/var/lib/postgresql/data",
    "influxdb": "/var/lib/influxdb2",
    "grafana": "/var/lib/grafana",
}
STATELESS = {*NODES, "lb"}


@pytest.fixture(scope="module")
def ha() -> dict:
    return load_yaml(COMPOSE_HA)


@pytest.fixture(scope="module")
def ha_config(tmp_path_factory) -> dict:
    """`docker-compose config` of the stack with sample.env's values: what compose runs."""
    exe = docker_compose()
    env_file = tmp_path_factory.mktemp("ha") / ".env"
    env_file.write_text(SAMPLE_ENV.read_text())
    run = subprocess.run(
        [exe, "--env-file", str(env_file), "-f", str(COMPOSE_HA), "config"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "is not set" not in run.stderr, run.stderr  # sample.env covers every variable
    return yaml.safe_load(run.stdout)


# --- docker-compose.ha.yml ------------------------------------------------------------------


def test_ha_compose_has_the_services(ha, ha_config):
    assert set(ha["services"]) == SERVICES
    assert set(ha_config["services"]) == SERVICES


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_ha_service_is_pinned_healthchecked_persistent_and_restarts(ha, name):
    svc = ha["services"][name]
    check_pinned_healthchecked_restarting(name, svc)
    if name in STATELESS:
        named = [s for s, _ in mounts(svc).values() if not s.startswith(("./", "/"))]
        assert not named, f"{name} keeps no state of its own: any node can be replaced"
    else:
        source, _mode = mounts(svc)[DATA_MOUNTS[name]]
        assert source in ha["volumes"], f"{name}: data must live in a named volume"


def test_ha_third_party_images_are_pinned_to_exact_versions(ha):
    svc = ha["services"]
    single = load_yaml(COMPOSE)["services"]
    assert re.fullmatch(r"postgres:1[6-9]\.\d+(-[a-z0-9]+)?", svc["postgres"]["image"])
    assert re.fullmatch(r"nginx:\d+\.\d+\.\d+(-alpine)?", svc["lb"]["image"])
    # the same InfluxDB and Grafana as the single-node stack
    assert svc["influxdb"]["image"] == single["influxdb"]["image"]
    assert svc["grafana"]["image"] == single["grafana"]["image"]


def test_api_nodes_are_the_single_node_api_with_shared_metadata(ha):
    single = load_yaml(COMPOSE)["services"]["api"]
    want = env_list_to_dict(single["environment"])
    del want["FLEETPULSE_METADATA_URL"]  # an SQLite file under /data: one node only
    for name in NODES:
        node = ha["services"][name]
        assert node["build"] == single["build"] and node["image"] == single["image"]
        env = env_list_to_dict(node["environment"])
        assert env.pop("FLEETPULSE_METADATA_URL").startswith("postgresql://")
        assert env == want, f"{name}: the settings of docker-compose.yml's api, no more"
        assert not node.get("ports"), f"{name}: clients go through the balancer"
        for dep in ("postgres", "influxdb"):
            assert node["depends_on"][dep]["condition"] == "service_healthy"
        assert "/readyz" in " ".join(node["healthcheck"]["test"])
        assert node["healthcheck"] == single["healthcheck"]


def test_every_api_node_has_the_same_settings(ha, ha_config):
    """Different retention or hold on one database is refused at start: one set for all."""
    for doc in (ha, ha_config):
        nodes = [doc["services"][n] for n in NODES]
        envs = [env_list_to_dict(n["environment"]) for n in nodes]
        assert all(e == envs[0] for e in envs), "every node needs the same FLEETPULSE_* settings"
        assert all(n["image"] == nodes[0]["image"] for n in nodes)


def test_metadata_url_points_at_the_postgres_service(ha_config):
    svc = ha_config["services"]
    pg = env_list_to_dict(svc["postgres"]["environment"])
    url = env_list_to_dict(svc["api1"]["environment"])["FLEETPULSE_METADATA_URL"]
    parts = urllib.parse.urlsplit(url)
    assert parts.scheme == "postgresql"
    assert (parts.hostname, parts.port) == ("postgres", 5432)
    assert parts.username == pg["POSTGRES_USER"]
    assert parts.password == pg["POSTGRES_PASSWORD"]
    assert parts.path == "/" + pg["POSTGRES_DB"]


def test_postgres_service(ha):
    pg = ha["services"]["postgres"]
    env = env_list_to_dict(pg["environment"])
    assert required_var(env["POSTGRES_PASSWORD"]) == "POSTGRES_PASSWORD"
    test = pg["healthcheck"]["test"]
    assert "pg_isready" in test
    assert test[test.index("-h") + 1] == "127.0.0.1", (
        "TCP: the set-up's socket-only server is not ready"
    )


def test_balancer_service(ha):
    lb = ha["services"]["lb"]
    source, mode = mounts(lb)["/etc/nginx/conf.d/default.conf"]
    assert (ROOT / source).resolve() == NGINX_CONF and mode == "ro"
    assert set(lb["depends_on"]) == set(NODES)
    # where the single-node stack publishes the API: agents and readers need no change
    single = load_yaml(COMPOSE)["services"]["api"]
    assert lb["ports"] == single["ports"]
    assert "/healthz" in " ".join(lb["healthcheck"]["test"])


# --- the balancer's config ------------------------------------------------------------------


def directive(text: str, name: str) -> list[str]:
    """The arguments of each (uncommented) ``name ...;`` of the config."""
    code = re.sub(r"#[^\n]*", "", text)
    return [m.group(1).strip() for m in re.finditer(rf"(?m)^\s*{name}\s+([^;]*);", code)]


def seconds(value: str) -> float:
    m = re.fullmatch(r"(\d+)(ms|s|m)?", value)
    assert m, value
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, None: 1}[m.group(2)]


def gunicorn_timeout() -> int:
    (m,) = re.findall(r"(?m)^timeout = (\d+)", (ROOT / "gunicorn.conf.py").read_text())
    return int(m)


def test_balancer_config_names_every_node_and_fits_the_api(ha):
    text = NGINX_CONF.read_text()
    assert balancer.upstream_names(text) == [f"{n}:8000" for n in NODES]
    assert [s for s in ha["services"] if s.startswith("api")] == list(NODES)
    assert not directive(text, r"(ip_hash|hash|least_conn|sticky)"), "round robin"
    # bodies up to the API's own limit reach the API (which answers 413 itself above it)
    (size,) = directive(text, "client_max_body_size")
    assert size.endswith("m") and int(size[:-1]) * 2**20 > Settings().max_body_bytes
    assert directive(text, "proxy_request_buffering") == ["on"], "a POST can be retried"
    # nginx waits longer than gunicorn lets a worker work
    for name in ("proxy_read_timeout", "proxy_send_timeout"):
        (value,) = directive(text, name)
        assert seconds(value) > gunicorn_timeout(), name
    # keep-alive to the nodes
    assert directive(text, "keepalive") and directive(text, "proxy_http_version") == ["1.1"]
    assert 'Connection ""' in directive(text, "proxy_set_header")
    # headers go through as sent: nothing overwrites or drops them, nothing (un)compresses
    for header in ("Authorization", "Content-Encoding", "Content-Type"):
        assert not any(h.startswith(header) for h in directive(text, "proxy_set_header"))
    assert not directive(text, r"(gzip|gunzip|proxy_pass_request_headers)")
    # writes are idempotent (CONTRACT.md section 4): a failed POST is retried on the other node
    (nxt,) = directive(text, "proxy_next_upstream")
    assert set(nxt.split()) >= {"error", "timeout", "non_idempotent"}
    (tries,) = directive(text, "proxy_next_upstream_tries")
    assert 2 <= int(tries) <= len(NODES)
    assert "idempotent" in text.split("proxy_next_upstream ", 1)[0], "say why in a comment"


def nginx() -> str:
    exe = balancer.nginx_exe()
    if exe is None:
        if CI:
            pytest.fail("nginx is missing (CI=true): install Debian's nginx-light")
        pytest.skip("nginx is not installed")
    return exe


def test_shipped_balancer_config_passes_nginx_t(tmp_path):
    run = balancer.check_config(nginx(), tmp_path, ["127.0.0.1:1", "127.0.0.1:2"])
    assert run.returncode == 0, run.stderr
    assert "warn" not in run.stderr, run.stderr


# --- the shipped config run by a real nginx in front of two real nodes ----------------------


@dataclass
class NodeSettings:
    """What every node of one fleet gets: one store and one metadata database."""

    storage_url: str
    env: dict[str, str]


@pytest.fixture
def node_settings(influxd, pg_url: str) -> NodeSettings:
    """What docker-compose.ha.yml runs: one InfluxDB database and one PostgreSQL metadata
    database shared by the nodes."""
    return NodeSettings(
        storage_url=influxd.new_db_url(),
        env={
            "FLEETPULSE_METADATA_URL": pg_url,
            # No background job: a node frozen by a test must hold no database lock.
            "FLEETPULSE_JOBS": "false",
        },
    )


@dataclass
class Fleet:
    nodes: list[LiveApi]
    lb: LiveApi  # the balancer's address with the API helpers (token_for, post_samples ...)
    nginx: balancer.LiveNginx

    def node_addr(self, i: int) -> str:
        return f"127.0.0.1:{self.nodes[i].port}"

    def sample_lines(self) -> list[list[str]]:
        """[status, nodes tried, their answers] of each POST /api/v1/samples so far."""
        return [
            line[2:]
            for line in self.nginx.access_lines()
            if line[:2] == ["POST", "/api/v1/samples"]
        ]


@pytest.fixture
def fleet(tmp_path: Path, node_settings: NodeSettings) -> Iterator[Fleet]:
    nginx()
    nodes: list[LiveApi] = []
    proc = None
    try:
        for name in NODES:
            (tmp_path / name).mkdir()
            nodes.append(
                start_gunicorn(
                    tmp_path / name,
                    workers=1,
                    storage_url=node_settings.storage_url,
                    env_extra=node_settings.env,
                )
            )
        live = balancer.start_nginx(tmp_path / "nginx", [f"127.0.0.1:{n.port}" for n in nodes])
        proc = live.proc
        lb = LiveApi(live.url, ADMIN, nodes[0].db_path, live.proc, tmp_path / "nginx" / "error.log")
        yield Fleet(nodes, lb, live)
    finally:
        if proc is not None:
            balancer.stop_nginx(proc)
        for node in nodes:
            stop_gunicorn(node.proc, grace=10)


def windows_batch(t0: int, w: int) -> dict:
    """Window ``w`` after ``t0``: 30 samples of one value, carrying the window before's last."""
    s = {
        "metric": "ha.value",
        "tags": {"node": "any"},
        "points": [[t0 + 30 * w + k, value(w)] for k in range(30)],
    }
    if w:
        s["carry"] = [t0 + 30 * w - 1, value(w - 1)]
    return s


def value(w: int) -> float:
    return 1.25 * w + 0.5


@pytest.mark.e2e
def test_balancer_reaches_both_nodes_and_passes_requests_untouched(fleet):
    lb = fleet.lb
    assert lb.request("GET", "/readyz").status_code == 200
    # Authorization reaches the API as sent: none, another token, the admin's
    r = lb.request("POST", "/api/v1/tokens", json={"role": "reader"})
    assert r.status_code == 401 and "error" in r.json()
    reader = lb.token_for("reader")  # 201 with the admin token
    assert lb.request("GET", "/api/v1/tokens", reader).status_code == 403
    assert lb.request("GET", "/api/v1/tokens", ADMIN).status_code == 200
    agent = lb.token_for("agent", "lb-01")  # made on one node, valid on both (one metadata)
    t0 = now30() - 30 * 20
    for w in range(4):  # gzip, as agents send
        r = lb.post_samples(agent, "lb-01", [windows_batch(t0, w)])
        assert r.status_code == 200 and r.json() == {"accepted": 30, "windows": 1}, r.text
    used = {addrs for _, addrs, _ in fleet.sample_lines()}
    assert used == {fleet.node_addr(0), fleet.node_addr(1)}, "round robin over both nodes"

    # a large gzipped batch (a few MiB on the wire, over nginx's in-memory body buffer)
    rnd = random.Random(14)
    big_t0 = now30() - 30 * 400
    series = [
        {
            "metric": "ha.big",
            "tags": {"n": str(j)},
            "points": [[big_t0 + k, rnd.random() * 100] for k in range(5000)],
        }
        for j in range(40)
    ]
    raw = orjson.dumps({"host": "lb-big", "series": series})
    body = gzip.compress(raw, compresslevel=6)
    assert len(raw) < Settings().max_body_bytes and len(body) > 2 * 2**20
    big = lb.token_for("agent", "lb-big")
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    r = lb.request("POST", "/api/v1/samples", big, data=body, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 40 * 5000, "windows": 40 * (5000 // 30 + 1)}

    # over the API's limit: the API's own 413 comes back (an agent splits the batch on it);
    # over the balancer's: nginx's 413, in the API's JSON shape
    for size in (Settings().max_body_bytes + 2**20, 17 * 2**20):
        r = lb.request("POST", "/api/v1/samples", big, data=b" " * size, headers=headers)
        assert r.status_code == 413 and r.json()["error"], (size, r.text[:300])


@pytest.mark.e2e
def test_a_post_a_node_dies_on_is_retried_on_the_other_and_reads_back_exactly(fleet):
    lb = fleet.lb
    agent = lb.token_for("agent", "lb-01")
    t0 = now30() - 30 * 20
    for w in range(2):
        assert lb.post_samples(agent, "lb-01", [windows_batch(t0, w)]).status_code == 200
    # Freeze node 2 (master and worker): the kernel still accepts connections for it, so the
    # balancer sends it the next POST and waits. Then kill it: that POST dies unanswered on a
    # node that had it, and nginx sends it again to node 1 (`non_idempotent`).
    victim = fleet.nodes[1].proc
    os.killpg(victim.pid, signal.SIGSTOP)
    codes: dict[int, int] = {}

    def send(w: int) -> None:
        codes[w] = lb.post_samples(agent, "lb-01", [windows_batch(t0, w)]).status_code

    threads = [threading.Thread(target=send, args=(w,)) for w in (2, 3)]
    for th in threads:
        th.start()
    time.sleep(1.0)  # both POSTs sent: one answered by node 1, one waiting on node 2
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(10)
    for th in threads:
        th.join(30)
    assert codes == {2: 200, 3: 200}
    a, b = fleet.node_addr(0), fleet.node_addr(1)
    assert ["200", f"{b},{a}", "502,200"] in fleet.sample_lines(), fleet.sample_lines()
    # node 2 stays down: every write goes to node 1
    for w in range(4, 10):
        assert lb.post_samples(agent, "lb-01", [windows_batch(t0, w)]).status_code == 200
    # every window written through the balancer, exactly as one batch of all samples gives
    reader = lb.token_for("reader")
    q = {"host": "lb-01", "metric": "ha.value", "start": t0, "end": t0 + 300, "resolution": "30s"}
    r = lb.request("GET", "/api/v1/series", reader, params=q)
    assert r.status_code == 200, r.text
    (got,) = r.json()["series"]
    want = [
        {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0 + 30 * w + 30)),
            **dict.fromkeys(("mean", "min", "max", "last"), value(w)),
            "count": 30,
            "covered": 30.0,
        }
        for w in range(10)
    ]
    assert [{k: p[k] for k in want[0]} for p in got["points"]] == want
    # no node left: the contract's 503 with Retry-After, in the API's JSON shape
    stop_gunicorn(fleet.nodes[0].proc, grace=10)
    r = lb.post_samples(agent, "lb-01", [windows_batch(t0, 10)])
    assert r.status_code == 503 and r.headers["Retry-After"] == "5", r.text
    assert r.json()["error"]
    assert requests.get(lb.url + "/healthz", timeout=10).status_code == 503


def test_ci_installs_nginx():
    text = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"(?m)^command -v nginx\b.*\|\| need\+=\(nginx(-light)?\)$", text)
