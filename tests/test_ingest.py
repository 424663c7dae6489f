"""The envelope loader that remembers accepted series headers answers exactly as the schema."""

from __future__ import annotations

import copy

from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from app.ingest.envelope import EnvelopeLoader
from app.ingest.schema import SamplesIn

SCHEMA = SamplesIn()

values = st.one_of(
    st.none(),
    st.integers(-3, 3),
    st.booleans(),
    st.text(max_size=3),
    st.lists(st.integers(), max_size=2),
)


def mostly(good: st.SearchStrategy, bad: st.SearchStrategy) -> st.SearchStrategy:
    """Valid 9 times in 10, so whole documents are often valid (and remembered)."""
    return st.sampled_from([True] * 9 + [False]).flatmap(lambda ok: good if ok else bad)


def sometimes(key: str, strategy: st.SearchStrategy) -> st.SearchStrategy:
    """A dict with ``key`` (1 time in 10) or without it."""
    return st.sampled_from([0] * 9 + [1]).flatmap(
        lambda on: strategy.map(lambda v: {key: v}) if on else st.just({})
    )


good_tags = st.dictionaries(
    st.sampled_from(["cpu", "gpu", "dev"]), st.sampled_from(["0", "1", "total"]), max_size=2
)
bad_tags = st.one_of(
    st.dictionaries(
        st.sampled_from(["Bad", "host", "x" * 70, "cpu"]),
        st.sampled_from(["", "a\nb", "v" * 130, "0"]),
        min_size=1,
        max_size=2,
    ),
    st.dictionaries(st.sampled_from(["cpu", "dev"]), values, min_size=1, max_size=2),
    st.dictionaries(st.sampled_from([f"k{i}" for i in range(12)]), st.just("v"), min_size=9),
    values,
)


def series_items() -> st.SearchStrategy:
    base = st.fixed_dictionaries(
        {
            "metric": mostly(
                st.sampled_from(["cpu.percent", "mem.used"]), values | st.just("Bad M")
            ),
            "points": mostly(st.just([[1.0, 2.0], [2.0, 3.0]]), values),
        },
        optional={
            "tags": mostly(good_tags, bad_tags),
            "unit": mostly(
                st.sampled_from(["W", "percent"]) | st.none(), values | st.just("u" * 40)
            ),
            "carry": mostly(st.just([0.5, 1.0]), values),
        },
    )
    extra = sometimes("extra", values)
    dropped = st.sampled_from([None] * 18 + ["metric", "points"])
    return st.tuples(base, extra, dropped).map(
        lambda t: {k: v for k, v in {**t[0], **t[1]}.items() if k != t[2]}
    )


def envelopes_() -> st.SearchStrategy:
    base = st.fixed_dictionaries(
        {
            "host": mostly(st.sampled_from(["h1", "web-01.example"]), values | st.just("bad host")),
            "series": mostly(
                st.lists(mostly(series_items(), values), min_size=1, max_size=3),
                values | st.just([]),
            ),
        }
    )
    extra = sometimes("other", values)
    dropped = st.sampled_from([None] * 18 + ["host", "series"])
    return st.tuples(base, extra, dropped).map(
        lambda t: {k: v for k, v in {**t[0], **t[1]}.items() if k != t[2]}
    )


envelopes = envelopes_()


def outcome(load, doc: object) -> tuple[str, object]:
    try:
        return "ok", load(copy.deepcopy(doc))
    except ValidationError as e:
        return "invalid", e.messages


@settings(max_examples=400, deadline=None)
@given(warm=envelopes, doc=envelopes)
def test_loader_answers_as_the_schema_whatever_it_has_seen(warm, doc):
    """Warmed with one document, then asked twice about another: the schema's answer each time."""
    loader = EnvelopeLoader()
    assert outcome(loader.load, warm) == outcome(SCHEMA.load, warm)
    expected = outcome(SCHEMA.load, doc)
    assert outcome(loader.load, doc) == expected
    assert outcome(loader.load, doc) == expected  # the second time from what it remembered
    # and once it knows every header of ``doc`` (each sent alone, with good points): whatever
    # else is wrong with ``doc`` must still be found
    series = doc.get("series") if isinstance(doc, dict) else None
    for item in series if isinstance(series, list) else []:
        if isinstance(item, dict):
            header = {k: v for k, v in item.items() if k in ("metric", "tags", "unit")}
            outcome(loader.load, {"host": "h1", "series": [{**header, "points": [[1, 2]]}]})
    assert outcome(loader.load, doc) == expected


def test_known_headers_skip_the_schema_but_nothing_else_does():
    loader = EnvelopeLoader()
    good = {
        "host": "h1",
        "series": [
            {"metric": "cpu.percent", "tags": {"cpu": "0"}, "unit": "percent", "points": [[1, 2]]}
        ],
    }
    assert loader.load(good) == SCHEMA.load(good)
    assert loader._known(good) is not None  # remembered
    for bad in (
        {**good, "extra": 1},
        {**good, "host": "bad host"},
        {"host": "h1", "series": [{**good["series"][0], "points": None}]},
        {"host": "h1", "series": [{**good["series"][0], "unknown": 1}]},
        {"host": "h1", "series": [{**good["series"][0], "tags": {"cpu": 0}}]},
        {"host": "h1", "series": [{**good["series"][0], "unit": "u" * 33}]},
    ):
        assert loader._known(bad) is None
        assert outcome(loader.load, bad) == outcome(SCHEMA.load, bad)
        assert outcome(loader.load, bad)[0] == "invalid"


def test_the_memory_is_bounded():
    loader = EnvelopeLoader(max_headers=10)
    for k in range(25):
        doc = {"host": "h", "series": [{"metric": f"m.{k}", "points": [[1, 2]]}]}
        loader.load(doc)
        assert len(loader._headers) <= 10
