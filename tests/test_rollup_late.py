"""The 30-minute series (CONTRACT.md section 5) when 30-second points come late or no refresh
has run yet, on every store: late windows are recomputed whatever their age, and a 30-minute
read includes the windows no refresh has reached, computed from the 30-second points."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from tests.conftest import now30

H = 1800


def cpu(points, carry=None):
    s = {"metric": "cpu.percent", "tags": {"cpu": "total"}, "unit": "percent", "points": points}
    if carry is not None:
        s["carry"] = carry
    return s


def window_points(t_start: int, n: int, seed: int) -> list[list[float]]:
    rng = np.random.default_rng(seed)
    return [[t_start + 7.5 * k, float(v)] for k, v in enumerate(rng.uniform(0, 100, n))]


def by_hand(w30) -> dict[int, dict]:
    """30-second windows recombined into 30-minute ones, written out from the contract."""
    out: dict[int, dict] = {}
    for i in range(len(w30.time)):
        label = math.ceil(int(w30.time[i]) / H) * H
        o = out.setdefault(label, {"int": 0.0, "cov": 0.0, "min": [], "max": [], "count": 0})
        o["int"] += w30.integral[i]
        o["cov"] += w30.covered[i]
        o["min"].append(w30.min[i])
        o["max"].append(w30.max[i])
        o["count"] += int(w30.count[i])
        o["last"] = w30.last[i]
    return {
        k: {
            "mean": o["int"] / o["cov"],
            "min": min(o["min"]),
            "max": max(o["max"]),
            "last": o["last"],
            "count": o["count"],
            "covered": o["cov"],
        }
        for k, o in out.items()
    }


def stored(store, host: str, start: float, end: float, res: str):
    """What the store itself holds (no read-time computation)."""
    found = store.registry.find(host, "cpu.percent", {}, None)
    (w,) = store.read_series(host, found, start, end, res)
    return w


def as_dict(w) -> dict[int, dict]:
    return {
        int(w.time[i]): {
            f: float(getattr(w, f)[i]) for f in ("mean", "min", "max", "last", "covered")
        }
        | {"count": int(w.count[i])}
        for i in range(len(w.time))
    }


def assert_windows(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for label, fields in want.items():
        for f, v in fields.items():
            assert math.isclose(got[label][f], v, rel_tol=1e-9, abs_tol=1e-9), (label, f)


def test_late_windows_are_recomputed_whatever_their_age(app, client):
    store = app.extensions["fleetpulse"].store
    base = (int(time.time()) // H - 6) * H  # a 30-minute window three hours back and more
    first = window_points(base, 120, 1)  # the window's first 15 minutes
    second = window_points(base + 900, 120, 2)  # its last 15, sent after an outage
    assert client.samples("late", [cpu(first)]).status_code == 200
    found = store.registry.find("late", "cpu.percent", {}, None)
    assert store.registry.late.pending([f[0] for f in found], 0, 2e10) == {found[0][0]: {base + H}}
    store.run_jobs(time.time())
    assert client.samples("late", [cpu(second, carry=first[-1])]).status_code == 200
    store.run_jobs(time.time())
    w30 = stored(store, "late", base - 60, base + H + 60, "30s")
    want = by_hand(w30)
    assert want[base + H]["count"] == 240
    assert_windows(as_dict(stored(store, "late", base - 60, base + 2 * H, "30m")), want)
    assert store.registry.late.pending([f[0] for f in found], 0, 2e10) == {}


def test_recent_writes_mark_nothing(app, client):
    store = app.extensions["fleetpulse"].store
    t0 = now30() - 120
    assert client.samples("fresh", [cpu(window_points(t0, 12, 3))]).status_code == 200
    found = store.registry.find("fresh", "cpu.percent", {}, None)
    assert store.registry.late.pending([f[0] for f in found], 0, 2e10) == {}


def test_a_30m_read_before_any_refresh_has_the_windows(client, app):
    """A fresh install: no job has run, the 30-minute read is still answered."""
    store = app.extensions["fleetpulse"].store
    now = time.time()
    start = (int(now) // 30 - 100) * 30  # the last ~50 minutes, every 7.5 s
    pts = [[start + 7.5 * k, float(k % 17)] for k in range(int((now - 60 - start) / 7.5))]
    for a in range(0, len(pts), 100):
        carry = pts[a - 1] if a else None
        assert client.samples("new", [cpu(pts[a : a + 100], carry)]).status_code == 200
    r = client.series("new", "cpu.percent", start - H, int(now) + H, resolution="30m")
    assert r.status_code == 200 and r.json["resolution"] == "30m"
    (series,) = r.json["series"]
    got = {
        int(np.datetime64(p["time"][:-1], "s").astype(np.int64)): {
            f: p[f] for f in ("mean", "min", "max", "last", "covered", "count")
        }
        for p in series["points"]
    }
    want = by_hand(stored(store, "new", start - H, int(now) + H, "30s"))
    assert len(want) >= 2
    assert_windows(got, want)


@pytest.mark.parametrize("late", [False, True])
def test_a_30m_read_shows_late_windows_before_the_job(client, app, late):
    store = app.extensions["fleetpulse"].store
    base = (int(time.time()) // H - 8) * H
    first = window_points(base, 60, 4)
    assert client.samples("lr", [cpu(first)]).status_code == 200
    store.run_jobs(time.time())
    if late:
        more = window_points(base + 600, 60, 5)
        assert client.samples("lr", [cpu(more, carry=first[-1])]).status_code == 200
    r = client.series("lr", "cpu.percent", base, base + H, resolution="30m")
    (p,) = r.json["series"][0]["points"]
    want = by_hand(stored(store, "lr", base - 60, base + H, "30s"))[base + H]
    assert p["count"] == want["count"] == (120 if late else 60)
    assert math.isclose(p["mean"], want["mean"], rel_tol=1e-9)


def test_a_gap_in_the_job_is_caught_up(app, client):
    """The job last ran three hours ago (a stopped server, a failing thread): its next run
    re-covers everything since, not only the last hour."""
    store = app.extensions["fleetpulse"].store
    now = time.time()
    store.run_jobs(now - 3 * 3600)
    start = (int(now) // 30 - 20) * 30  # the last 10 minutes: recent, so marked nothing
    pts = window_points(start, 60, 6)
    assert client.samples("gap", [cpu(pts)]).status_code == 200
    store.run_jobs(now + 2 * 3600)  # the next run, two hours later
    want = by_hand(stored(store, "gap", start - H, start + 2 * H, "30s"))
    assert_windows(as_dict(stored(store, "gap", start - H, start + 2 * H, "30m")), want)


def test_a_mark_made_again_while_the_job_runs_survives(app, client):
    """The job clears only the marks it recomputed: a window marked late again after the job
    took its marks stays marked for the next run (a counter, whatever the clock does)."""
    store = app.extensions["fleetpulse"].store
    base = (int(time.time()) // H - 10) * H
    first = window_points(base, 10, 7)
    assert client.samples("race", [cpu(first)]).status_code == 200
    taken = store.registry.late.take()
    assert (
        client.samples("race", [cpu(window_points(base + 300, 10, 8), first[-1])]).status_code
        == 200
    )
    store.registry.late.clear(taken)
    sids = [f[0] for f in store.registry.find("race", None, {}, None)]
    assert store.registry.late.pending(sids, 0, 2e10) == {sids[0]: {base + H}}


def test_late_windows_of_one_host_leave_the_others_alone(app, client):
    """The recompute is per host: another host's stored 30-minute window is not rewritten."""
    store = app.extensions["fleetpulse"].store
    base = (int(time.time()) // H - 12) * H
    for host, seed in (("one", 9), ("two", 10)):
        assert client.samples(host, [cpu(window_points(base, 20, seed))]).status_code == 200
    store.run_jobs(time.time())
    before = as_dict(stored(store, "two", base, base + H, "30m"))
    more = window_points(base + 600, 20, 11)
    assert client.samples("one", [cpu(more)]).status_code == 200
    counts = store.run_jobs(time.time())
    assert counts["late"] == 1  # one window of one series of one host: "two" is not rewritten
    assert as_dict(stored(store, "two", base, base + H, "30m")) == before
    want = by_hand(stored(store, "one", base - 60, base + H, "30s"))
    assert_windows(as_dict(stored(store, "one", base, base + H, "30m")), want)
