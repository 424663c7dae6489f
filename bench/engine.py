"""The write path's aggregation: the numpy engine against the best single-pass pandas
formulation of the same windows, on the batch an agent sends (40 series x 30 samples).

    python bench/engine.py [--series 40 --samples 30 --repeat 200]

Prints the median time of each and their ratio (pandas / numpy), measured in this run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.core import engine

HOLD = 90.0


def batch(series: int, samples: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 30-s batch: every series sampled each second, with jitter."""
    rng = np.random.default_rng(1)
    t0 = (time.time() // 30 - 4) * 30
    ts = t0 + np.arange(samples) + rng.uniform(0, 0.2, samples)
    sid = np.repeat(np.arange(series), samples)
    return sid, np.tile(ts, series), rng.normal(50, 10, series * samples)


def numpy_engine(sid: np.ndarray, ts: np.ndarray, val: np.ndarray) -> object:
    n = int(sid.max()) + 1
    nan = np.full(n, np.nan)
    return engine.finalize(engine.summarize(sid, ts, val, nan, nan, HOLD), HOLD)


def held_pieces(sid: np.ndarray, ts: np.ndarray, val: np.ndarray) -> pd.DataFrame:
    """Held intervals cut at window edges (each sample's hold ends within the next window)."""
    df = pd.DataFrame({"sid": sid, "ts": ts, "val": val})
    nxt = df.groupby("sid")["ts"].shift(-1)
    own_end = (np.floor(df["ts"] / 30) + 1) * 30
    end = np.minimum(nxt.fillna(own_end), df["ts"] + HOLD)
    edge = np.minimum(end, own_end)
    head = pd.DataFrame({"sid": sid, "start": ts, "sec": edge - df["ts"], "val": val})
    tail = pd.DataFrame({"sid": sid, "start": own_end, "sec": end - edge, "val": val})
    pieces = pd.concat([head, tail[tail["sec"] > 0]])
    pieces["int"] = pieces["sec"] * pieces["val"]
    return pieces


def pandas_resample(sid: np.ndarray, ts: np.ndarray, val: np.ndarray) -> pd.DataFrame:
    """The pieces through ``resample(label="right", closed="left", origin="epoch")`` per series."""
    pieces = held_pieces(sid, ts, val)
    pieces["time"] = pd.to_datetime(pieces["start"], unit="s")
    grouped = (
        pieces.set_index("time")
        .groupby("sid")
        .resample("30s", label="right", closed="left", origin="epoch")
    )
    return _finish(grouped.agg({"sec": "sum", "int": "sum", "val": ["min", "max", "last"]}))


def pandas_groupby(sid: np.ndarray, ts: np.ndarray, val: np.ndarray) -> pd.DataFrame:
    """The same windows with the label computed and one groupby: pandas' fastest form here."""
    pieces = held_pieces(sid, ts, val)
    pieces["label"] = (np.floor(pieces["start"] / 30) + 1) * 30
    grouped = pieces.groupby(["sid", "label"], sort=True)
    return _finish(grouped.agg({"sec": "sum", "int": "sum", "val": ["min", "max", "last"]}))


def _finish(out: pd.DataFrame) -> pd.DataFrame:
    out.columns = ["covered", "integral", "min", "max", "last"]
    out["mean"] = out["integral"] / out["covered"]
    return out


def stored_day() -> tuple:
    """One series' 30-second windows over 24 h (2,880), as a read finds them."""
    rng = np.random.default_rng(2)
    label = (time.time() // 30 * 30 - 30 * np.arange(2880)[::-1]).astype(np.int64)
    covered = np.full(2880, 30.0)
    mean = rng.normal(50, 10, 2880)
    return label, mean - 5, mean + 5, mean, np.full(2880, 30), covered, mean * covered


def numpy_read(label, wmin, wmax, last, count, covered, integral) -> dict:
    return engine.downsample(label, wmin, wmax, last, count, covered, integral, 300)


def pandas_read(label, wmin, wmax, last, count, covered, integral) -> pd.DataFrame:
    """The same 5-minute windows with ``resample(label="right", closed="right")`` (a 30-second
    window labelled L belongs to the 5-minute window labelled ceil(L / 300) * 300)."""
    df = pd.DataFrame(
        {"min": wmin, "max": wmax, "last": last, "count": count, "cov": covered, "int": integral},
        index=pd.to_datetime(label, unit="s"),
    )
    out = df.resample("5min", label="right", closed="right", origin="epoch").agg(
        {"min": "min", "max": "max", "last": "last", "count": "sum", "cov": "sum", "int": "sum"}
    )
    out["mean"] = out["int"] / out["cov"]
    return out


def timed(fn, args: tuple, repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn(*args)
        runs.append(time.perf_counter() - t)
    return statistics.median(runs)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--series", type=int, default=40)
    p.add_argument("--samples", type=int, default=30)
    p.add_argument("--repeat", type=int, default=200)
    a = p.parse_args()
    args = batch(a.series, a.samples)
    fast = timed(numpy_engine, args, a.repeat)
    grouped = timed(pandas_groupby, args, max(a.repeat // 4, 5))
    resampled = timed(pandas_resample, args, max(a.repeat // 20, 5))
    n = a.series * a.samples
    print(f"batch of {n} samples ({a.series} series x {a.samples})")
    print(f"{'numpy engine (summarize + finalize)':43s} {fast * 1e3:8.3f} ms")
    for name, t in (("held pieces + one groupby", grouped), ("+ groupby().resample()", resampled)):
        print(f"pandas {name:36s} {t * 1e3:8.3f} ms  ({t / fast:.0f}x the numpy engine)")
    day = stored_day()
    np_read, pd_read = timed(numpy_read, day, a.repeat), timed(pandas_read, day, a.repeat // 4)
    print("read time: 24 h of 30-second windows (2,880) into 5-minute windows")
    print(f"{'numpy engine.downsample':43s} {np_read * 1e3:8.3f} ms")
    name = "pandas resample(label=right, closed=right)"
    print(f"{name:43s} {pd_read * 1e3:8.3f} ms  ({pd_read / np_read:.0f}x)")


if __name__ == "__main__":
    main()
