"""``Accept: text/csv`` on ``/api/v1/series`` (contract section 6): one row per window,
``time,host,metric,TAG...,unit,mean,min,max,last,count,covered,energy_wh``, streamed."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

import numpy as np

from app.core.records import SeriesPoints

FIXED = ("time", "host", "metric", "unit", "mean", "min", "max", "last", "count", "covered")
ROWS_PER_CHUNK = 2000


def columns(series: list[SeriesPoints]) -> tuple[list[str], list[str]]:
    """The tag keys of every series, and their column names (``tag.KEY`` where a key is also
    the name of a fixed column, so no two columns share a name)."""
    keys = sorted({k for sp in series for k in sp.tags})
    taken = {*FIXED, "energy_wh"}
    return keys, [f"tag.{k}" if k in taken else k for k in keys]


def rows(host: str, metric: str, series: list[SeriesPoints]) -> Iterator[str]:
    """The CSV text in chunks, so a long range is sent while it is written."""
    keys, names = columns(series)
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(["time", "host", "metric", *names, *FIXED[3:], "energy_wh"])
    for sp in series:
        w = sp.windows
        times = [t + "Z" for t in np.datetime_as_string(w.time.astype("datetime64[s]")).tolist()]
        tags = [sp.tags.get(k, "") for k in keys]
        energy = (w.integral / 3600.0).tolist() if sp.unit == "W" else [""] * len(times)
        cols = zip(
            times,
            *(c.tolist() for c in (w.mean, w.min, w.max, w.last, w.count, w.covered)),
            energy,
            strict=True,
        )
        for i, (t, *vals, wh) in enumerate(cols):
            out.writerow([t, host, metric, *tags, sp.unit or "", *vals, wh])
            if i % ROWS_PER_CHUNK == ROWS_PER_CHUNK - 1:
                yield _take(buf)
    yield _take(buf)


def _take(buf: io.StringIO) -> str:
    text = buf.getvalue()
    buf.seek(0)
    buf.truncate()
    return text
