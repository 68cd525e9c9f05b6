"""Cost tuning on random splits: does the tuned model beat the reference models held out?

For each of N random train/test splits of the reference data (test_size 0.25, split
seeds FIRST, FIRST+1, ...; default 2001), repeats the whole tuning procedure on the
training split (the K-fold search over loss settings x threshold rules, refit of the
winner, its rule's threshold) and prints the held-out expected value per patient,
under the reference QALY values, of:

- ``tuned``       the winner at its chosen threshold;
- ``medical@0.5`` fn_cost:fp_cost 200:1 at threshold 0.5;
- ``builtin@0.5`` cross-entropy at 0.5;
- ``builtin@t*``  cross-entropy at Elkan's t* (~0.0059 for these values);
- ``treat all``   no model: everyone treated (depends only on the split's prevalence).

Target: ``tuned`` beats ``medical@0.5`` by at least $500 per patient on average.

Every fit is the shipped one (SGD lr 0.01, batch 32, 50 epochs, seed 1). Scores come
from the Keras models (the exported ONNX graphs equal them within 1e-5); nothing is
exported. The test split of each run is read only after that run's choice is made.

Run: .venv/bin/python bench/tuning.py [--splits 20] [--first-seed 2001] [--k 3] [--grid LIST]
       [--thresholds LIST] [--select elkan|best] [--save FILE.json]
--save writes, per split, every (setting, rule) pair's fold values and its held-out value
(every other setting is refitted on the whole training split for this, 8 more fits per
split with the default grid), so
another way of picking the winner from the same search can be scored without refitting.
Splits are independent: two processes over halves of the seed range use both cores.
The CLI's default is K = 5; the bench defaults to K = 3 to bound its run time. With
--k 5 and the default grid (the whole default procedure, 48 fits per split) 20 splits took
46 minutes on the shared 2-core machine; with K = 3 and a 6-setting grid, 20 minutes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from costaware.economics import REFERENCE_QALY_VALUES, elkan_threshold, expected_value
from training.fit import fit_variant
from training.pipeline import load_data, make_split
from training.tuning import (
    CostSearch,
    SealedSplit,
    choose,
    default_grid,
    default_rules,
    parse_grid,
    parse_rules,
    resolve_selection,
)
from training.variants import reference_variants

COLUMNS = ("tuned", "medical@0.5", "builtin@0.5", "builtin@t*", "treat all")


def one_split(
    dataset, split_seed: int, grid, rules, selection, k: int, epochs: int, save: bool
) -> dict:
    costs = REFERENCE_QALY_VALUES
    sealed = SealedSplit(make_split(dataset, test_size=0.25, seed=split_seed))
    search = CostSearch(
        costs, grid=grid, rules=rules, selection=selection, k=k, seed=1, epochs=epochs
    )
    tuned = choose(search, sealed.x_train, sealed.y_train)
    result = tuned.search
    specs = {s.name: s for s in reference_variants(epochs=epochs, seed=1)}
    builtin = fit_variant(specs["builtin"], sealed.x_train, sealed.y_train, progress=None)
    medical = fit_variant(specs["medical"], sealed.x_train, sealed.y_train, progress=None)
    # With --save, every other setting is refitted on the whole training split too and each
    # rule applied as fit_winner applies it: any other way of picking the winner from the
    # same search can then be scored afterwards.
    refits = {result.winner.setting.label: tuned.fitted}
    if save:
        for i, s in enumerate(result.settings):
            if s.setting.label not in refits:
                spec = s.setting.spec(f"refit-{i}", epochs=epochs, seed=1)
                refits[s.setting.label] = fit_variant(
                    spec, sealed.x_train, sealed.y_train, progress=None
                )
    refit_train = {label: f.predict(sealed.x_train) for label, f in refits.items()}
    data = sealed.unseal()
    y, x = data.y_test, data.x_test
    t_star = elkan_threshold(costs).value
    pairs = []
    for s in result.settings if save else ():
        test_scores = refits[s.setting.label].predict(x)
        for c in s.candidates:
            t = c.rule.threshold(data.y_train, refit_train[s.setting.label], costs)
            pairs.append(
                {
                    "setting": s.setting.label,
                    "rule": c.rule.name,
                    "threshold": float(t),
                    "cv_values": [float(v) for v in c.values],
                    "held_out": expected_value(y, test_scores, t, costs),
                }
            )
    return {
        "split_seed": split_seed,
        "pairs": pairs,
        "winner": result.winner.label,
        "threshold": tuned.threshold,
        "tuned": expected_value(y, tuned.fitted.predict(x), tuned.threshold, costs),
        "medical@0.5": expected_value(y, medical.predict(x), 0.5, costs),
        "builtin@0.5": expected_value(y, builtin.predict(x), 0.5, costs),
        "builtin@t*": expected_value(y, builtin.predict(x), t_star, costs),
        "treat all": expected_value(y, np.zeros(len(y)), 0.0, costs),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=2001)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--grid", default=None, help="as `python -m training tune --grid`")
    parser.add_argument(
        "--thresholds", default=None, help="as `python -m training tune --thresholds`"
    )
    parser.add_argument("--select", default=None, help="as `python -m training tune --select`")
    parser.add_argument(
        "--save",
        type=Path,
        default=None,
        help="write every split's (setting, rule) CV values and held-out values as JSON",
    )
    args = parser.parse_args()
    logging.getLogger("tensorflow").setLevel(logging.ERROR)

    dataset = load_data()
    grid = (
        parse_grid(args.grid, REFERENCE_QALY_VALUES)
        if args.grid
        else default_grid(REFERENCE_QALY_VALUES)
    )
    costs = REFERENCE_QALY_VALUES
    rules = parse_rules(args.thresholds, costs) if args.thresholds else default_rules(costs)
    last = args.first_seed + args.splits - 1
    print(
        f"{args.splits} splits (test_size 0.25, split seeds {args.first_seed}..{last}); "
        f"K = {args.k}; grid: {', '.join(s.label for s in grid)}; "
        f"threshold rules: {', '.join(r.name for r in rules)}; "
        f"selection {resolve_selection(args.select, rules, costs)}; {args.epochs} epochs per fit"
    )
    print("held-out expected value per patient ($, reference QALY values)")
    header = f"{'split seed':>10} {'winner':<34} {'t':>8} " + " ".join(f"{c:>12}" for c in COLUMNS)
    print(header + f" {'tuned-medical':>14}")
    print("-" * (len(header) + 15))
    rows = []
    started = time.monotonic()
    for i in range(args.splits):
        seed = args.first_seed + i
        row = one_split(
            dataset, seed, grid, rules, args.select, args.k, args.epochs, bool(args.save)
        )
        rows.append(row)
        print(
            f"{seed:>10} {row['winner']:<34} {row['threshold']:>8.4g} "
            + " ".join(f"{row[c]:>12,.2f}" for c in COLUMNS)
            + f" {row['tuned'] - row['medical@0.5']:>+14,.2f}",
            flush=True,
        )
        if args.save:
            args.save.write_text(json.dumps({"k": args.k, "splits": rows}, indent=1))
    elapsed = time.monotonic() - started
    print("-" * (len(header) + 15))
    means = {c: statistics.fmean(r[c] for r in rows) for c in COLUMNS}
    gaps = [r["tuned"] - r["medical@0.5"] for r in rows]
    print(
        f"{'mean':>10} {'':<34} {'':>8} "
        + " ".join(f"{means[c]:>12,.2f}" for c in COLUMNS)
        + f" {statistics.fmean(gaps):>+14,.2f}"
    )
    sd = statistics.stdev(gaps) if len(gaps) > 1 else 0.0
    print(
        f"tuned - medical@0.5: mean {statistics.fmean(gaps):+,.2f} "
        f"(sd {sd:,.2f}, standard error {sd / np.sqrt(len(gaps)):,.2f}); "
        f"tuned better on {sum(g > 0 for g in gaps)} of {len(gaps)} splits, "
        f"worse on {sum(g < 0 for g in gaps)}; target >= +500"
    )
    print(f"wall time {elapsed:.0f} s ({elapsed / len(rows):.0f} s per split)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
