"""InfluxDB line protocol (CONTRACT.md section 8.1) -> one ``Batch`` per host, the refused lines
listed. Lines are parsed by the C parser ``line_protocol_parser`` (``lp_fields`` wraps what it
gets wrong); names are normalised by ``lp_names``; the points become numpy columns here.

Unlike our JSON, a request is not all-or-nothing: each line stands or falls alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
from line_protocol_parser import LineFormatError, parse_line

from app.core.errors import Invalid, TooLarge
from app.core.records import Batch
from app.ingest import Limits
from app.ingest.body import inflate
from app.ingest.json_samples import MAX_ABS_VALUE
from app.ingest.lp_fields import fields_last_wins, needs_recount, parse_small_floats
from app.ingest.lp_names import Header, HeaderCache, SeriesId
from app.ingest.problems import MAX_DETAILS

# Units of a timestamp per second, by the ``precision`` parameter. 1.x names its own (it reads an
# unknown one as ns, silently; we refuse it); 2.x takes ns, us, ms, s.
PRECISION_V1 = {"n": 10**9, "ns": 10**9, "u": 10**6, "us": 10**6, "µ": 10**6, "ms": 10**3}
PRECISION_V1 |= {"s": 1, "m": -60, "h": -3600}  # negative: seconds per unit
PRECISION_V2 = {"ns": 10**9, "us": 10**6, "ms": 10**3, "s": 1}
UNPARSED = "unable to parse"
MAX_JOINED = 8  # lines a string field with raw newlines may span
SHOWN = 3  # refused lines named in the one-line message
LINE_TEXT = 60  # characters of a refused line quoted
_NOT_UTF8 = "\x00 not UTF-8"  # stands for such a line (a real line never holds NUL: refused)


@dataclass
class Decoded:
    """What a body gave: a batch per host (sorted by host), the refused lines, the hosts named."""

    batches: list[Batch] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason), capped
    dropped: int = 0  # lines refused in all
    hosts: set[str] = field(default_factory=set)  # every host a parsed line names

    def refuse(self, n: int, why: str) -> None:
        """Count a refused line; the first MAX_DETAILS keep their reason."""
        self.dropped += 1
        if len(self.refused) < MAX_DETAILS:
            self.refused.append((n, why))

    @property
    def samples(self) -> int:
        """Samples accepted in all batches."""
        return sum(b.samples for b in self.batches)

    def message(self) -> str:
        """InfluxDB's wording: ``partial write: <the first few reasons> dropped=N``."""
        shown = "; ".join(f"line {n}: {why}" for n, why in self.refused[:SHOWN])
        more = f"; and {self.dropped - SHOWN} more" if self.dropped > SHOWN else ""
        return f"partial write: {shown}{more} dropped={self.dropped}"

    def details(self) -> dict[str, list[str]]:
        """Every refused line by its path (``lines.N``), capped like the JSON path's details."""
        out = {f"lines.{n}": [why] for n, why in self.refused}
        if self.dropped > len(self.refused):
            out["_truncated"] = [f"{self.dropped - len(self.refused)} more lines were refused"]
        return out


class _Columns:
    """The accepted samples, as parallel Python lists until numpy takes them."""

    def __init__(self) -> None:
        self.series: dict[SeriesId, int] = {}  # (host, metric, tags) -> index
        self.owner: list[tuple[tuple, int]] = []  # per index: the raw names, their first line
        self.sid: list[int] = []
        self.val: list = []
        self.line_ts: list[float] = []  # per accepted line
        self.line_no: list[int] = []
        self.counts: list[int] = []  # samples per accepted line


class LineProtocol:
    """The decoder of ``/write`` and ``/api/v2/write``; one per worker (it caches names)."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.names = HeaderCache()

    def decode(
        self,
        body: bytes,
        encoding: str | None,
        per_second: int,
        now: float,
        default_host: str | None,
    ) -> Decoded:
        """Every line of ``body`` (gunzipped within the body limit: a gzip bomb is a 413);
        ``default_host`` (an agent token's) serves lines with no host tag. Raises TooLarge past
        the point limit; refused lines are listed, not raised."""
        body = inflate(body, encoding, self.limits.max_body_bytes)
        out = Decoded()
        cols = _Columns()
        clock = _clock(per_second, now, self.limits)
        lines = _lines(body)
        i = 0
        while i < len(lines):
            line, n = lines[i], i + 1
            i += 1
            if not line or line.isspace() or line.lstrip().startswith("#"):
                continue
            why = self._line(line, n, cols, out, clock, default_host)
            # A string field may hold a raw newline (InfluxDB allows it): a line that fails to
            # parse and has a quote is tried again joined with the next lines, a few at most.
            joined = line
            for extra in range(i, min(i + MAX_JOINED, len(lines))):
                if why is None or not why.startswith(UNPARSED) or '"' not in line:
                    break
                joined += "\n" + lines[extra]
                again = self._line(joined, n, cols, out, clock, default_host)
                if again is None or not again.startswith(UNPARSED):  # parsed, at last
                    why, i = again, extra + 1
            if why is not None:
                out.refuse(n, why)
        self._finish(cols, out)
        return out

    def _line(
        self,
        line: str,
        n: int,
        cols: _Columns,
        out: Decoded,
        clock: tuple[int, float, float | int, float | int],
        default_host: str | None,
    ) -> str | None:
        """Take one line's samples into ``cols``; the reason it is refused, or None."""
        if line is _NOT_UTF8:
            return "not valid UTF-8"
        try:
            p = _parse(line)
            if p is None:
                return None
            fields = p["fields"]
            if needs_recount(line, p):
                fields = fields_last_wins(line, fields)
        except (LineFormatError, ValueError) as e:
            why = str(e).rstrip(".")
            return f"{UNPARSED} {_quote(line)}: {why[:1].lower()}{why[1:]}"
        if len(fields) + len(cols.val) > self.limits.max_points:  # before any work per field
            raise TooLarge(f"more than {self.limits.max_points} samples in one request")
        tags = p["tags"]
        raw_host = tags.get("host")
        if raw_host is not None:
            out.hosts.add(raw_host)
        header = self.names.header(p["measurement"], tags)
        if header.error is not None:
            return header.error
        host = header.host or default_host
        if host is None:
            return "no host tag (an admin token must name the host: add the tag host=NAME)"
        secs = _seconds(p["time"], clock)
        if isinstance(secs, str):
            return secs
        return self._samples(header, host, fields, secs, n, cols)

    def _samples(
        self, header: Header, host: str, fields: dict, secs: float, n: int, cols: _Columns
    ) -> str | None:
        """The line's numeric and boolean fields as samples; string fields are skipped."""
        sids, vals = [], []
        for name, v in fields.items():
            if type(v) is str:
                continue
            metric = self.names.metric(header.measurement, name)
            if metric.error is not None:
                return metric.error
            key = (host, metric.name, header.tags)
            raw = (header.raw_measurement, name, header.raw_keys)
            k = cols.series.get(key)
            if k is None:
                k = cols.series[key] = len(cols.owner)
                cols.owner.append((raw, n))
            elif cols.owner[k][0] != raw:
                (m0, f0, _), line = cols.owner[k]
                return (
                    f"{header.raw_measurement!r} field {name!r} collides with {m0!r} field "
                    f"{f0!r} (line {line}): both become {metric.name!r} {dict(header.tags)}"
                )
            sids.append(k)
            vals.append(v)
        cols.sid += sids
        cols.val += vals
        cols.line_ts.append(secs)
        cols.line_no.append(n)
        cols.counts.append(len(sids))
        return None

    def _finish(self, cols: _Columns, out: Decoded) -> None:
        """Refuse lines with out-of-range values, sort each series, keep the last duplicate,
        and cut one batch per host."""
        counts = np.asarray(cols.counts, dtype=np.int64)
        val = np.array(cols.val, dtype=np.float64)
        sid = np.asarray(cols.sid, dtype=np.int64)
        ts = np.repeat(np.asarray(cols.line_ts, dtype=np.float64), counts)
        line_of = np.repeat(np.arange(len(counts)), counts)
        big = np.abs(val) > MAX_ABS_VALUE
        if big.any():
            bad_lines = np.unique(line_of[big])
            for i in bad_lines.tolist():
                out.refuse(cols.line_no[i], f"value must be within +-{MAX_ABS_VALUE:g}")
            out.refused.sort()
            keep = ~np.isin(line_of, bad_lines)
            sid, ts, val = sid[keep], ts[keep], val[keep]
        order = np.lexsort((np.arange(len(ts)), ts, sid))  # by series, time, then arrival
        sid, ts, val = sid[order], ts[order], val[order]
        last = np.ones(len(ts), dtype=bool)  # the last line wins at one timestamp (InfluxDB)
        last[:-1] = (sid[1:] != sid[:-1]) | (ts[1:] != ts[:-1])
        sid, ts, val = sid[last], ts[last], val[last]
        keys = list(cols.series)
        out.batches = _per_host(keys, sid, ts, val)


def _per_host(keys: list[SeriesId], sid: np.ndarray, ts: np.ndarray, val: np.ndarray) -> list:
    """One server-carry ``Batch`` per host, series renumbered in order, empty series left out."""
    present = np.zeros(len(keys), dtype=bool)
    present[sid] = True
    host_of = np.array([k[0] for k in keys], dtype=object)
    batches = []
    for host in sorted({k[0] for k, p in zip(keys, present, strict=True) if p}):
        mine = present & (host_of == host)
        local = np.cumsum(mine) - 1
        pick = mine[sid]
        s = local[sid[pick]]
        chosen = np.flatnonzero(mine).tolist()
        n = len(chosen)
        batches.append(
            Batch(
                host=host,
                keys=[(keys[i][1], keys[i][2]) for i in chosen],
                units=[None] * n,
                sid=s.astype(np.int64),
                ts=ts[pick],
                val=val[pick],
                carry_ts=np.full(n, np.nan),
                carry_val=np.full(n, np.nan),
                server_carry=True,
            )
        )
    return batches


def _parse(line: str) -> dict | None:
    """The C parser, with its refusal of tiny floats wrapped (``lp_fields``)."""
    try:
        return parse_line(line)
    except LineFormatError as e:
        if "type of field value" not in str(e) or "e-" not in line.lower():
            raise
        return parse_small_floats(line)


def _clock(per_second: int, now: float, limits: Limits) -> tuple[int, float, float, float]:
    """(units per second, now, oldest, newest): the edges in the timestamps' own units where
    they are finer than seconds, exactly (Fraction), so one unit past an edge is refused."""
    oldest = now - limits.retention_30s
    newest = now + limits.future_slack
    if per_second > 1:
        return (
            per_second,
            now,
            math.ceil(Fraction(oldest) * per_second),
            math.floor(Fraction(newest) * per_second),
        )
    return per_second, now, oldest, newest


def _seconds(t: int | None, clock: tuple) -> float | str:
    """A timestamp in epoch seconds (integer arithmetic first), or why it is refused."""
    per_second, now, oldest, newest = clock
    if t is None:
        return now  # InfluxDB stamps such a line with the server's time
    scaled = t if per_second > 1 else t * (per_second if per_second == 1 else -per_second)
    if scaled < oldest:
        return "timestamp is older than the 30-second series' retention" + _unit_hint(t, clock)
    if scaled > newest:
        return "timestamp is more than 5 minutes in the future" + _unit_hint(t, clock)
    if per_second > 1:
        whole, part = divmod(t, per_second)
        return whole + part / per_second
    return float(scaled)


PRECISION_NAMES = {1_000_000_000: "ns", 1_000_000: "us", 1_000: "ms", 1: "s"}


def _unit_hint(t: int, clock: tuple) -> str:
    """Which ``precision`` would put a refused timestamp near now: the usual cause."""
    per_second, now = clock[0], clock[1]
    for units, name in PRECISION_NAMES.items():
        if units != per_second and abs(t / units - now) < 86400:
            asked = {**PRECISION_NAMES, -60: "m", -3600: "h"}.get(per_second, str(per_second))
            return f" (read as precision={asked}; it looks like {name}: add ?precision={name})"
    return ""


def _lines(body: bytes) -> list[str]:
    """The body's lines as text (a UTF-8 BOM dropped); a line that is not UTF-8 stands as
    ``_NOT_UTF8``, so it alone is refused."""
    body = body.removeprefix(b"\xef\xbb\xbf")
    try:
        return body.decode("utf-8").split("\n")
    except UnicodeDecodeError:
        return [_utf8(raw) for raw in body.split(b"\n")]


def _utf8(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return _NOT_UTF8


def _quote(line: str) -> str:
    """A refused line as InfluxDB quotes it, cut short."""
    line = line.rstrip("\r")
    return repr(line if len(line) <= LINE_TEXT else line[:LINE_TEXT] + "...")


def precision_units(precision: str | None, table: dict[str, int]) -> int:
    """Units per second for ``precision`` (default ns); Invalid names the ones accepted."""
    p = precision or "ns"
    if p not in table:
        accepted = ", ".join(table)
        raise Invalid(
            f"unknown precision {p!r}; use one of {accepted}",
            {"precision": [f"must be one of {accepted}"]},
        )
    return table[p]
