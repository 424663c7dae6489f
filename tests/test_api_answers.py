"""Answers a user can act on (outside testers' findings): every fault of a batch named at once,
times as precise as sent, errors that say what to do, empty answers that say why."""

from __future__ import annotations

import time

import pytest

from tests.conftest import now30


def series(points, metric="cpu.percent"):
    return {"metric": metric, "tags": {"cpu": "total"}, "unit": "percent", "points": points}


def test_a_refused_batch_names_every_bad_field_at_once(client):
    t0 = now30() - 120
    pts = [[t0, 1.0], [t0 + 1, "high"], [t0 + 3, 2.0], [t0 + 2, 3.0], [time.time() + 3600, 4.0]]
    r = client.samples("web-01", [series(pts)])
    assert r.status_code == 400, r.json
    d = r.json["details"]
    assert d["series.0.points.1"] == ["value must be a number, not a string"]
    assert "strictly greater" in d["series.0.points.3"][0]
    assert "future" in d["series.0.points.4"][0]
    assert set(d) == {"series.0.points.1", "series.0.points.3", "series.0.points.4"}
    assert "3 bad field(s)" in r.json["error"]
    assert client.get("/api/v1/hosts").json == []  # nothing stored


def test_a_bad_timestamp_type_does_not_hide_the_rest(client):
    t0 = now30() - 120
    pts = [[t0, 1.0], [True, 2.0], [t0 + 2, float("1e308")], [t0 + 1.5, 1.0]]
    r = client.samples("web-01", [series(pts)])
    d = r.json["details"]
    assert "not a boolean" in d["series.0.points.1"][0]
    assert "within" in d["series.0.points.2"][0]
    assert "strictly greater" in d["series.0.points.3"][0]
    assert len(d) == 3  # the point after the refused one is not blamed for the order


def test_the_retention_error_shows_a_time_not_an_epoch(client):
    old = time.time() - 30 * 86400
    r = client.samples("web-01", [series([[old, 1.0]])])
    (reason,) = r.json["details"]["series.0.points.0"]
    assert "retention" in reason and "Z" in reason and f"{int(old)}" not in reason


def test_state_table_keeps_the_precision_sent(client):
    t0 = now30() - 120
    ts = t0 + 3.015625
    assert client.samples("prec", [series([[ts, 1.0]])]).status_code == 200
    (s,) = client.get("/api/v1/hosts/prec").json["series"]
    assert s["time"] == time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t0 + 3)) + ".015625Z"


@pytest.mark.parametrize(
    ("start", "hint"),
    [
        ("2026-11-23T10:00:00 00:00", "%2B"),  # a '+' sent unencoded arrives as a space
        (str(int(time.time() * 1000)), "milliseconds"),
    ],
)
def test_time_errors_say_what_to_send(client, start, hint):
    r = client.get(
        "/api/v1/series",
        query_string={"host": "h", "metric": "cpu.percent", "start": start, "end": "1"},
    )
    assert r.status_code == 400
    assert hint in r.json["details"]["start"][0], r.json


def test_missing_start_and_end_are_both_named(client):
    r = client.get("/api/v1/series", query_string={"host": "h", "metric": "cpu.percent"})
    assert r.status_code == 400
    assert {"start", "end"} <= set(r.json["details"])
    assert "start" in r.json["error"] and "end" in r.json["error"]


def test_a_bad_metric_says_which_characters(client):
    q = {"host": "h", "metric": "CPU%", "start": "1", "end": "2"}
    r = client.get("/api/v1/series", query_string=q)
    assert r.json["details"]["metric"] == ["must be 1-128 of a-z 0-9 . _"]


def test_empty_answers_say_why(client):
    t0 = now30() - 120
    assert client.samples("known", [series([[t0, 1.0]])]).status_code == 200
    r = client.series("nobody", "cpu.percent", t0 - 60, t0 + 60)
    assert r.status_code == 200 and r.json["series"] == []
    assert "never written" in r.json["note"]
    r = client.series("known", "cpu.pct", t0 - 60, t0 + 60)
    assert r.status_code == 200 and "cpu.percent" in r.json["note"]
    r = client.get(
        "/api/v1/energy", query_string={"host": "known", "start": t0 - 60, "end": t0 + 60}
    )
    assert r.status_code == 200 and "no power series" in r.json["note"]
    r = client.series("known", "cpu.percent", t0 - 60, t0 + 60, **{"tag.cpu": "99"})
    assert r.json["series"] == [] and "{'cpu': 'total'}" in r.json["note"]
    r = client.series("known", "cpu.percent", t0 - 60, t0 + 60)
    assert "note" not in r.json


def test_order_is_checked_across_a_refused_timestamp(client):
    t0 = now30() - 120
    r = client.samples("web-01", [series([[t0 + 10, 1.0], ["bad", 2.0], [t0 + 5, 3.0]])])
    d = r.json["details"]
    assert "RFC 3339" in d["series.0.points.1"][0]
    assert "strictly greater" in d["series.0.points.2"][0]


def test_a_point_refused_for_its_value_still_has_its_time_checked(client):
    r = client.samples("web-01", [series([[time.time() + 3600, "x"]])])
    reasons = r.json["details"]["series.0.points.0"]
    assert any("not a string" in x or "a string" in x for x in reasons)
    assert any("future" in x for x in reasons), reasons
