"""The write path's cost on the embedded store, in process: steady state (one batch per window,
in order, with carries) as the baseline, against the same samples sent without carries (the
store's carry, as line protocol gets) and sent twice, the second time cut differently (a
re-batching sender's retry: every window absorbs overlapping samples).

    python bench/rechunk.py [--series 40 --batches 120 --repeat 3]

Prints samples/s of each and its ratio to the steady state, measured in this run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.core.records import Batch
from app.storage import StoreOptions, open_store


def samples(series: int, batches: int) -> tuple[np.ndarray, np.ndarray]:
    """Every series sampled each second with jitter, ending a few minutes ago."""
    rng = np.random.default_rng(7)
    n = batches * 30
    t0 = (time.time() // 30 - 4) * 30 - n
    ts = t0 + np.arange(n) + rng.uniform(0, 0.2, n)
    return ts, rng.normal(50, 10, (series, n))


def cut(ts, vals, a: int, b: int, carry: bool, host: str) -> Batch:
    series = vals.shape[0]
    nan = np.full(series, np.nan)
    ct = np.full(series, ts[a - 1]) if carry and a else nan
    cv = vals[:, a - 1].copy() if carry and a else nan
    return Batch(
        host,
        [(f"bench.m{k}", ()) for k in range(series)],
        [None] * series,
        np.repeat(np.arange(series), b - a),
        np.tile(ts[a:b], series),
        vals[:, a:b].reshape(-1).copy(),
        ct,
        cv,
        server_carry=not carry,
    )


def plans(ts, vals) -> dict[str, list[tuple[int, int, bool]]]:
    n = len(ts)
    steady = [(a, a + 30, True) for a in range(0, n, 30)]
    shifted = [(max(0, a - 15), min(n, a + 15), False) for a in range(0, n + 15, 30)]
    return {
        "steady state (carry)": steady,
        "no carry (store's carry)": [(a, b, False) for a, b, _ in steady],
        "sent twice, cut again": [
            x for pair in zip(steady, shifted[:-1], strict=True) for x in pair
        ]
        + shifted[-1:],
    }


def run(plan: list, ts, vals, workdir: str) -> float:
    store = open_store(
        f"sqlite:///{workdir}/b.db", StoreOptions(metadata_url=f"sqlite://{workdir}/m.db")
    )
    batches = [cut(ts, vals, a, b, c, "bench-host") for a, b, c in plan]
    t = time.perf_counter()
    for b in batches:
        store.write(b)
    took = time.perf_counter() - t
    store.close()
    return sum(b.samples for b in batches) / took


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--series", type=int, default=40)
    ap.add_argument("--batches", type=int, default=120)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    ts, vals = samples(args.series, args.batches)
    got: dict[str, float] = {}
    for name, plan in plans(ts, vals).items():
        rates = []
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as d:
                rates.append(run(plan, ts, vals, d))
        got[name] = statistics.median(rates)
    base = got["steady state (carry)"]
    for name, rate in got.items():
        print(f"{name:28s} {rate:12,.0f} samples/s   x{rate / base:.2f} of steady state")


if __name__ == "__main__":
    main()
