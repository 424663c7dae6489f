"""Hostile input, by hand: every odd body, header and query gets a clear 4xx and stores nothing.

Runs on each store in STORES (the ``client`` fixture). What test_api.py already covers (the
basic gzip bomb, NaN literals, a bad point of each kind) is not repeated here.
"""

from __future__ import annotations

import gzip
import json
import sqlite3
import subprocess
import sys
import time
import zlib
from typing import Any

import orjson
import pytest
import requests

from tests.conftest import ADMIN, ROOT, now30

AUTH = {"Authorization": f"Bearer {ADMIN}"}
JSON = {**AUTH, "Content-Type": "application/json"}
INJECTION = "x'); DROP TABLE w30;--"


def post_raw(client: Any, body: bytes, **headers: str) -> Any:
    """POST bytes to /samples exactly as given (the helper's json= would re-encode them)."""
    return client.c.post("/api/v1/samples", data=body, headers={**JSON, **headers})


def series(points: list, **extra: Any) -> dict:
    """One series of a valid metric."""
    return {"metric": "cpu.percent", "points": points, **extra}


def assert_error(r: Any, status: int, field: str | None = None) -> dict:
    """The one error shape, the status, and (when given) the field named in details."""
    assert r.status_code == status, (r.status_code, r.get_data()[:500])
    body = r.json
    assert set(body) == {"error", "details"} and body["error"], body
    if field is not None:
        assert any(k == field or k.startswith(field + ".") for k in body["details"]), body
    return body


def assert_nothing_stored(client: Any) -> None:
    """No host has written: the request left no trace in the store."""
    r = client.get("/api/v1/hosts")
    assert r.status_code == 200 and r.json == [], r.json


# ---- bodies that are not what they claim ------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/samples", "/api/v1/tokens"])
@pytest.mark.parametrize("depth", [1025, 100_000])
def test_deep_nesting_is_a_400_not_a_crash(client, path, depth):
    """orjson refuses depth > 1024; the tokens body used the recursive stdlib parser (a 500)."""
    body = b"[" * depth + b"]" * depth
    assert_error(client.c.post(path, data=body, headers=JSON), 400)
    inner = b'{"host": "h", "series": ' + body + b"}"
    assert_error(client.c.post(path, data=inner, headers=JSON), 400)
    assert_nothing_stored(client)
    assert client.get("/api/v1/tokens").json == []


@pytest.mark.parametrize(
    "literal",
    [b"-Infinity", b"nan", b"+1", b"01", b"1.", b".5", b"0x10", b"1e", b"\xef\xbb\xbf1"],
)
def test_json_number_grammar(client, literal):
    """Only JSON numbers: no JavaScript or Python spellings of a value."""
    raw = b'{"host":"h","series":[{"metric":"m","points":[[%d,%s]]}]}' % (now30(), literal)
    assert_error(post_raw(client, raw), 400, "_body")
    assert_nothing_stored(client)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ("é".encode("utf-16"), 400),  # not UTF-8
        (b"\xff\xfe\xfd", 400),
        (b'{"host": "\\ud800", "series": []}', 400),  # a lone surrogate
        (b"", 400),
        (b"null", 400),
        (b'"a string"', 400),
        (b"[]", 400),
        (b"{}" + b" " * 10 + b"{}", 400),  # trailing data
    ],
)
def test_bodies_that_are_not_one_json_object(client, body, status):
    """Whatever the bytes, a 400 in the error shape."""
    assert_error(post_raw(client, body), status)
    assert_nothing_stored(client)


@pytest.mark.parametrize(
    ("ctype", "status"),
    [
        ("text/plain", 415),
        ("application/x-www-form-urlencoded", 415),
        ("application/jsonx", 415),
        ("APPLICATION/JSON", 200),
        ("application/json; charset=utf-8", 200),
    ],
)
def test_content_types(client, ctype, status):
    """Only application/json (any case, any parameters) is read."""
    body = orjson.dumps({"host": "ct", "series": [series([[now30(), 1.0]])]})
    r = client.c.post("/api/v1/samples", data=body, headers={**AUTH, "Content-Type": ctype})
    assert r.status_code == status, r.json
    if status != 200:
        assert_error(r, status)
        assert_nothing_stored(client)


@pytest.mark.parametrize(
    ("encoding", "status"),
    [("GZIP", 200), (" gzip ", 200), ("identity", 200), ("gzip, gzip", 400), ("x-gzip", 400)],
)
def test_content_encodings(client, encoding, status):
    """gzip in any case; stacked or unknown encodings are named in the 400."""
    raw = orjson.dumps({"host": "enc", "series": [series([[now30(), 1.0]])]})
    body = raw if encoding == "identity" else gzip.compress(raw)
    r = post_raw(client, body, **{"Content-Encoding": encoding})
    assert r.status_code == status, r.json
    if status == 400:
        assert_error(r, 400, "Content-Encoding")


def test_gzip_with_a_second_member_is_refused(client):
    """Data after the first gzip member used to be dropped silently; now it is a 400."""
    one = orjson.dumps({"host": "gz2", "series": [series([[now30(), 1.0]])]})
    body = gzip.compress(one) + gzip.compress(b"more")
    assert_error(post_raw(client, body, **{"Content-Encoding": "gzip"}), 400, "_body")
    r = post_raw(client, gzip.compress(one)[:-4], **{"Content-Encoding": "gzip"})
    assert_error(r, 400, "_body")  # truncated trailer
    assert_nothing_stored(client)


def gzip_bomb(gib: int) -> bytes:
    """A ~1 MB-per-GiB gzip body of zeros: one block repeated (full flushes make them equal)."""
    chunk = bytes(1 << 24)
    c = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    head = c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)
    # The trailer's CRC covers 2 blocks only: an inflater that reads it all has used 4 GiB first.
    return head + block * (gib * 64 - 1) + c.flush()


BOMB_SCRIPT = """
import resource, sys, tempfile
from app.web import create_app
d = tempfile.mkdtemp()
app = create_app({"storage_url": f"sqlite:///{d}/b.db", "admin_token": "t", "jobs": False})
c = app.test_client()
body = open(sys.argv[1], "rb").read()
h = {"Authorization": "Bearer t", "Content-Type": "application/json", "Content-Encoding": "gzip"}
c.get("/api/v1/hosts", headers=h)  # warm up: imports and first-request setup
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
r = c.post("/api/v1/samples", data=body, headers=h)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(r.status_code, (after - before) // 1024, r.get_data().decode())
"""


def test_gzip_bomb_of_gigabytes_is_refused_without_inflating_it(tmp_path):
    """4 GiB of zeros in 4 MB of gzip: a 413 after the body limit, with peak memory barely up."""
    bomb = gzip_bomb(4)
    assert len(bomb) < 5_000_000
    path = tmp_path / "bomb.gz"
    path.write_bytes(bomb)
    t0 = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-c", BOMB_SCRIPT, str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split(" ", 2)
    status, grew_mib, body = int(out[0]), int(out[1]), json.loads(out[2])
    assert status == 413 and set(body) == {"error", "details"}, body
    # 8 MiB inflated at most, plus the 4 MB body and its copies; 4 GiB would be 4096.
    assert grew_mib < 64, f"peak RSS grew {grew_mib} MiB"
    assert time.monotonic() - t0 < 30


def test_a_million_points_in_one_series_is_a_413(client, app):
    """Over FLEETPULSE_MAX_POINTS (500,000): a 413 before any point is looked at."""
    settings = app.config["FLEETPULSE"]
    n = 1_000_000
    assert n > settings.max_points
    # [1,1] pairs: 6 bytes a point keeps the body under the 8 MiB body limit.
    raw = b'{"host":"big","series":[{"metric":"m","points":[' + b"[1,1]," * (n - 1) + b"[1,1]]}]}"
    assert len(raw) < settings.max_body_bytes
    body = assert_error(post_raw(client, raw), 413)
    assert str(settings.max_points) in body["error"]
    split = b'{"host":"big","series":[' + b",".join(
        b'{"metric":"m%d","points":[' % i + b"[1,1]," * 99_999 + b"[1,1]]}" for i in range(6)
    )
    r = post_raw(client, split + b"]}")
    assert_error(r, 413)  # the limit is per request, not per series
    assert_nothing_stored(client)


# ---- wrong types everywhere ------------------------------------------------------------------


T = "T"  # replaced by a valid timestamp


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"host": 7, "series": [series([[T, 1]])]}, "host"),
        ({"host": None, "series": [series([[T, 1]])]}, "host"),
        ({"host": ["h"], "series": [series([[T, 1]])]}, "host"),
        ({"host": "", "series": [series([[T, 1]])]}, "host"),
        ({"host": "h" * 129, "series": [series([[T, 1]])]}, "host"),
        ({"host": "web 01", "series": [series([[T, 1]])]}, "host"),
        ({"host": "wéb", "series": [series([[T, 1]])]}, "host"),
        ({"host": "h", "series": {"metric": "m", "points": [[T, 1]]}}, "series"),
        ({"host": "h", "series": "cpu"}, "series"),
        ({"host": "h", "series": ["cpu"]}, "series.0"),
        ({"host": "h", "series": [None]}, "series.0"),
        ({"host": "h", "series": [{"metric": 5, "points": [[T, 1]]}]}, "series.0.metric"),
        ({"host": "h", "series": [{"metric": "CPU", "points": [[T, 1]]}]}, "series.0.metric"),
        ({"host": "h", "series": [series([[T, 1]], tags=["a", "b"])]}, "series.0.tags"),
        ({"host": "h", "series": [series([[T, 1]], tags="cpu=1")]}, "series.0.tags"),
        ({"host": "h", "series": [series([[T, 1]], tags={"cpu": 1})]}, "series.0.tags"),
        ({"host": "h", "series": [series([[T, 1]], tags={"cpu": None})]}, "series.0.tags"),
        ({"host": "h", "series": [series([[T, 1]], tags={"cpu": ""})]}, "series.0.tags"),
        ({"host": "h", "series": [series([[T, 1]], tags={"cpu": "x" * 129})]}, "series.0.tags"),
        ({"host": "h", "series": [series([[T, 1]], tags={"cpu": "a\u00a0b"})]}, "series.0.tags"),
        ({"host": "h", "series": [series([[T, 1]], tags={"cpu": "a\x00"})]}, "series.0.tags"),
        ({"host": "h", "series": [series([[T, 1]], tags={"": "x"})]}, "series.0.tags"),
        ({"host": "h", "series": [series([[T, 1]], tags={"time": "x"})]}, "series.0.tags"),
        ({"host": "h", "series": [series([[T, 1]], unit=5)]}, "series.0.unit"),
        ({"host": "h", "series": [series({"0": [T, 1]})]}, "series.0.points"),
        ({"host": "h", "series": [series([T, 1])]}, "series.0.points"),
        ({"host": "h", "series": [series("[[1,2]]")]}, "series.0.points"),
        ({"host": "h", "series": [series(None)]}, "series.0.points"),
        ({"host": "h", "series": [series([{"t": T, "v": 1}])]}, "series.0.points.0"),
        ({"host": "h", "series": [series([[T, 1, 2]])]}, "series.0.points.0"),
        ({"host": "h", "series": [series([[True, 1]])]}, "series.0.points.0"),
        ({"host": "h", "series": [series([[T, False]])]}, "series.0.points.0"),
        ({"host": "h", "series": [series([[None, 1]])]}, "series.0.points.0"),
        ({"host": "h", "series": [series([[[T], 1]])]}, "series.0.points.0"),
        ({"host": "h", "series": [series([[T, {"v": 1}]])]}, "series.0.points.0"),
        ({"host": "h", "series": [series([[T, 1]], carry={"t": 1, "v": 1})]}, "series.0.carry"),
        ({"host": "h", "series": [series([[T, 1]], carry=[True, 1])]}, "series.0.carry"),
        ({"host": "h", "series": [series([[T, 1]], carry=[1])]}, "series.0.carry"),
        ({"host": "h", "series": [series([[T, 1]])], "extra": 1}, "extra"),
    ],
)
def test_wrong_types_are_named(client, body, field):
    """Each wrong type is a 400 that names its path; nothing of the request is stored."""
    t = now30()
    raw = orjson.dumps(body).replace(b'"T"', str(t).encode())
    assert_error(post_raw(client, raw), 400, field)
    assert_nothing_stored(client)


def test_duplicate_and_unsorted_deep_in_a_long_series(client):
    """One bad point among thousands: named by index, and the good ones are not stored either."""
    t0 = now30() - 3000
    pts = [[t0 + k * 0.5, float(k)] for k in range(5000)]
    pts[4000][0] = pts[3999][0]  # duplicate
    pts[4500], pts[4501] = pts[4501], pts[4500]  # unsorted
    body = assert_error(client.samples("long", [series(pts)]), 400)
    assert set(body["details"]) == {"series.0.points.4000", "series.0.points.4501"}, body
    r = client.samples("long", [series([[t0 + 10, 1.0]], carry=[t0 + 10, 0.5])])
    assert_error(r, 400, "series.0.carry")  # carry at the first point's time is not before it
    assert_nothing_stored(client)


def test_values_too_large_to_aggregate_are_refused(client):
    """1.7e308 is finite, but 30 s of it overflowed to a null mean; now a 400, the limit named."""
    t0 = now30()
    for v in (1.7e308, -1e301):
        body = assert_error(client.samples("big", [series([[t0, v]])]), 400, "series.0.points.0")
        assert "1e+300" in body["details"]["series.0.points.0"][0]
        r = client.samples("big", [series([[t0, 1.0]], carry=[t0 - 5, v])])
        assert_error(r, 400, "series.0.carry")
    assert_nothing_stored(client)
    r = client.samples("big", [series([[t0, 1e300], [t0 + 10, -1e300]], unit="W")])
    assert r.status_code == 200, r.json
    e = client.get("/api/v1/energy", query_string={"host": "big", "start": t0 - 30, "end": t0 + 60})
    assert e.status_code == 200 and e.json["total_wh"] is not None, e.json


# ---- timestamps at the edges -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("ts", "word"),
    [
        (0, "older"),
        (-1e12, "older"),
        (-62135596800, "older"),
        ("1970-01-01T00:00:00Z", "older"),
        ("0001-01-01T00:00:00+00:01", "older"),
        (1e12, "future"),
        (2**63, "future"),
        (1.7e308, "future"),
        ("9999-12-31T23:59:59-12:00", "future"),
        ("NOW+400", "future"),
        ("2026-02-30T00:00:00Z", "RFC 3339"),
        ("2026-11-23T25:00:00Z", "RFC 3339"),
        ("2026-11-23T10:00:00+24:00", "RFC 3339"),
        ("2026-11-23T10:00:00", "RFC 3339"),
        ("1763892000", "RFC 3339"),
        ("", "RFC 3339"),
    ],
)
def test_timestamps_out_of_range(client, ts, word):
    """The epoch, far past and far future, impossible dates: a 400 that says why."""
    if ts == "NOW+400":
        ts = time.time() + 400
    body = assert_error(client.samples("edge", [series([[ts, 1.0]])]), 400, "series.0.points.0")
    assert word in " ".join(body["details"]["series.0.points.0"]), body
    if word != "older":  # old carries are legal: see the next test
        r = client.samples("edge", [series([[now30(), 1.0]], carry=[ts, 1.0])])
        assert_error(r, 400, "series.0.carry")
    assert_nothing_stored(client)


@pytest.mark.parametrize("carry", [0, -1e12, -1e300, "0001-01-01T00:00:00Z", "OLD"])
def test_carry_from_the_distant_past_writes_no_ancient_windows(client, app, carry):
    """An old carry is legal (an agent back after a week) but its hold covers nothing kept now:
    it used to write windows in 1970, year 1 or year -29719 (out of InfluxDB's range)."""
    settings = app.config["FLEETPULSE"]
    if carry == "OLD":
        carry = time.time() - settings.retention_30s - settings.hold - 31
    t0 = now30()
    r = client.samples("back", [series([[t0, 1.0]], carry=[carry, 5.0])])
    assert r.status_code == 200 and r.json == {"accepted": 1, "windows": 1}, r.json
    w = client.series("back", "cpu.percent", t0 - 86400, t0 + 30, resolution="30s").json["series"][
        0
    ]["points"]
    assert [p["time"] for p in w] == [time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0 + 30))]


def test_timestamps_that_are_valid(client):
    """Offsets +14:00 and -12:00, fractions, a few minutes ahead: all the same instants."""
    t0 = now30() - 600

    def iso(t: float, off_h: int) -> str:
        tz = time.gmtime(t + off_h * 3600)
        sign = "+" if off_h >= 0 else "-"
        return time.strftime("%Y-%m-%dT%H:%M:%S", tz) + f".250{sign}{abs(off_h):02d}:00"

    pts = [[iso(t0, 14), 1.0], [iso(t0 + 1, -12), 2.0], [t0 + 2.25, 3.0], [time.time() + 200, 4.0]]
    r = client.samples("when", [series(pts)])
    assert r.status_code == 200, r.json
    got = client.series("when", "cpu.percent", t0, t0 + 30).json["series"][0]["points"]
    assert got[0]["count"] == 3 and got[0]["min"] == 1.0 and got[0]["max"] == 3.0


# ---- unicode and injection: stored verbatim, read back exactly --------------------------------

ODD_VALUES = [
    "温度",
    "🔥🌡️",
    "e\u0301",  # NFD é
    "\u00e9",  # NFC é: a different series
    "עברית",
    "Z̤͔ͧ̑̓ä͖̭̈̇lͮ̒ͫǫ̗̪",
    INJECTION,
    "1; DELETE FROM series",
    "' OR '1'='1",
    '"; drop measurement w30; "',
    "a,b=c d\\ e\\",  # line protocol: comma, equals, space, backslash
    'tag="quoted" field=1i 1700000000000000000',
    "../../etc/passwd",
    "${jndi:ldap://x}",
    "<script>alert(1)</script>",
    "%00%ff",
    " leading and trailing ",
]


def test_odd_tag_values_round_trip_exactly(client, app):
    """Unicode, SQL, InfluxQL and line-protocol text in tags: stored and read back verbatim."""
    t0 = now30() - 120
    body = [
        series([[t0 + 1, float(i)]], tags={"v": v, "k": "x"}, unit="ü")
        for i, v in enumerate(ODD_VALUES)
    ]
    r = client.samples("odd", body)
    assert r.status_code == 200, r.json
    got = client.series("odd", "cpu.percent", t0, t0 + 60).json["series"]
    assert sorted(s["tags"]["v"] for s in got) == sorted(ODD_VALUES)
    assert all(s["unit"] == "ü" for s in got)
    for i, v in enumerate(ODD_VALUES):
        one = client.series("odd", "cpu.percent", t0, t0 + 60, **{"tag.v": v}).json["series"]
        assert [s["tags"] for s in one] == [{"v": v, "k": "x"}], v
        assert one[0]["points"][0]["last"] == float(i)
    state = client.get("/api/v1/hosts/odd").json["series"]
    assert sorted(s["tags"]["v"] for s in state) == sorted(ODD_VALUES)
    assert client.get("/api/v1/hosts").json[0]["series"] == len(ODD_VALUES)
    url = app.config["FLEETPULSE"].storage_url
    if url.startswith("sqlite:"):
        with sqlite3.connect(url[len("sqlite://") :]) as con:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
            assert {"w30", "w30m", "series", "raw"} <= tables
            assert con.execute("SELECT COUNT(*) FROM w30").fetchone()[0] >= len(ODD_VALUES)


@pytest.mark.parametrize("where", ["host", "metric", "tag key"])
def test_injection_in_names_is_refused(client, where):
    """Host, metric and tag keys have strict alphabets: injection text never gets that far."""
    s = series([[now30(), 1.0]])
    host = "h"
    if where == "host":
        host = INJECTION
    elif where == "metric":
        s["metric"] = INJECTION
    else:
        s["tags"] = {INJECTION: "v"}
    assert_error(client.samples(host, [s]), 400)
    assert_nothing_stored(client)


# ---- the read side ---------------------------------------------------------------------------


@pytest.fixture
def written(client) -> int:
    """Twenty samples of one power series on host rd, five minutes ago: something to miss."""
    t0 = now30() - 300
    r = client.samples("rd", [series([[t0 + 10 * k, float(k)] for k in range(20)], unit="W")])
    assert r.status_code == 200, r.json
    return t0


BAD_TIMES = [
    ("", "10"),
    (" ", "10"),
    ("\t100", "200"),
    (" 100 ", "200"),
    ("100\n", "200"),
    ("nan", "10"),
    ("NaN", "10"),
    ("inf", "10"),
    ("-inf", "10"),
    ("Infinity", "10"),
    ("1_000", "2000"),
    ("٣", "200"),  # an Arabic-Indic digit: float() would take it
    ("0x10", "100"),
    ("1e", "100"),
    ("9" * 400, "10"),
    ("1e300", "1e301"),
    ("-1e300", "0"),
    ("1e15", "1000000000000030"),  # year 31 million
    ("-1e12", "-999999999970"),  # year -29719
    ("-62135596801", "-62135596700"),  # just before year 1
    ("253402300799", "253402300830"),  # just after 9999
    ("2026-11-23T10:00:00", "2026-11-23T11:00:00"),  # no offset
    ("2026-11-23", "2026-11-24"),
    ("2026-11-23T10:00:00+24:00", "2026-11-23T11:00:00Z"),
    ("2026-11-23T10:00:00+99:99", "2026-11-23T11:00:00Z"),
    ("0001-01-01T00:00:00+00:01", "0001-01-01T00:10:00Z"),
    ("yesterday", "now"),
    ("100", "100"),  # start == end
    ("200", "100"),  # reversed
    ("2026-11-23T10:00:00Z", "2026-11-23T10:00:00+00:00"),  # equal instants
    ("2026-11-23T10:00:00+14:00", "2026-11-22T20:00:00Z"),  # equal instants
    ("0", str(1800 * 10_001)),  # too many windows, even of 30 minutes
]


@pytest.mark.parametrize("path", ["/api/v1/series", "/api/v1/energy"])
@pytest.mark.parametrize(("start", "end"), BAD_TIMES)
def test_read_time_oddities_are_400s(client, path, start, end):
    """Every odd start/end: a 400 naming start or end (out-of-range years were 500s)."""
    q = {"host": "rd", "start": start, "end": end}
    if path.endswith("series"):
        q["metric"] = "cpu.percent"
    body = assert_error(client.get(path, query_string=q), 400)
    assert {"start", "end"} & set(body["details"]), body
    assert len(body["error"]) < 200, body["error"]


@pytest.mark.parametrize(
    ("start", "end", "first"),
    [
        ("2026-11-23T10:00:00+14:00", "2026-11-23T10:00:00-12:00", "2026-11-22T20:00:00Z"),
        ("2026-11-23T10:00:00.123456789Z", "2026-11-23T10:01:00Z", "2026-11-23T10:00:00.123456Z"),
        ("2026-11-23 10:00:00z", "2026-11-23T10:01:00Z", "2026-11-23T10:00:00Z"),
        ("1.5", "90", "1970-01-01T00:00:01.5Z"),
        ("-30", "0", "1969-12-31T23:59:30Z"),
        ("-0", "30", "1970-01-01T00:00:00Z"),
        ("1e3", "2E3", "1970-01-01T00:16:40Z"),
        ("-62135596800", "-62135596770", "0001-01-01T00:00:00Z"),
        ("253402300000", "253402300799", "9999-12-31T23:46:40Z"),
    ],
)
def test_read_times_that_are_valid(client, start, end, first):
    """Offsets, fractions, the epoch, years 1 and 9999: 200, echoed as RFC 3339 UTC with Z."""
    for path, extra in (("/api/v1/series", {"metric": "cpu.percent"}), ("/api/v1/energy", {})):
        r = client.get(path, query_string={"host": "rd", "start": start, "end": end, **extra})
        assert r.status_code == 200, r.json
        assert r.json["start"] == first, r.json


@pytest.mark.parametrize(
    "query",
    [
        "tag.=x",
        "tag.cpu=",
        "tag.cpu=%00",
        "tag.cpu=%ff%fe",
        "tag.a%20b=x",
        "tag.cpu=" + requests.utils.quote(INJECTION),
        "tag.cpu=x&tag.cpu=y",
        "tag.cpu.total=1",
        "tag." + "k" * 5000 + "=1",
    ],
)
def test_odd_tag_filters_match_nothing(client, written, query):
    """Tag filters are compared as text: odd ones are a 200 with no series, never a 500."""
    t0 = written
    r = client.c.get(
        f"/api/v1/series?host=rd&metric=cpu.percent&start={t0}&end={t0 + 300}&{query}",
        headers=AUTH,
    )
    assert r.status_code == 200, r.json
    assert r.json["series"] == [], r.json


def test_repeated_and_odd_parameters(client, written):
    """A repeated start, a bogus resolution, an unknown parameter: 400s that name them."""
    t0 = written
    base = f"/api/v1/series?host=rd&metric=cpu.percent&start={t0}&end={t0 + 300}"
    for extra, field in (("&resolution=30S", "resolution"), ("&bogus=1", "bogus")):
        assert_error(client.c.get(base + extra, headers=AUTH), 400, field)
    for host in ("", "a b", "x" * 129, INJECTION):
        r = client.get("/api/v1/series", query_string={"host": host, "metric": "m", "start": 0})
        assert_error(r, 400)
    r = client.c.get(base.replace("host=rd", "host=rd&host=other"), headers=AUTH)
    assert r.status_code in (200, 400), r.json  # first value wins or refused: never a 500
    r = client.get("/api/v1/hosts/" + requests.utils.quote(INJECTION, safe=""))
    assert_error(r, 404)
    assert client.get("/api/v1/hosts").json[0]["host"] == "rd"


# ---- a real gunicorn: bodies without a Content-Length ----------------------------------------


@pytest.mark.e2e
def test_chunked_body_over_the_limit_is_a_413(live_api):
    """Chunked transfer (no Content-Length) cannot slip past FLEETPULSE_MAX_BODY_BYTES."""

    def chunks(n: int) -> Any:
        yield b'{"host":"chunk","series":[{"metric":"m","points":['
        for _ in range(n):
            yield b"[1,1]," * 10_000
        yield b"[1,1]]}]}"

    tok = live_api.admin_token
    r = live_api.request(
        "POST",
        "/api/v1/samples",
        tok,
        data=chunks(200),  # 12 MB > 8 MiB
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 413, r.text[:300]
    assert set(r.json()) == {"error", "details"}
    ok = live_api.post_samples(tok, "chunk", [series([[now30(), 1.0]])], gz=False)
    assert ok.status_code == 200, ok.text
    assert [h["host"] for h in live_api.request("GET", "/api/v1/hosts", tok).json()] == ["chunk"]
