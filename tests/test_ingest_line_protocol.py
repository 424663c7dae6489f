"""The line protocol decoder (app/ingest/line_protocol.py): the grammar's corner cases through
the C parser and what we wrap of it, names, timestamps in every precision at the edges, the
per-line refusals, and a hypothesis oracle (points formatted with escaping, parsed back)."""

from __future__ import annotations

import gzip
import math
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from app.core.errors import Invalid, TooLarge
from app.ingest import Limits
from app.ingest.line_protocol import PRECISION_V1, PRECISION_V2, LineProtocol, precision_units

NOW = 1_800_000_000.0
T = 1_799_999_900  # a recent whole second


def decode(text: str | bytes, per_second: int = 1, host: str | None = "h", **kw):
    body = text.encode() if isinstance(text, str) else text
    limits = Limits(**kw)
    return LineProtocol(limits).decode(body, None, per_second, NOW, host)


def samples(out) -> dict:
    """{(host, metric, tags): [(t, v), ...]} of every batch."""
    got = {}
    for b in out.batches:
        for k, key in enumerate(b.keys):
            pick = b.sid == k
            pts = [(float(t), float(v)) for t, v in zip(b.ts[pick], b.val[pick], strict=True)]
            got[(b.host, key[0], key[1])] = pts
    return got


def one(text: str, **kw) -> dict:
    out = decode(text, **kw)
    assert out.dropped == 0, out.message()
    return samples(out)


@pytest.mark.parametrize(
    ("line", "metric", "tags", "value"),
    [
        (f"cpu,cpu=cpu-total usage_idle=97.5 {T}", "cpu.usage_idle", (("cpu", "cpu-total"),), 97.5),
        (rf"cp\,u\ x f=1 {T}", "cp_u_x.f", (), 1.0),
        (rf"cp\=u f=1 {T}", "cp__u.f", (), 1.0),  # = needs no escape in a measurement: kept
        (rf"m,t\,a\ g\=k=v\,a\ l\=ue f=1 {T}", "m.f", (("t_a_g_k", "v,a l=ue"),), 1.0),
        (rf"m f\,i\ e\=ld=2 {T}", "m.f_i_e_ld", (), 2.0),
        (f"m f=3i {T}", "m.f", (), 3.0),
        (f"m f=-3i {T}", "m.f", (), -3.0),
        (f"m f=18446744073709551615u {T}", "m.f", (), 18446744073709551615.0),
        (f"m f=1e3 {T}", "m.f", (), 1000.0),
        (f"m f=-1.5E-3 {T}", "m.f", (), -0.0015),
        (f"m f=+2.5e+2 {T}", None, None, None),  # a leading + is not line protocol
        (f"m f=.5 {T}", "m.f", (), 0.5),
        (f"m f=1 {T}\r", "m.f", (), 1.0),
        (f'm s="a \\"q\\" b\\\\c, d=e",f=4 {T}', "m.f", (), 4.0),
        (f"CPU,Core-ID=1 Usage%=3 {T}", "cpu.usage_", (("core_id", "1"),), 3.0),
        (f"  m f=1 {T}", "m.f", (), 1.0),
    ],
)
def test_grammar_corner_cases(line, metric, tags, value):
    out = decode(line)
    if metric is None:
        assert out.dropped == 1 and not out.batches
        return
    assert samples(out) == {("h", metric, tags): [(float(T), value)]}, out.message()


@pytest.mark.parametrize("word", ["t", "T", "true", "True", "TRUE", "f", "F", "false", "False"])
def test_every_boolean_form(word):
    got = one(f"m b={word} {T}")
    assert got[("h", "m.b", ())] == [(T, 1.0 if word[0] in "tT" else 0.0)]


def test_false_upper_and_bad_booleans():
    assert one(f"m b=FALSE {T}")[("h", "m.b", ())] == [(T, 0.0)]
    for word in ("tRUE", "yes", "1b"):
        assert decode(f"m b={word} {T}").dropped == 1


def test_a_string_field_may_hold_raw_newlines():
    got = one(f'm s="a\nb\n\nc",f=1 {T}\nm f=2 {T + 1}\nm s="x\n" {T + 2}')
    assert got[("h", "m.f", ())] == [(T, 1.0), (T + 1, 2.0)]
    out = decode(f'm s="never closed,f=1 {T}\nm f=2 {T + 1}')
    assert [n for n, _ in out.refused] == [1] and out.samples == 1


def test_blank_comment_crlf_and_string_only_lines():
    text = f'# a comment\r\n\r\n   \n  # indented\nm f=1 {T}\r\nm s="only a string" {T}\r\n'
    out = decode(text)
    assert out.dropped == 0 and samples(out) == {("h", "m.f", ()): [(T, 1.0)]}
    assert decode("# nothing\n\n").batches == []


def test_no_timestamp_takes_the_server_time():
    assert one("m f=1")[("h", "m.f", ())] == [(NOW, 1.0)]


def test_repeated_field_last_wins_where_the_parser_keeps_the_first():
    assert one(f"m f=1,g=2,f=3 {T}")[("h", "m.f", ())] == [(T, 3.0)]
    # an = inside a string or an escape takes the slow path and changes nothing
    got = one(f'm,k\\=x=v s="a=b",f=5 {T}')
    assert got == {("h", "m.f", (("k_x", "v"),)): [(T, 5.0)]}


def test_types_may_change_between_lines_and_become_numbers():
    got = one(f'm f=1i {T}\nm f=2.5 {T + 1}\nm f=true {T + 2}\nm f="s" {T + 3}')
    assert got[("h", "m.f", ())] == [(T, 1.0), (T + 1, 2.5), (T + 2, 1.0)]


def test_sorted_per_series_and_the_last_duplicate_wins():
    got = one(f"m f=3 {T + 20}\nm f=1 {T}\nm f=2 {T + 10}\nm f=9 {T}\nm g=1,f=7 {T + 10}")
    assert got[("h", "m.f", ())] == [(T, 9.0), (T + 10, 7.0), (T + 20, 3.0)]


def test_several_hosts_one_batch_each_with_server_carry():
    out = decode(f"m,host=b f=1 {T}\nm,host=a f=2 {T}\nm f=3 {T}", host="a")
    assert [b.host for b in out.batches] == ["a", "b"]
    assert all(b.server_carry and np.isnan(b.carry_ts).all() for b in out.batches)
    assert samples(out)[("a", "m.f", ())] == [(T, 2.0), (T, 3.0)][1:]  # same time: last wins
    assert out.hosts == {"a", "b"}


@pytest.mark.parametrize(
    ("line", "word"),
    [
        (f"m f=1 {T}", "no host tag"),  # with an admin token (no default host)
        (f"m,host=bad/name f=1 {T}", "host tag"),
        ("m," + ",".join(f"t{i}=v" for i in range(9)) + f",host=h f=1 {T}", "at most 8"),
        (f"m,time=x,host=h f=1 {T}", "reserved"),
        (f"m,Host=x,host=h f=1 {T}", "reserved"),
        (f"m,a=x,A=y,host=h f=1 {T}", "both become 'a'"),
        (f"m,a=x\ty,host=h f=1 {T}", "printable"),
        (f"m,a={'v' * 129},host=h f=1 {T}", "1-128"),
        (f"{'m' * 120},host=h field_name=1 {T}", "1-128 of a-z"),
        (f"m,host=h f=1e301 {T}", "within"),
        (f"m,host=h f=1.7976931348623157e308 {T}", "within"),
        (f"m,host=h f=1,F=2 {T}", "collides with"),
        (f"m,host=h f=1 {T}.5", "unable to parse"),
        (f"m,host=h f=1 {T} extra", "unable to parse"),
        ("m,host=h f=1 9223372036854775807", "unable to parse"),
        (f"m,host=h f=1\x00 {T}", "unable to parse"),
        (f"m,a=x\\\\,host=h f=1 {T}", "unable to parse"),  # the C parser's limit (see DESIGN)
        ("m,host=h", "unable to parse"),
        (f"m,host=h f= {T}", "unable to parse"),
        (f"m,host=h f=1 {T - 8 * 86400}", "retention"),
        (f"m,host=h f=1 {int(NOW) + 301}", "future"),
    ],
)
def test_refused_lines_name_why_and_the_rest_stands(line, word):
    out = decode(f"ok,host=h f=1 {T}\n{line}\nok,host=h g=2 {T}", host=None)
    assert out.dropped == 1 and [n for n, _ in out.refused] == [2], out.message()
    assert word in out.refused[0][1]
    assert out.message().startswith("partial write: line 2: ")
    assert out.message().endswith(" dropped=1")
    assert set(samples(out)) == {("h", "ok.f", ()), ("h", "ok.g", ())}


def test_names_colliding_after_normalisation_refuse_the_later_lines():
    out = decode(f"cpu f=1 {T}\nCPU f=2 {T + 1}\ncpu f=3 {T + 2}")
    assert [n for n, _ in out.refused] == [2]
    assert "'cpu' field 'f' (line 1)" in out.refused[0][1]
    assert samples(out)[("h", "cpu.f", ())] == [(T, 1.0), (T + 2, 3.0)]


def test_not_utf8_refuses_that_line_only():
    out = decode(b"m f=1 %d\nm\xff f=2 %d\n\xef\xbb\xbfm g=3 %d" % (T, T, T))
    assert [(n, why) for n, why in out.refused] == [(2, "not valid UTF-8")]
    assert decode(b"\xef\xbb\xbfm f=1 %d" % T).dropped == 0  # a leading BOM is dropped


@pytest.mark.parametrize("unit", sorted(PRECISION_V1))
def test_precisions_at_the_edges_of_retention_and_horizon(unit):
    per = PRECISION_V1[unit]
    limits = {"retention_30s": 3600.0, "future_slack": 300.0}
    scale = per if per > 0 else 1 / -per  # units per second
    old_edge = NOW - 3600  # whole seconds, hence whole units in every precision
    new_edge = NOW + 300 if per > 0 or 300 % -per == 0 else NOW + 300 - 300 % -per
    lines = [
        f"m a={k} {round(t * scale)}"
        for k, t in enumerate([old_edge, new_edge, old_edge - 3600, NOW + 3600])
    ]
    out = decode("\n".join(lines), per_second=per, **limits)
    assert [n for n, _ in out.refused] == [3, 4], out.message()
    assert samples(out)[("h", "m.a", ())] == [(old_edge, 0.0), (new_edge, 1.0)]
    if per > 1:  # one unit past either edge is refused too
        inside = decode(f"m a=1 {round(old_edge * per) - 1}", per_second=per, **limits)
        assert inside.dropped == 1


def test_nanoseconds_are_divided_exactly():
    out = one("m f=1 1799999999123456789", per_second=10**9)
    ((t, _),) = out[("h", "m.f", ())]
    assert t == 1799999999 + 0.123456789 and t == 1799999999.123456789


def test_precision_names():
    assert precision_units(None, PRECISION_V2) == 10**9
    assert precision_units("us", PRECISION_V2) == 10**6
    assert precision_units("u", PRECISION_V1) == 10**6
    with pytest.raises(Invalid, match="unknown precision 'u'"):
        precision_units("u", PRECISION_V2)
    with pytest.raises(Invalid):
        precision_units("rfc3339", PRECISION_V1)


def test_a_million_fields_is_a_fast_413():
    line = "m " + ",".join(f"f{i}=1" for i in range(800_000))
    t0 = time.perf_counter()
    with pytest.raises(TooLarge):
        decode(line + f" {T}", max_points=500_000, max_body_bytes=64 << 20)
    assert time.perf_counter() - t0 < 10


def test_gzip_bomb_and_bad_gzip():
    d = LineProtocol(Limits(max_body_bytes=1 << 20))
    with pytest.raises(TooLarge):
        d.decode(gzip.compress(b"\\" * (50 << 20)), "gzip", 1, NOW, "h")
    with pytest.raises(Invalid):
        d.decode(b"not gzip", "gzip", 1, NOW, "h")
    ok = d.decode(gzip.compress(f"m f=1 {T}".encode()), "gzip", 1, NOW, "h")
    assert ok.samples == 1


def test_many_refused_lines_are_capped_and_counted():
    out = decode("\n".join("bad" for _ in range(5000)))
    assert out.dropped == 5000 and len(out.refused) == 1000
    assert out.message().endswith("and 4997 more dropped=5000")
    assert "_truncated" in out.details()


# ---- the oracle: points formatted with proper escaping parse back to what they were --------

# Names from the characters that need escaping and some that need normalising (a backslash
# before a separator is the C parser's documented limit, so none here; DESIGN.md).
NAME = st.text(st.sampled_from(list("aZ09_.-,= \"'é#üİ/:")), min_size=1, max_size=10)
VALUE = st.one_of(
    st.floats(-1e300, 1e300, allow_nan=False),
    st.integers(-(2**63), 2**63 - 1),
    st.booleans(),
    st.text(st.characters(exclude_characters="\x00"), max_size=10),  # NUL: refused (C parser)
)


def esc(s: str, chars: str) -> str:
    return "".join("\\" + c if c in chars else c for c in s)


def fmt(measurement: str, tags: dict, fields: dict, ts: int) -> str:
    out = esc(measurement, ", ")
    out += "".join(f",{esc(k, ',= ')}={esc(v, ',= ')}" for k, v in sorted(tags.items()))
    parts = []
    for k, v in fields.items():
        if isinstance(v, bool):
            text = "true" if v else "false"
        elif isinstance(v, int):
            text = f"{v}i"
        elif isinstance(v, float):
            text = repr(v)
        else:
            text = '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        parts.append(f"{esc(k, ',= ')}={text}")
    return f"{out} {','.join(parts)} {ts}"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            NAME.map(lambda s: "m" + s),
            st.dictionaries(NAME.filter(lambda s: s != "host"), NAME, max_size=3),
            st.dictionaries(NAME, VALUE, min_size=1, max_size=4),
            st.integers(0, 3000),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_oracle_formatted_points_parse_back(points):
    lines = [fmt(m, tags, fields, (T - 3000 + dt) * 10**9) for m, tags, fields, dt in points]
    note(repr(lines))
    out = decode("\n".join(lines), per_second=10**9)
    refused = {n for n, _ in out.refused}
    got = samples(out)
    expected: dict = {}
    starts = np.cumsum([1] + [line.count("\n") + 1 for line in lines])  # raw newlines in strings
    for n, (m, tags, fields, dt) in zip(starts, points, strict=False):
        if n in refused:
            continue
        ntags = tuple(sorted((oracle_key(k), v) for k, v in tags.items()))
        for f, v in fields.items():
            if isinstance(v, str):
                continue
            key = ("h", oracle_metric(m) + "." + oracle_metric(f), ntags)
            expected.setdefault(key, {})[float(T - 3000 + dt)] = float(v)
    assert {k: sorted(v.items()) for k, v in expected.items()} == got
    for _, why in out.refused:  # only the rules' refusals, never a parse failure
        assert "unable to parse" not in why, why


def oracle_metric(s: str) -> str:
    return "".join(c if c in "abcdefghijklmnopqrstuvwxyz0123456789._" else "_" for c in s.lower())


def oracle_key(s: str) -> str:
    return "".join(c if c in "abcdefghijklmnopqrstuvwxyz0123456789_" else "_" for c in s.lower())


def test_oracle_helpers_agree_with_a_known_line():
    line = fmt("c p,u", {"a b": "x=y"}, {"f,1": 2.5, "s": 'q"\\'}, T)
    assert line == f'c\\ p\\,u,a\\ b=x\\=y f\\,1=2.5,s="q\\"\\\\" {T}'
    assert one(line) == {("h", "c_p_u.f_1", (("a_b", "x=y"),)): [(T, 2.5)]}
    assert math.isclose(one(f"m f=1e-300 {T}")[("h", "m.f", ())][0][1], 1e-300)


def test_subnormal_floats_the_c_parser_refuses_are_wrapped():
    got = one(f"a=1e-310,t=x a=1e-310,b=2i,c=-1e-400 {T}")
    assert got[("h", "a_1e_310.a", (("t", "x"),))] == [(T, 1e-310)]
    assert got[("h", "a_1e_310.c", (("t", "x"),))] == [(T, 0.0)]
    assert decode(f"m f=1e-310x {T}").dropped == 1
