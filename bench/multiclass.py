"""Held-out expected value of the multiclass losses on fresh splits of the wine data.

Per split seed: both losses fitted with the shipped settings on the stratified training
split, each judged on the held-out split with the minimum-expected-cost decision and with
the most probable class, under the illustrative wine value matrix. Prints one row per
split and the mean, with the standard error of the paired difference.

    .venv/bin/python bench/multiclass.py [--splits 10] [--first-seed 101] [--epochs 200]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from training.multiclass import (
    DEFAULT_MULTICLASS_EPOCHS,
    WINE_VALUES,
    MulticlassSpec,
    fit_multiclass,
    held_out_outcome,
    load_wine,
    split_multiclass,
)

COLUMNS = (
    ("expected_cost", "expected_value_min_cost", "cost loss, min-EC"),
    ("expected_cost", "expected_value_argmax", "cost loss, argmax"),
    ("cross_entropy", "expected_value_min_cost", "CE, min-EC"),
    ("cross_entropy", "expected_value_argmax", "CE, argmax"),
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=101)
    parser.add_argument("--epochs", type=int, default=DEFAULT_MULTICLASS_EPOCHS)
    args = parser.parse_args()
    data = load_wine()
    started = time.monotonic()
    table = []
    header = f"{'split':>6} " + " ".join(f"{name:>19}" for _, _, name in COLUMNS)
    print(f"wine, illustrative value matrix; {args.epochs} epochs; held-out EV $/lot")
    print(header)
    print("-" * len(header))
    for seed in range(args.first_seed, args.first_seed + args.splits):
        split = split_multiclass(data, seed=seed)
        outcomes = {}
        for loss in ("expected_cost", "cross_entropy"):
            spec = MulticlassSpec("bench", loss=loss, epochs=args.epochs)
            fitted = fit_multiclass(spec, split.x_train, split.y_train, WINE_VALUES, progress=None)
            probabilities = fitted.predict(split.x_test).astype(np.float64)
            outcomes[loss] = held_out_outcome(split.y_test, probabilities, WINE_VALUES)
        row = [getattr(outcomes[loss], field) for loss, field, _ in COLUMNS]
        table.append(row)
        print(f"{seed:>6} " + " ".join(f"{v:>19,.2f}" for v in row), flush=True)
    values = np.array(table)
    print("-" * len(header))
    print(f"{'mean':>6} " + " ".join(f"{v:>19,.2f}" for v in values.mean(axis=0)))
    names = [name for _, _, name in COLUMNS]
    for a, b in ((0, 2), (0, 3), (2, 3)):
        diff = values[:, a] - values[:, b]
        se = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else float("nan")
        print(
            f"{names[a]} - {names[b]}: mean {diff.mean():+,.2f} (s.e. {se:,.2f}); "
            f"better on {int((diff > 0).sum())}, worse on {int((diff < 0).sum())} "
            f"of {len(diff)} splits"
        )
    print(f"wall time {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
