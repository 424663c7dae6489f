"""Schemathesis fuzzing from the API's own OpenAPI: never a 5xx, every 4xx in the one error shape.

Bounded for the suite (``MAX_EXAMPLES`` per operation and generation mode, in-process through
the Flask app on each store); ``bench/fuzz.py`` runs many more cases against a real gunicorn.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis import checks as st_checks

from app.web import create_app
from tests.conftest import ADMIN

MAX_EXAMPLES = 30

# Checks that need semantics the schema cannot state (a schema-valid timestamp may be
# older than the retention), so a 400 there is right; everything else stays on.
EXCLUDED = [st_checks.positive_data_acceptance]


def error_shape(ctx: Any, response: Any, case: Any) -> None:
    """Every 4xx (documented or not: 404, 405, 413, 415...) is {"error": str, "details": {}}."""
    if 400 <= response.status_code < 500:
        body = orjson.loads(response.content)
        assert isinstance(body, dict) and set(body) == {"error", "details"}, body
        assert isinstance(body["error"], str) and body["error"], body
        assert isinstance(body["details"], dict), body


def anchor(body: Any, now: float) -> Any:
    """A samples body with its numeric timestamps moved into the accepted range, sorted."""
    if not (isinstance(body, dict) and isinstance(body.get("series"), list)):
        return None
    out = {**body, "series": []}
    for s in body["series"]:
        if not (isinstance(s, dict) and isinstance(s.get("points"), list)):
            return None
        pts: dict[float, Any] = {}
        for p in s["points"]:
            if isinstance(p, list) and len(p) == 2 and type(p[0]) in (int, float):
                pts.setdefault(now - 3000 + math.fmod(abs(p[0]), 2900.0), p[1])
        s = {k: v for k, v in s.items() if k != "carry"}
        s["points"] = [[t, v] for t, v in sorted(pts.items())]
        out["series"].append(s)
    return out


def all_numbers_finite(obj: Any) -> bool:
    """No null/NaN where the contract promises numbers (mean, energy_wh, total_wh...)."""
    if isinstance(obj, dict):
        return all(all_numbers_finite(v) for k, v in obj.items() if k not in ("unit", "tags"))
    if isinstance(obj, list):
        return all(all_numbers_finite(v) for v in obj)
    if isinstance(obj, float):
        return math.isfinite(obj)
    return obj is not None


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


# start/end are plain strings in the OpenAPI, and random strings are almost never times: mix in
# epoch numbers of every size (nan, inf, 1e300, before year 1, after 9999) and RFC 3339 texts.
TIME_TEXT = st.one_of(
    st.floats().map(repr),
    st.integers(min_value=-(10**13), max_value=10**13).map(str),
    st.builds(
        lambda d, off: d.isoformat() + off,
        st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)),
        st.sampled_from(["Z", "+00:00", "+14:00", "-12:00", "+00:01", ""]),
    ),
)


# A start and an end close together anywhere in time, so the range checks pass and the answer
# has to be written: out in year 0 or year 30000 it used to be a 500.
NEAR_PAIR = st.builds(
    lambda a, d: (repr(a), repr(a + d)),
    st.one_of(st.floats(-1e14, 1e14), st.integers(-(10**13), 10**13)),
    st.integers(1, 7200),
)


def times_in_query(context: Any, query: Any) -> st.SearchStrategy:
    """Swap string start/end for real times (strings only: negative cases stay negative)."""
    if not (
        isinstance(query, dict)
        and isinstance(query.get("start"), str)
        and isinstance(query.get("end"), str)
    ):
        return st.just(query)
    # Hypothesis leans to one_of's first branch: the generated strings come last.
    pairs = st.one_of(
        NEAR_PAIR, st.tuples(TIME_TEXT, TIME_TEXT), st.just((query["start"], query["end"]))
    )
    return pairs.map(lambda p: {**query, "start": p[0], "end": p[1]})


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
                    assert schema == {"$ref": error_ref}, (method, path, status, schema)
