"""Every pattern in the OpenAPI is an ECMAScript regular expression (what Swagger UI and
generated clients run) that accepts and refuses exactly what the server does. Checked with a
real JavaScript engine: node."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from app.core import names

CANDIDATES = [
    "web-01",
    "a",
    "A.b_c-d",
    "cpu.percent",
    "gpu.mem_used",
    "",
    "web 01",
    "web-01\n",
    "\nweb-01",
    "x" * 128,
    "x" * 129,
    "é",
    "CPU",
    "a/b",
    "a:b",
    "web-01\u2028",
]
# What the server answers for each pattern the OpenAPI shows (None: valid).
SERVER = {names.HOST_PATTERN: names.host_error, names.METRIC_PATTERN: names.metric_error}
NODE = """
const {patterns, candidates} = JSON.parse(require("fs").readFileSync(0, "utf8"));
const out = {};
for (const p of patterns) {
  const plain = new RegExp(p), unicode = new RegExp(p, "u");  // throws if it does not compile
  out[p] = candidates.map((c) => [plain.test(c), unicode.test(c)]);
}
process.stdout.write(JSON.stringify(out));
"""


def patterns_in(spec: object) -> set[str]:
    if isinstance(spec, dict):
        found = {spec["pattern"]} if isinstance(spec.get("pattern"), str) else set()
        return found.union(*(patterns_in(v) for v in spec.values()))
    if isinstance(spec, list):
        return set().union(*(patterns_in(v) for v in spec))
    return set()


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_openapi_patterns_mean_the_same_in_javascript(client):
    spec = client.get("/api/v1/openapi.json").json
    found = patterns_in(spec)
    assert found == set(SERVER), "a pattern the server rule table does not know"
    doc = json.dumps({"patterns": sorted(found), "candidates": CANDIDATES})
    run = subprocess.run(["node", "-e", NODE], input=doc, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout)
    for pattern, check in SERVER.items():
        for cand, (plain, unicode) in zip(CANDIDATES, got[pattern], strict=True):
            accepted = check(cand) is None
            assert plain == unicode == accepted, (pattern, cand, plain, unicode, accepted)
