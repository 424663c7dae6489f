import json
import random

from agent.batcher import decode, encode
from agent.sender import Delivery, HttpClient, parse_retry_after, split_body
from agent.spool import Spool


def body(window, n_series=1):
    series = [
        {"metric": f"m{i}", "tags": {}, "unit": "", "points": [[window + 1, 1.0]]}
        for i in range(n_series)
    ]
    return encode({"host": "h", "series": series})


def make(tmp_path, url, timeout=2.0):
    spool = Spool(tmp_path / "spool")
    return spool, Delivery(spool, HttpClient(url, "tok", timeout), rng=random.Random(1))


def test_delivers_oldest_first_gzip_auth_on_one_keepalive_connection(tmp_path, fake_api):
    spool, d = make(tmp_path, fake_api.url + "/")
    spool.put(60.0, body(60.0), {})
    spool.put(30.0, body(30.0), {})
    spool.put(90.0, body(90.0), {})
    while d.step() == 0.0:
        pass
    got = fake_api.delivered()
    assert [r["body"]["series"][0]["points"][0][0] for r in got] == [31.0, 61.0, 91.0]
    assert all(r["path"] == "/api/v1/samples" for r in got)
    assert all(r["headers"]["Content-Encoding"] == "gzip" for r in got)
    assert all(r["headers"]["Authorization"] == "Bearer tok" for r in got)
    assert fake_api.connections == 1
    assert spool.pending() == 0


def test_refused_connection_keeps_batch_and_backs_off_with_jitter(tmp_path, closed_port_url):
    spool, d = make(tmp_path, closed_port_url)
    spool.put(30.0, body(30.0), {})
    delays = [d.step() for _ in range(6)]
    assert spool.pending() == 1
    assert 0.5 <= delays[0] <= 1.0 and 16 <= delays[5] <= 32  # exponential, jittered
    assert len(set(delays)) == 6


def test_timeout_keeps_batch_then_resends_identical_bytes(tmp_path, fake_api):
    spool, d = make(tmp_path, fake_api.url, timeout=0.3)
    spool.put(30.0, body(30.0), {})
    fake_api.script.append(("sleep", 1.0))
    assert d.step() > 0
    assert spool.pending() == 1
    assert d.step() == 0.0 and spool.pending() == 0
    assert fake_api.received[0]["raw"] == fake_api.received[1]["raw"]


def test_503_and_429_honour_retry_after(tmp_path, fake_api):
    spool, d = make(tmp_path, fake_api.url)
    spool.put(30.0, body(30.0), {})
    fake_api.script.extend(
        [("status", 503, {"Retry-After": "7"}), ("status", 429, {"Retry-After": "12"})]
    )
    assert d.step() >= 7.0
    assert d.step() >= 12.0
    assert spool.pending() == 1
    assert d.step() == 0.0 and spool.pending() == 0 and d.failures == 0


def test_500_and_dying_server_keep_the_batch(tmp_path, fake_api):
    spool, d = make(tmp_path, fake_api.url)
    spool.put(30.0, body(30.0), {})
    fake_api.script.extend([("status", 500), ("die",), ("die",)])
    assert d.step() > 0
    # a death on the kept-alive connection gets one fresh connection at once; it dies too
    assert d.step() > 0
    assert spool.pending() == 1
    assert d.step() == 0.0 and spool.pending() == 0
    assert len(fake_api.received) == 4
    assert len({r["raw"] for r in fake_api.received}) == 1  # always byte-identical


def test_400_goes_to_dead_letter_with_reason_and_is_not_retried(tmp_path, fake_api):
    spool, d = make(tmp_path, fake_api.url)
    spool.put(30.0, body(30.0), {})
    spool.put(60.0, body(60.0), {})
    fake_api.script.append(("status", 400))
    assert d.step() == 0.0
    assert d.step() == 0.0
    assert d.step() is None
    assert len(fake_api.received) == 2 and spool.pending() == 0
    (reason,) = (tmp_path / "spool" / "deadletter").glob("*.reason.json")
    assert json.loads(reason.read_text())["status"] == 400
    (dead,) = (tmp_path / "spool" / "deadletter").glob("*.json.gz")
    assert dead.read_bytes() == body(30.0)


def test_401_is_kept_and_retried(tmp_path, fake_api, caplog):
    spool, d = make(tmp_path, fake_api.url)
    spool.put(30.0, body(30.0), {})
    fake_api.script.append(("status", 401))
    assert d.step() > 0 and spool.pending() == 1
    assert any(r.levelname == "ERROR" and "401" in r.message for r in caplog.records)
    assert d.step() == 0.0 and spool.pending() == 0


def test_413_splits_by_series_keeping_each_series_whole(tmp_path, fake_api):
    spool, d = make(tmp_path, fake_api.url)
    original = body(30.0, n_series=5)
    spool.put(30.0, original, {})
    spool.put(60.0, body(60.0), {})
    fake_api.script.append(("status", 413))
    while d.step() == 0.0:
        pass
    got = [r["body"] for r in fake_api.delivered()]
    assert [len(b["series"]) for b in got] == [2, 3, 1]  # halves first, still oldest first
    assert [s for b in got[:2] for s in b["series"]] == decode(original)["series"]
    assert split_body(body(1.0)) is None


def test_retry_after_parsing():
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("soon") is None


def test_tls_is_verified_by_default_and_a_ca_file_makes_it_trusted(tmp_path, tls_api):
    api, ca_file = tls_api
    spool = Spool(tmp_path / "spool")
    spool.put(30.0, body(30.0), {})
    untrusted = Delivery(spool, HttpClient(api.url, "tok", 2.0), rng=random.Random(1))
    assert untrusted.step() > 0  # self-signed: refused by the default verification
    assert spool.pending() == 1 and api.received == []
    trusted = Delivery(spool, HttpClient(api.url, "tok", 2.0, ca_file), rng=random.Random(1))
    assert trusted.step() == 0.0 and spool.pending() == 0
    assert api.delivered()[0]["body"]["series"][0]["points"] == [[31.0, 1.0]]
