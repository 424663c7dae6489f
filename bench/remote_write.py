"""Remote write and OTLP ingest against the JSON path, through one real gunicorn on SQLite.

    python bench/remote_write.py [--hosts 20 --series 500 --samples 4 --rounds 4]

Each request is one host's node_exporter-shaped scrape data (``--series`` series, a third of
them counters, ``--samples`` samples each over 30 s): as Prometheus' remote write (snappy
protobuf), as an OTLP export (protobuf, gauges and cumulative sums) and as our JSON (the same
series and samples, gzip). Prints samples/s per path and the ratio to the JSON path.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import cramjam  # noqa: E402
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (  # noqa: E402
    ExportMetricsServiceRequest,
)

from app.ingest.prompb.remote_pb2 import WriteRequest  # noqa: E402
from bench.ingest import create_tokens, fan_out, start_api  # noqa: E402
from harness.server import LiveApi, stop_gunicorn  # noqa: E402

PATHS = {
    "json": ("/api/v1/samples", {"Content-Type": "application/json", "Content-Encoding": "gzip"}),
    "prom": (
        "/api/v1/prom/write",
        {
            "Content-Type": "application/x-protobuf",
            "Content-Encoding": "snappy",
            "X-Prometheus-Remote-Write-Version": "0.1.0",
        },
    ),
    "otlp": ("/otlp/v1/metrics", {"Content-Type": "application/x-protobuf"}),
}


def shape(series: int) -> list[tuple[str, dict, bool]]:
    """node_exporter-like series: (name, labels, counter?); every third one a counter."""
    out = []
    for i in range(series):
        if i % 3 == 0:
            out.append(("node_cpu_seconds_total", {"cpu": str(i // 24), "mode": f"m{i % 8}"}, True))
        elif i % 3 == 1:
            out.append((f"node_memory_field_{i % 60}_bytes", {"idx": str(i)}, False))
        else:
            out.append((f"node_filesystem_avail_{i % 7}_bytes", {"device": f"sd{i}"}, False))
    return out


def samples_of(i: int, k: int, t: float, counter: bool) -> float:
    return float(1000 * t + i) if counter else float((i * 7 + k) % 100)


def prom_body(host: str, series: list, times: list[float]) -> bytes:
    req = WriteRequest()
    for i, (name, labels, counter) in enumerate(series):
        ts = req.timeseries.add()
        ts.labels.add(name="__name__", value=name)
        ts.labels.add(name="instance", value=f"{host}:9100")
        for k, v in labels.items():
            ts.labels.add(name=k, value=v)
        for k, t in enumerate(times):
            ts.samples.add(timestamp=int(t * 1000), value=samples_of(i, k, t, counter))
    return bytes(cramjam.snappy.compress_raw(req.SerializeToString()))


def otlp_body(host: str, series: list, times: list[float]) -> bytes:
    """One OTLP export: one metric per name, a data point per attribute set and time (as the
    SDKs and the Collector group them)."""
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.add(key="host.name").value.string_value = host
    metrics = rm.scope_metrics.add().metrics
    by_name: dict[str, object] = {}
    for i, (name, labels, counter) in enumerate(series):
        m = by_name.get(name)
        if m is None:
            m = by_name[name] = metrics.add(name=name)
            if counter:
                m.sum.is_monotonic, m.sum.aggregation_temporality = True, 2
        data = m.sum if counter else m.gauge
        for k, t in enumerate(times):
            value = samples_of(i, k, t, counter)
            p = data.data_points.add(time_unix_nano=int(t * 1e9), as_double=value)
            p.start_time_unix_nano = 1
            for key, v in labels.items():
                p.attributes.add(key=key).value.string_value = v
    return req.SerializeToString()


def json_body(host: str, series: list, times: list[float]) -> bytes:
    """Our agents' JSON of the same samples, each series with its carry (as agents send)."""
    step = times[1] - times[0] if len(times) > 1 else 30.0
    before = times[0] - step
    items = [
        {
            "metric": name.lower() + (".rate" if counter else ""),
            "tags": labels,
            "carry": [before, samples_of(i, -1, before, counter)],
            "points": [[t, samples_of(i, k, t, counter)] for k, t in enumerate(times)],
        }
        for i, (name, labels, counter) in enumerate(series)
    ]
    return gzip.compress(json.dumps({"host": host, "series": items}).encode(), 1)


def _client(port: int, path: str, headers: dict, jobs: list, tokens: list, q) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    bad = 0
    for h, body in jobs:
        conn.request("POST", path, body, {**headers, "Authorization": f"Bearer {tokens[h]}"})
        r = conn.getresponse()
        r.read()
        bad += r.status >= 300
    q.put(bad)


def server_cpu(master: int) -> float:
    """CPU seconds used so far by gunicorn's workers (the children of ``master``)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for task in Path(f"/proc/{master}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
            except FileNotFoundError:
                continue
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def run(api: LiveApi, kind: str, args: argparse.Namespace, tokens: list, t_start: float) -> dict:
    """Every host's rounds of one wire format; samples/s over the wall time."""
    make = {"json": json_body, "prom": prom_body, "otlp": otlp_body}[kind]
    series = shape(args.series)
    step = 30 / args.samples
    bodies = [
        (
            h,
            make(
                f"bench-{h:04d}", series, [t_start + 30 * r + k * step for k in range(args.samples)]
            ),
        )
        for r in range(args.rounds)
        for h in range(args.hosts)
    ]
    path, headers = PATHS[kind]
    jobs = [
        (api.port, path, headers, bodies[i :: args.clients], tokens) for i in range(args.clients)
    ]
    cpu = server_cpu(api.proc.pid)
    results, elapsed = fan_out(_client, jobs)
    cpu = server_cpu(api.proc.pid) - cpu
    n = len(bodies) * args.series * args.samples
    return {
        "samples": n,
        "seconds": elapsed,
        "per_s": n / elapsed,
        "per_cpu_s": n / max(cpu, 1e-9),
        "errors": sum(results),
    }


def main() -> None:
    """One gunicorn on SQLite; JSON, remote write and OTLP alternating, each run on its own
    time span; the median of ``--repeat`` runs per path (the machine is shared)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hosts", type=int, default=20)
    p.add_argument("--series", type=int, default=500)
    p.add_argument("--samples", type=int, default=4)
    p.add_argument("--rounds", type=int, default=4, help="30-s requests per host")
    p.add_argument("--repeat", type=int, default=3, help="alternating runs per path")
    p.add_argument("--workers", type=int, default=(os.cpu_count() or 1) + 1)
    p.add_argument("--clients", type=int, default=4)
    args = p.parse_args()
    kinds = ("json", "prom", "otlp")
    span = 30 * (args.rounds + 1)
    out: dict[str, list[dict]] = {k: [] for k in kinds}
    with tempfile.TemporaryDirectory() as d:
        api = start_api(f"sqlite:///{d}/bench.db", Path(d), args.workers)
        try:
            tokens = create_tokens(api.port, args.hosts)
            base = (int(time.time()) // 30 - 2) * 30 - span * len(kinds) * args.repeat
            for rep in range(args.repeat):
                for j, kind in enumerate(kinds):
                    t = base + span * (rep * len(kinds) + j)
                    out[kind].append(run(api, kind, args, tokens, t))
        finally:
            stop_gunicorn(api.proc)
    med = {k: statistics.median(r["per_s"] for r in runs) for k, runs in out.items()}
    cpu = {k: statistics.median(r["per_cpu_s"] for r in runs) for k, runs in out.items()}
    for kind, runs in out.items():
        each = " / ".join(f"{r['per_s']:,.0f}" for r in runs)
        print(
            f"{kind}: median {med[kind]:,.0f} samples/s ({each}; {runs[0]['samples']:,} samples "
            f"a run, {sum(r['errors'] for r in runs)} errors), {med[kind] / med['json']:.2f}x "
            f"JSON; server CPU: {cpu[kind]:,.0f} samples per CPU-second, "
            f"{cpu[kind] / cpu['json']:.2f}x JSON"
        )


if __name__ == "__main__":
    main()
