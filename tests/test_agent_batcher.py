from agent.batcher import Batcher, decode
from agent.samples import Sample


def s(metric, ts, value, **tags):
    return Sample(metric, tags, "percent", ts, value)


def test_one_batch_per_window_with_carry_from_the_previous_batch():
    b = Batcher("web-01", 30.0)
    b.add([s("cpu.percent", t, float(t), cpu="total") for t in (1795463995.0, 1795463999.5)])
    b.add([s("cpu.percent", 1795464001.0, 7.0, cpu="total")])
    assert b.closed(1795463999.9) == []
    assert b.closed(1795464000.0) == [1795463970.0]
    body, carry, n = b.take(1795463970.0)
    first = decode(body)
    assert first["host"] == "web-01" and n == 2
    (series,) = first["series"]
    assert series["metric"] == "cpu.percent" and series["tags"] == {"cpu": "total"}
    assert "carry" not in series
    assert series["points"] == [[1795463995.0, 1795463995.0], [1795463999.5, 1795463999.5]]
    body2, _, _ = b.take(1795464000.0)
    (series2,) = decode(body2)["series"]
    assert series2["carry"] == [1795463999.5, 1795463999.5]
    assert series2["points"] == [[1795464001.0, 7.0]]
    assert list(carry.values()) == [(1795463999.5, 1795463999.5)]


def test_same_window_same_bytes_and_strictly_increasing_timestamps():
    def build():
        b = Batcher("h", 30.0, carry={})
        b.add([s("a", 60.0, 1.0), s("a", 60.0, 2.0), s("a", 59.0, 3.0), s("b", 61.0, 1.0)])
        return b

    b1, b2 = build(), build()
    assert b1.rejected == 2  # same and earlier timestamps of one series are dropped
    assert b1.take(60.0)[0] == b2.take(60.0)[0]  # gzip mtime 0: deterministic bodies


def test_invalid_samples_are_dropped_not_sent():
    b = Batcher("h", 30.0)
    b.add(
        [
            s("Bad-Name", 1.0, 1.0),
            s("ok", 2.0, float("nan")),
            Sample("ok", {"host": "x"}, "", 3.0, 1.0),
            Sample("ok", {f"k{i}": "v" for i in range(9)}, "", 4.0, 1.0),
            s("ok", 5.0, 1.0),
        ]
    )
    assert b.rejected == 4
    assert [x["metric"] for x in decode(b.take(0.0)[0])["series"]] == ["ok"]


def test_carry_restored_after_restart_is_used():
    b = Batcher("h", 30.0, carry={"a\x00{}": (29.0, 5.0)})
    b.add([s("a", 29.0, 1.0), s("a", 31.0, 2.0)])
    (series,) = decode(b.take(30.0)[0])["series"]
    assert series["carry"] == [29.0, 5.0] and series["points"] == [[31.0, 2.0]]
