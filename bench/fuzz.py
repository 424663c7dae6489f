"""The long fuzz: schemathesis cases from the API's own OpenAPI against a real gunicorn.

    python bench/fuzz.py [--examples 300] [--workers 2] [--seed N] [--url http://HOST:PORT]

Starts `gunicorn -c gunicorn.conf.py` on a fresh SQLite store (rate limit off) unless --url is
given, then for every operation and both generation modes (schema-valid and schema-invalid)
sends --examples cases with an admin token and checks each answer: never a 5xx, every 4xx in
the one error shape, documented status codes, headers and response schemas (schemathesis's
checks). Samples bodies are also replayed with their timestamps moved into the accepted range,
so their values reach the aggregation, and read back. Prints cases run, answers by status and
every distinct failure; exits 1 if there was one.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import schemathesis  # noqa: E402
from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402

from bench import ingest  # noqa: E402
from harness.fuzzing import (  # noqa: E402
    EXCLUDED,
    all_numbers_finite,
    anchor,
    error_shape,
    times_in_query,
)
from harness.server import stop_gunicorn  # noqa: E402

ADMIN = "fuzz-admin"


def start_api(workdir: Path, workers: int) -> tuple[subprocess.Popen, str]:
    """gunicorn as users start it, on a free port; rate limiting off for one busy token."""
    api = ingest.start_api(f"sqlite://{workdir}/fuzz.db", workdir, workers, admin=ADMIN)
    return api.proc, api.url


class Tally:
    """Cases run, answers by status, distinct failures (first line of each, with an example)."""

    def __init__(self) -> None:
        self.cases = 0
        self.replays = 0
        self.status: collections.Counter[int] = collections.Counter()
        self.failures: dict[str, str] = {}

    def fail(self, label: str, what: str, example: str) -> None:
        self.failures.setdefault(f"{label}: {what}", example)


def check_case(case: Any, url: str, auth: dict, tally: Tally) -> None:
    """Send one case, run every check on the answer, and replay samples bodies anchored in time."""
    label = case.operation.label
    tally.cases += 1
    try:
        resp = case.call(base_url=url, headers=auth, timeout=30)
    except requests.RequestException as e:
        tally.fail(label, f"no answer: {type(e).__name__}", str(e)[:300])
        return
    tally.status[resp.status_code] += 1
    try:
        case.validate_response(
            resp, excluded_checks=EXCLUDED, additional_checks=[error_shape], headers=auth
        )
    except (Exception, BaseExceptionGroup) as e:  # FailureGroup, or error_shape's assertion
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        tally.fail(label, first[:200], case.as_curl_command(headers=auth)[:600])
    if label != "POST /api/v1/samples":
        return
    body = anchor(case.body, time.time())
    if body is None:
        return
    tally.replays += 1
    r = requests.post(
        url + "/api/v1/samples",
        data=json.dumps(body),
        timeout=30,
        headers={**auth, "Content-Type": "application/json"},
    )
    tally.status[r.status_code] += 1
    shape_ok = r.status_code == 200 or set(r.json()) == {"error", "details"}
    if r.status_code not in (200, 400) or not shape_ok:
        tally.fail(label + " (anchored)", f"answer {r.status_code}", json.dumps(body)[:600])
        return
    if r.status_code != 200:
        return
    now = time.time()
    q = {"host": body["host"], "start": now - 3600, "end": now + 60}
    reads = [("/api/v1/energy", q)]
    # "." and ".." are valid host names, but HTTP clients remove them from a path as dot
    # segments (even as %2E): GET /api/v1/hosts/. cannot be sent by requests at all.
    if set(body["host"]) != {"."}:
        reads.append(("/api/v1/hosts/" + body["host"], {}))
    reads += [("/api/v1/series", {**q, "metric": s["metric"]}) for s in body["series"]]
    for path, params in reads:
        got = requests.get(url + path, params=params, headers=auth, timeout=30)
        tally.status[got.status_code] += 1
        if got.status_code != 200 or not all_numbers_finite(got.json()):
            tally.fail(
                f"GET {path} after anchored samples", f"answer {got.status_code}", got.text[:600]
            )


def fuzz_all(url: str, auth: dict, examples: int, seed_: int, tally: Tally) -> dict[str, int]:
    """Every operation in both generation modes, ``examples`` cases each; cases per op and mode."""
    config = schemathesis.Config.from_dict({"headers": auth})
    schema = schemathesis.openapi.from_url(url + "/api/v1/openapi.json", config=config)
    schema.hook("flatmap_query")(times_in_query)
    per_op = {}
    for result in schema.get_all_operations():
        op = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            before = tally.cases

            @settings(
                max_examples=examples,
                database=None,
                deadline=None,
                phases=[Phase.explicit, Phase.generate],  # no shrinking: count, go on
                suppress_health_check=list(HealthCheck),
            )
            @given(case=op.as_strategy(generation_mode=mode))
            def run(case: Any) -> None:
                check_case(case, url, auth, tally)

            # GET /hosts etc.: no schema-invalid input exists
            with contextlib.suppress(Unsatisfiable):
                seed(seed_)(run)()
            per_op[f"{op.label} ({mode.value})"] = tally.cases - before
    return per_op


def main() -> int:
    """Fuzz a fresh gunicorn (or --url), print the tally; 1 if anything failed."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=300, help="cases per operation and mode")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0, help="hypothesis seed (runs are repeatable)")
    ap.add_argument(
        "--url",
        default=None,
        help="fuzz a running server (its admin token: env "
        "FLEETPULSE_ADMIN_TOKEN) instead of starting one",
    )
    args = ap.parse_args()

    proc = None
    token = ADMIN
    with tempfile.TemporaryDirectory(prefix="fleetpulse-fuzz-") as tmp:
        if args.url:
            url, token = args.url.rstrip("/"), os.environ["FLEETPULSE_ADMIN_TOKEN"]
        else:
            proc, url = start_api(Path(tmp), args.workers)
        auth = {"Authorization": f"Bearer {token}"}
        try:
            tally = Tally()
            t0 = time.perf_counter()
            per_op = fuzz_all(url, auth, args.examples, args.seed, tally)
            elapsed = time.perf_counter() - t0
        finally:
            if proc is not None:
                stop_gunicorn(proc)

    for name, n in per_op.items():
        print(f"  {n:6d}  {name}")
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(tally.status.items()))
    print(f"cases: {tally.cases} (+{tally.replays} anchored samples replays) in {elapsed:.1f} s")
    print(f"answers by status: {statuses}")
    print(f"distinct failures: {len(tally.failures)}")
    for what, example in tally.failures.items():
        print(f"- {what}\n    {example}")
    return 1 if tally.failures else 0


if __name__ == "__main__":
    sys.exit(main())
