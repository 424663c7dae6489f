"""Schemathesis fuzzing from the API's own OpenAPI: never a 5xx, every 4xx in the one error shape.

Bounded for the suite (``MAX_EXAMPLES`` per operation and generation mode, in-process through
the Flask app on each store); ``bench/fuzz.py`` runs many more cases against a real gunicorn.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from app.web import create_app
from harness.fuzzing import (
    EXCLUDED,
    INFLUX_PATHS,
    all_numbers_finite,
    anchor,
    error_shape,
    times_in_query,
)
from tests.conftest import ADMIN

MAX_EXAMPLES = 30


@pytest.fixture
def fuzz_app(storage_url: str, tmp_path: Path) -> Iterator[Any]:
    """The app on each store, rate limit off (the fuzzer is one very busy token)."""
    app = create_app(
        {
            "storage_url": storage_url,
            "metadata_path": str(tmp_path / "meta.db"),
            "admin_token": ADMIN,
            "jobs": False,
            "rate_limit": 0,
        }
    )
    yield app
    ext = app.extensions["fleetpulse"]
    ext.store.close()
    ext.meta.close()


def _load_schema() -> Any:
    """The OpenAPI served by the app itself, fuzzed with an admin token in every request."""
    # Loaded at import (schemathesis parametrizes at collection) from an app of its own;
    # each case then goes to ``fuzz_app``, one per store. (schemathesis.pytest.from_fixture
    # would do this lazily, but 4.32 reads pytest's removed Function._nodeid under pytest 9.)
    app = create_app({"storage_url": f"sqlite:///{_SPEC_DIR.name}/spec.db", "jobs": False})
    config = schemathesis.Config.from_dict(
        {
            "headers": {"Authorization": f"Bearer {ADMIN}"},
            "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "database": "none"},
            "phases": {"stateful": {"enabled": False}},
        }
    )
    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app, config=config)


_SPEC_DIR = tempfile.TemporaryDirectory(prefix="fleetpulse-fuzz-")
schema = _load_schema()
schema.hook("flatmap_query")(times_in_query)


@schema.parametrize()
# One app per store for all of an operation's cases: the store filling up is part of the fuzz.
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_openapi_fuzz(case: Any, fuzz_app: Any) -> None:
    """Schema-driven cases, valid and invalid: checked by schemathesis and by the error shape."""
    case.call_and_validate(app=fuzz_app, excluded_checks=EXCLUDED, additional_checks=[error_shape])
    if case.operation.label != "POST /api/v1/samples":
        return
    # The same body moved into the accepted time range, so values reach the aggregation too.
    body = anchor(case.body, time.time())
    if body is None:
        return
    c = fuzz_app.test_client()
    auth = {"Authorization": f"Bearer {ADMIN}"}
    # stdlib json: hypothesis makes integers past 64 bits, which orjson will not write.
    r = c.post(
        "/api/v1/samples", data=json.dumps(body), headers=auth, content_type="application/json"
    )
    assert r.status_code in (200, 400), r.get_data()
    if r.status_code == 400:
        assert set(r.json) == {"error", "details"}
        return
    now = time.time()
    q = {"host": body["host"], "start": now - 3600, "end": now + 60}
    reads = [("/api/v1/energy", q), ("/api/v1/hosts/" + body["host"], {})]
    reads += [("/api/v1/series", {**q, "metric": s["metric"]}) for s in body["series"]]
    for path, params in reads:
        got = c.get(path, query_string=params, headers=auth)
        assert got.status_code == 200, got.get_data()
        assert all_numbers_finite(got.json), got.json


def test_every_error_response_in_the_openapi_is_the_error_shape(fuzz_app):
    """Each documented 4xx/5xx, and the "default" one, is ErrorOut: what the API really sends."""
    spec = fuzz_app.test_client().get("/api/v1/openapi.json").json
    error_ref = "#/components/schemas/ErrorOut"
    influx_ref = "#/components/schemas/InfluxErrorOut"  # ErrorOut plus InfluxDB's keys
    default = spec["components"]["responses"]["DEFAULT_ERROR"]
    assert default["content"]["application/json"]["schema"] == {"$ref": error_ref}
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            if method == "parameters":  # the path's own parameters, not an operation
                continue
            for status, resp in op["responses"].items():
                if status == "default" or int(status) >= 400:
                    if "$ref" in resp:
                        resp = spec["components"]["responses"][resp["$ref"].rsplit("/", 1)[1]]
                    schema = resp["content"]["application/json"]["schema"]
                    ref = influx_ref if path in INFLUX_PATHS and status != "default" else error_ref
                    assert schema == {"$ref": ref}, (method, path, status, schema)
