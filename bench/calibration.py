"""Calibration figures of issue 23: prints them, asserts nothing.

1. Over N fresh splits of the reference data (test size 0.25, split seeds FIRST, FIRST+1,
   ...; default 20 from 101), per reference variant trained exactly as ``python -m training``
   trains it (network + sigmoid map on 5-fold out-of-fold scores): held-out ECE (15
   equal-mass bins) and Brier score of the raw score and of the graph's probability, and the
   held-out value per patient (reference QALY values) of the Bayes decision on the
   probability (probability >= Elkan's t*) beside the raw score at t* and at the card
   threshold 0.5. Figures come from the exported cards (onnxruntime outputs).
2. Generated data with a known true probability (logistic truth, 10 features, 20,000 rows,
   about 5% positives), trained through the command line with fn:fp = 50:1: mean
   |probability - p_true| and |score - p_true| on the held-out rows, and the value per row
   (expected under p_true) of Bayes decisions on the probability, on the raw score and on
   p_true itself.

Run: .venv/bin/python bench/calibration.py [--splits 20] [--first-seed 101]
       [--skip-reference] [--skip-generated]
Each reference split is 18 fits of 426 rows (3 variants x (1 + 5 folds)); the generated
run is 6 fits of 15,000 rows.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from costaware.card import read_card  # noqa: E402
from costaware.economics import REFERENCE_QALY_VALUES, elkan_threshold, outcome_values  # noqa: E402


def _mean(values: list[float]) -> str:
    m = statistics.fmean(values)
    se = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else 0.0
    return f"{m:,.4f} ± {se:,.4f}" if abs(m) < 10 else f"{m:,.0f} ± {se:,.0f}"


def reference_splits(splits: int, first_seed: int) -> None:
    from training.pipeline import load_data, make_split, train_variant
    from training.variants import reference_variants

    dataset = load_data()
    t_star = elkan_threshold(REFERENCE_QALY_VALUES).value
    rows: dict[str, dict[str, list[float]]] = {}
    for seed in range(first_seed, first_seed + splits):
        data = make_split(dataset, seed=seed)
        with tempfile.TemporaryDirectory() as models:
            for spec in reference_variants():
                card = train_variant(spec, dataset, data, Path(models), progress=None).export.card
                quality = card.calibration.held_out
                y = np.asarray(card.held_out.labels)
                s = np.asarray(card.held_out.scores)
                p = np.asarray(card.held_out.probabilities)

                def value(treat: np.ndarray, y: np.ndarray = y) -> float:
                    return float(outcome_values(y, treat, REFERENCE_QALY_VALUES).mean())

                figures = {
                    "ECE before": quality.before.ece,
                    "ECE after": quality.after.ece,
                    "Brier before": quality.before.brier,
                    "Brier after": quality.after.brier,
                    "EV probability@t*": value(p >= t_star),
                    "EV score@t*": value(s >= t_star),
                    "EV score@0.5": value(s >= card.threshold),
                }
                for key, number in figures.items():
                    rows.setdefault(spec.name, {}).setdefault(key, []).append(number)
        print(f"split seed {seed} done", file=sys.stderr, flush=True)
    print(f"Reference data, {splits} fresh splits (seeds {first_seed}..{first_seed + splits - 1}),")
    print(f"held-out 143 rows each; mean ± standard error; EV in $/patient, t* = {t_star:.4f}")
    keys = list(next(iter(rows.values())))
    print(f"{'variant':<12} " + " ".join(f"{k:>22}" for k in keys))
    for name, figures in rows.items():
        print(f"{name:<12} " + " ".join(f"{_mean(figures[k]):>22}" for k in keys))


def generated() -> None:
    from training.synthetic import against_truth, logistic_truth

    truth = logistic_truth(n=20_000, features=10, prevalence=0.05, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        data = truth.write_csv(Path(tmp) / "generated.csv")
        argv = [sys.executable, "-m", "training", "--data", str(data), "--label", "label"]
        argv += ["--variant", "name=g,loss=custom,fn_cost=50,fp_cost=1"]
        argv += ["--models-dir", str(Path(tmp) / "m"), "--no-report"]
        subprocess.run(argv, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        card = read_card(Path(tmp) / "m" / "g")
    figures = against_truth(
        truth,
        card.training.data.test_rows,
        np.asarray(card.held_out.scores),
        np.asarray(card.held_out.probabilities),
    )
    quality = card.calibration.held_out
    print(
        f"Generated logistic truth: 20,000 rows, 10 features, {truth.y.mean():.1%} positives, "
        f"fn:fp 50:1 loss; {len(card.held_out.labels)} held-out rows"
    )
    print(f"  mean |probability - p_true| {figures['mean_abs_probability']:.4f}")
    print(f"  mean |raw score  - p_true|  {figures['mean_abs_score']:.4f}")
    print(f"  ECE before/after {quality.before.ece:.4f} / {quality.after.ece:.4f}")
    print(
        f"  value per row of Bayes decisions (treat when >= t* = {figures['t_star']:.4f}): "
        f"on p_true {figures['value_truth']:.4f}, on probability "
        f"{figures['value_probability']:.4f} ({figures['loss_fraction']:.2%} less), on raw "
        f"score {figures['value_score']:.4f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--splits", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=101)
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--skip-generated", action="store_true")
    args = parser.parse_args()
    if not args.skip_generated:
        generated()
    if not args.skip_reference:
        reference_splits(args.splits, args.first_seed)


if __name__ == "__main__":
    main()
