"""Reads at any resolution (contract section 6): windows of any whole multiple of 30 s, computed
at read time from the finest stored series that divides the step, time-weighted exactly as the
30-minute series; and the same points as CSV. On every store."""

from __future__ import annotations

import csv
import io
import math
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.records import Windows
from app.storage import rollup

FORMS = "whole multiple of 30 s"


def cpu(points, tags=None, unit="percent", metric="cpu.percent"):
    s = {"metric": metric, "tags": tags or {"cpu": "total"}, "unit": unit, "points": points}
    return s


def by_hand(points: list[dict], step: int) -> dict[int, dict]:
    """30-second windows (as the API answers them) recombined into right-labelled steps."""
    out: dict[int, dict] = {}
    for p in points:
        t = int(np.datetime64(p["time"][:-1], "s").astype(np.int64))
        label = math.ceil(t / step) * step
        o = out.setdefault(label, {"int": 0.0, "cov": 0.0, "min": [], "max": [], "count": 0})
        o["int"] += p["mean"] * p["covered"]
        o["cov"] += p["covered"]
        o["min"].append(p["min"])
        o["max"].append(p["max"])
        o["count"] += p["count"]
        o["last"] = p["last"]
    return {
        k: {"mean": o["int"] / o["cov"], "min": min(o["min"]), "max": max(o["max"]),
            "last": o["last"], "count": o["count"], "covered": o["cov"]}
        for k, o in out.items()
    }  # fmt: skip


def answered(points: list[dict]) -> dict[int, dict]:
    return {
        int(np.datetime64(p["time"][:-1], "s").astype(np.int64)): {
            f: p[f] for f in ("mean", "min", "max", "last", "count", "covered")
        }
        for p in points
    }


def assert_same(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for label, fields in want.items():
        for f, v in fields.items():
            assert math.isclose(got[label][f], v, rel_tol=1e-9, abs_tol=1e-9), (label, f)


@pytest.fixture
def filled(client):
    """2.5 to 4.5 hours of a series sampled every 7 s, ending a few minutes ago: (start, end]
    holds at least two 2-hour labels whatever the clock says."""
    end = (int(time.time()) // 30 - 4) * 30
    start = (end - 7200) // 7200 * 7200 - 1800
    pts = [[start + 7.0 * k + 0.5, float((k * 37) % 101)] for k in range(int((end - start) / 7))]
    for a in range(0, len(pts), 500):
        series = cpu(pts[a : a + 500])
        if a:
            series["carry"] = pts[a - 1]
        assert client.samples("rs", [series]).status_code == 200
    return start, end


@pytest.mark.parametrize("res", ["1m", "90s", "5m", "450s", "1h", "2h"])
def test_any_multiple_of_30s_equals_the_30s_windows_recombined(client, filled, res):
    start, end = filled
    step = {"1m": 60, "90s": 90, "5m": 300, "450s": 450, "1h": 3600, "2h": 7200}[res]
    fine = client.series("rs", "cpu.percent", start - 3600, end + 3600, resolution="30s")
    r = client.series("rs", "cpu.percent", start, end, resolution=res)
    assert r.status_code == 200 and r.json["resolution"] == res
    want = {
        k: v for k, v in by_hand(fine.json["series"][0]["points"], step).items() if start < k <= end
    }
    assert len(want) >= 2
    assert_same(answered(r.json["series"][0]["points"]), want)


def test_steps_of_30_minutes_come_from_the_30_minute_series(app, client, filled):
    """2h is computed from the stored 30-minute windows, which the job has refreshed."""
    start, end = filled
    app.extensions["fleetpulse"].store.run_jobs(time.time())
    half = client.series("rs", "cpu.percent", start - 7200, end + 7200, resolution="30m")
    r = client.series("rs", "cpu.percent", start, end, resolution="2h")
    want = {
        k: v for k, v in by_hand(half.json["series"][0]["points"], 7200).items() if start < k <= end
    }
    assert_same(answered(r.json["series"][0]["points"]), want)


@pytest.mark.parametrize("bad", ["45s", "0s", "-30s", "1.5m", "5x", "30S", "m", "1w", "01m"])
def test_resolutions_that_are_not_whole_multiples_of_30s_are_refused(client, bad):
    r = client.series("rs", "cpu.percent", 0, 60, resolution=bad)
    assert r.status_code == 400
    assert FORMS in r.json["details"]["resolution"][0]


def test_more_than_10000_windows_at_any_step_is_refused(client):
    r = client.series("rs", "cpu.percent", 0, 60 * 10_001, resolution="1m")
    assert r.status_code == 400 and "10000" in r.json["error"]
    assert client.series("rs", "cpu.percent", 0, 60 * 10_000, resolution="1m").status_code == 200


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 400), st.floats(1, 30), st.floats(-1e3, 1e3)),
             min_size=1, max_size=60, unique_by=lambda x: x[0]),
    st.sampled_from([60, 90, 150, 300, 1800, 3600, 5400]),
)  # fmt: skip
def test_resample_is_recombining_by_hand(rows, step):
    """The read-time roll-up on its own: any set of windows, any step."""
    rows = sorted(rows)
    t = np.array([1_763_892_000 + 30 * k for k, _, _ in rows], dtype=np.int64)
    cov = np.array([c for _, c, _ in rows])
    mean = np.array([m for _, _, m in rows])
    w = Windows(t, mean, mean - 1, mean + 1, mean, np.ones(len(t), np.int64), cov, mean * cov)
    got = rollup.downsample(w, step)
    points = [
        {"time": str(np.datetime64(int(x), "s")) + "Z", "mean": m, "min": m - 1, "max": m + 1,
         "last": m, "count": 1, "covered": c}
        for x, m, c in zip(t.tolist(), mean.tolist(), cov.tolist(), strict=True)
    ]  # fmt: skip
    want = by_hand(points, step)
    assert got.time.tolist() == sorted(want)
    for i, label in enumerate(got.time.tolist()):
        assert math.isclose(got.mean[i], want[label]["mean"], rel_tol=1e-9, abs_tol=1e-9)
        assert got.covered[i] == pytest.approx(want[label]["covered"])
        assert got.count[i] == want[label]["count"] and got.last[i] == want[label]["last"]


def test_csv_has_one_row_per_window_with_every_tag_as_a_column(client):
    t0 = (int(time.time()) // 30 - 10) * 30
    pts = [[t0 + 10 * k, float(k)] for k in range(9)]
    body = [
        cpu(pts, {"rail": 'cpu,"0"'}, "W", "power.w"),
        cpu(pts, {"rail": "gpu", "mean": "x"}, "W", "power.w"),
    ]
    assert client.samples("csv", body).status_code == 200
    q = {"host": "csv", "metric": "power.w", "start": t0 - 30, "end": t0 + 120}
    r = client.get("/api/v1/series", query_string=q, headers={"Accept": "text/csv"})
    assert r.status_code == 200 and r.mimetype == "text/csv" and r.is_streamed
    table = list(csv.reader(io.StringIO(r.get_data(as_text=True))))
    head = ["time", "host", "metric", "tag.mean", "rail", "unit", "mean", "min", "max", "last",
            "count", "covered", "energy_wh"]  # fmt: skip
    assert table[0] == head
    js = client.series("csv", "power.w", t0 - 30, t0 + 120).json["series"]
    assert len(table) - 1 == sum(len(s["points"]) for s in js)
    rows = [dict(zip(head, row, strict=True)) for row in table[1:]]
    cpu_rows = [row for row in rows if row["rail"] == 'cpu,"0"']  # quoting kept the comma
    (cpu_js,) = [s for s in js if s["tags"]["rail"] == 'cpu,"0"']
    assert len(cpu_rows) == len(cpu_js["points"]) and all(r["tag.mean"] == "" for r in cpu_rows)
    assert {r["tag.mean"] for r in rows if r["rail"] == "gpu"} == {"x"}
    for row, p in zip(cpu_rows, cpu_js["points"], strict=True):
        assert (row["time"], row["unit"], float(row["mean"])) == (p["time"], "W", p["mean"])
        assert float(row["energy_wh"]) == pytest.approx(p["energy_wh"])


def test_csv_of_nothing_is_the_header(client):
    q = {"host": "nobody", "metric": "cpu.percent", "start": 0, "end": 60}
    r = client.get("/api/v1/series", query_string=q, headers={"Accept": "text/csv"})
    assert r.status_code == 200 and r.get_data(as_text=True).startswith("time,host,metric,unit,")
