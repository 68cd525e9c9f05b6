"""GET /models/{name}/value over 1,000,000 logged decisions (issue 26's goal: < 1 s).

Run: ``.venv/bin/python bench/value.py [--n 1000000] [--repeats 5] [--store URL]``

Fills a fresh SQLite file (or the given store URL, e.g. a PostgreSQL database) with ``n``
decisions of one model over a day, two versions, 40% with an outcome, through the store's
own batched inserts; then times the report the route computes (one SQL aggregate plus the
figures), for one window and for 24 hourly windows. Prints the medians.
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

from service.decisionlog.report import value_report
from service.decisionlog.store import DecisionStore

DAY_MS = 86_400_000
START_MS = 1_798_761_600_000  # 2027-01-01T00:00:00Z


def fill(store: DecisionStore, n: int, chunk: int = 20_000) -> None:
    rng = np.random.default_rng(0)
    for start in range(0, n, chunk):
        size = min(chunk, n - start)
        p = rng.uniform(0, 1, size)
        times = START_MS + rng.integers(0, DAY_MS, size)
        ev = -(p * 30 + (1 - p) * 2)
        rows = [
            {
                "id": f"b{start + i}",
                "time_ms": int(times[i]),
                "model": "medical",
                "version": "v1" if i % 2 else "v2",
                "score": float(p[i]),
                "probabilities": [1 - float(p[i]), float(p[i])],
                "decision": int(p[i] > 0.5),
                "matrix": [[0.0, -2.0], [-30.0, -3.0]],
                "matrix_source": "card",
                "expected_value": float(ev[i]),
                "variance": float(p[i] * (1 - p[i]) * 784),
                "out_of_range": False,
            }
            for i in range(size)
        ]
        store.insert_decisions(rows)
        known = rng.random(size) < 0.4
        store.put_outcomes(
            [
                {"id": f"b{start + i}", "label": 1, "realized_value": -3.0, "time_ms": 0}
                for i in np.flatnonzero(known)
            ],
            replace=False,
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--store", default=None)
    args = parser.parse_args()
    url = args.store or f"sqlite+pysqlite:///{Path(tempfile.mkdtemp()) / 'bench.sqlite'}"
    store = DecisionStore.open(url)
    began = time.perf_counter()
    fill(store, args.n)
    print(f"filled {store.count():,} decisions in {time.perf_counter() - began:.1f} s ({url})")
    frm, to = "2027-01-01T00:00:00Z", "2027-01-02T00:00:00Z"
    for window in (None, "PT1H"):
        times = []
        for _ in range(args.repeats):
            began = time.perf_counter()
            report = value_report(store, "medical", frm, to, window)
            times.append(time.perf_counter() - began)
        total = sum(v["decisions"] for w in report["windows"] for v in w["versions"])
        print(
            f"/value window={window or 'whole day'}: {len(report['windows'])} windows, "
            f"{total:,} decisions, median {statistics.median(times) * 1000:.0f} ms "
            f"(min {min(times) * 1000:.0f} ms)"
        )


if __name__ == "__main__":
    main()
