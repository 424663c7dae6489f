"""The series registry: ids, units and each series' newest sample (the "state table").

It lives in the SQLite data file of the embedded store, and with InfluxDB in the metadata
database (an SQLite file, or PostgreSQL for several nodes), so the host reads are the same,
indexed and fast.
"""

from __future__ import annotations

import json
import math

from app.core.records import CounterLast, SeriesKey
from app.storage.late import LATE_SCHEMA, LateMarks
from app.storage.metadb import Conn, MetaDB
from app.storage.sqldb import rows_in

Fresh = dict[tuple[str, SeriesKey], tuple[int, str | None]]
Found = tuple[int, str, dict[str, str], str | None]  # (series id, metric, tags, unit)


REGISTRY_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    host TEXT NOT NULL,
    metric TEXT NOT NULL,
    tags TEXT NOT NULL,
    unit TEXT,
    last_ts REAL,
    last_value REAL,
    UNIQUE (host, metric, tags)
);
"""
    + LATE_SCHEMA
    + """
CREATE TABLE IF NOT EXISTS counters (
    host TEXT NOT NULL,
    metric TEXT NOT NULL,
    tags TEXT NOT NULL,
    t REAL NOT NULL,
    v REAL NOT NULL,
    start REAL,
    PRIMARY KEY (host, metric, tags)
) WITHOUT ROWID;
"""
)


def tags_json(tags: tuple[tuple[str, str], ...]) -> str:
    """Canonical text of a tag set: the series identity is (host, metric, tags)."""
    return json.dumps(dict(tags), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class Registry:
    """Series ids and each series' newest sample (the farm monitor's "state table")."""

    def __init__(self, db: MetaDB) -> None:
        self.db = db
        self.late = LateMarks(db)
        # (host, (metric, tags)) -> (id, unit as stored); filled only after a commit (``keep``)
        self._ids: Fresh = {}

    def ids(
        self, con: Conn, host: str, keys: list[SeriesKey], units: list[str | None]
    ) -> tuple[list[int], Fresh]:
        """Ids for the batch's series, created on first sight, and a changed unit stored.

        Returns the ids and the cache entries to ``keep`` once the caller's transaction has
        committed: a rolled-back id would otherwise later name another series' row.
        """
        out: list[int | None] = []
        fresh: Fresh = {}
        stored: dict[tuple[str, str], tuple[int, str | None]] | None = None
        new: dict[tuple[str, str], str | None] = {}  # series to create: (metric, tags) -> unit
        for key, unit in zip(keys, units, strict=True):
            hit = self._ids.get((host, key))
            if hit is not None and (unit is None or hit[1] == unit):
                out.append(hit[0])
                continue
            if stored is None:  # one read of the host's series, not one per series
                rows = con.execute(
                    "SELECT metric, tags, id, unit FROM series WHERE host=?", (host,)
                ).fetchall()
                stored = {(m, tj): (sid, u) for m, tj, sid, u in rows}
            name = (key[0], tags_json(key[1]))
            if name in stored:
                fresh[(host, key)] = self._unit(con, stored[name], unit)
                out.append(fresh[(host, key)][0])
            else:
                new[name] = unit
                out.append(None)
        if new:
            made = self._create(con, host, new)
            for k, (key, sid) in enumerate(zip(keys, out, strict=True)):
                if sid is None:
                    name = (key[0], tags_json(key[1]))
                    fresh[(host, key)] = (made[name], new[name])
                    out[k] = made[name]
        return [int(i) for i in out if i is not None], fresh

    def _create(
        self, con: Conn, host: str, new: dict[tuple[str, str], str | None]
    ) -> dict[tuple[str, str], int]:
        """New series in one statement; their ids by (metric, tags)."""
        rows = self.db.values(
            con,
            "INSERT INTO series (host, metric, tags, unit)",
            "RETURNING metric, tags, id",
            [(host, m, tj, u) for (m, tj), u in new.items()],
            ("text", "text", "text", "text"),
        )
        return {(m, tj): sid for m, tj, sid in rows}

    def _unit(
        self, con: Conn, row: tuple[int, str | None], unit: str | None
    ) -> tuple[int, str | None]:
        """A known series' (id, unit), its unit brought up to date."""
        sid, stored_unit = row
        if unit is not None and stored_unit != unit:
            con.execute("UPDATE series SET unit=? WHERE id=?", (unit, sid))
            return sid, unit
        return sid, stored_unit

    def keep(self, fresh: Fresh) -> None:
        """Cache what ``ids`` found, once its transaction has committed."""
        self._ids.update(fresh)

    def update_latest(self, con: Conn, ids: list[int], ts: list[float], vals: list[float]) -> None:
        """Keep the newest sample per series; older retries never move it back."""
        self.db.values(
            con,
            "UPDATE series SET last_ts = v.column2, last_value = v.column3 FROM (",
            ") AS v WHERE series.id = v.column1 "
            "AND (series.last_ts IS NULL OR series.last_ts <= v.column2)",
            list(dict(zip(ids, zip(ids, ts, vals, strict=True), strict=True)).values()),
            ("bigint", "float8", "float8"),
        )

    def latest(self, con: Conn, ids: list[int]) -> dict[int, tuple[float, float]]:
        """The newest stored sample of each series that has one (for the server-side carry)."""
        sql = (
            "SELECT id, last_ts, last_value FROM series "
            "WHERE id IN ({marks}) AND last_ts IS NOT NULL"
        )
        rows = rows_in(lambda q, a: con.execute(q, a).fetchall(), sql, ids)
        return {i: (t, v) for i, t, v in rows}

    def counters(self, con: Conn, host: str, keys: list[SeriesKey]) -> list[CounterLast | None]:
        """Each counter's newest raw sample kept (contract section 8: rates need the previous
        raw sample); read inside the host's write section."""
        rows = con.execute(
            "SELECT metric, tags, t, v, start FROM counters WHERE host=?", (host,)
        ).fetchall()
        kept = {(m, tj): (t, v, _nan(st)) for m, tj, t, v, st in rows}
        return [kept.get((metric, tags_json(tags))) for metric, tags in keys]

    def keep_counters(
        self,
        con: Conn,
        host: str,
        keys: list[SeriesKey],
        last: list[CounterLast | None],
    ) -> None:
        """Store each counter's newest raw sample, in the write's section (one statement)."""
        rows = {
            (m, tags_json(tags)): (host, m, tags_json(tags), x[0], x[1], _none(x[2]))
            for (m, tags), x in zip(keys, last, strict=True)
            if x is not None
        }
        self.db.values(
            con,
            "INSERT INTO counters (host, metric, tags, t, v, start)",
            "ON CONFLICT (host, metric, tags) DO UPDATE SET t=excluded.t, v=excluded.v, "
            "start=excluded.start",
            list(rows.values()),
            ("text", "text", "text", "float8", "float8", "float8"),
        )

    def find(
        self, host: str, metric: str | None, tags: dict[str, str], unit: str | None
    ) -> list[Found]:
        """Series of a host matching metric, a tag filter and a unit."""
        sql = "SELECT id, metric, tags, unit FROM series WHERE host=?"
        args: list = [host]
        if metric is not None:
            sql += " AND metric=?"
            args.append(metric)
        if unit is not None:
            sql += " AND unit=?"
            args.append(unit)
        out = []
        for sid, m, tj, u in self.db.read(sql + " ORDER BY metric, tags", tuple(args)):
            t = json.loads(tj)
            if all(t.get(k) == v for k, v in tags.items()):
                out.append((sid, m, t, u))
        return out

    def hosts(self) -> list[tuple[str, float, int]]:
        return self.db.read(
            "SELECT host, MAX(last_ts), COUNT(*) FROM series GROUP BY host ORDER BY host"
        )

    def state(self, host: str) -> list[tuple[str, dict, str | None, float, float]]:
        rows = self.db.read(
            "SELECT metric, tags, unit, last_ts, last_value FROM series WHERE host=? "
            "AND last_ts IS NOT NULL ORDER BY metric, tags",
            (host,),
        )
        return [(m, json.loads(t), u, ts, v) for m, t, u, ts, v in rows]

    def hosts_of(self, ids: list[int]) -> dict[int, str]:
        """The host of each series id."""
        return dict(rows_in(self.db.read, "SELECT id, host FROM series WHERE id IN ({marks})", ids))

    def ids_of(self, host: str) -> list[int]:
        """Every series id of a host."""
        return [r[0] for r in self.db.read("SELECT id FROM series WHERE host=?", (host,))]

    def all_ids(self) -> list[int]:
        return [r[0] for r in self.db.read("SELECT id FROM series")]


def _none(x: float) -> float | None:
    return None if math.isnan(x) else x


def _nan(x: float | None) -> float:
    return math.nan if x is None else x
