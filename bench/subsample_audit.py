"""Statistical check of the subsample bias audit (training.subsample.audit_subsample).

Prints, at 20,000 negatives x 30 features and k = 2,000 (the issue's setting):
- the false-alarm rate on uniform random subsamples (target: at most alpha plus
  Monte-Carlo error);
- the power against a mildly biased sampler: each negative is selected with
  probability proportional to logistic(slope * z), z one standardised feature
  (target: >= 0.95 at the headline slope);
- the wall time of one audit (median and max over all trials; target < 10 s).

Every trial draws fresh data and a fresh subsample, so the rates are over both.
Run: .venv/bin/python bench/subsample_audit.py [--null-trials N] [--power-trials N]
The defaults (400 + 2 x 100 trials) take about 5 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.subsample import audit_subsample, draw_negatives

N_NEGATIVES = 20_000
N_FEATURES = 30
K = 2_000
BIASED_FEATURE = 7


def make_negatives(rng: np.random.Generator) -> np.ndarray:
    """Correlated features of mixed shape: Gaussian, log-normal (skewed) and integer counts."""
    idx = np.arange(N_FEATURES)
    corr = 0.3 ** np.abs(idx[:, None] - idx[None, :])
    z = rng.normal(size=(N_NEGATIVES, N_FEATURES)) @ np.linalg.cholesky(corr).T
    x = z.copy()
    x[:, 10:20] = np.exp(z[:, 10:20])
    x[:, 20:25] = np.floor(3 * np.exp(0.5 * z[:, 20:25]))
    return x


def biased_selection(x: np.ndarray, slope: float, rng: np.random.Generator) -> np.ndarray:
    col = x[:, BIASED_FEATURE]
    z = (col - col.mean()) / col.std()
    weight = 1.0 / (1.0 + np.exp(-slope * z))
    chosen = rng.choice(x.shape[0], size=K, replace=False, p=weight / weight.sum())
    mask = np.zeros(x.shape[0], dtype=bool)
    mask[chosen] = True
    return mask


def run(trials: int, slope: float | None, alpha: float, seed: int, times: list[float]) -> dict:
    rng = np.random.default_rng(seed)
    flagged = flagged_05 = named = 0
    aucs = []
    for t in range(trials):
        x = make_negatives(rng)
        if slope is None:
            mask = draw_negatives(N_NEGATIVES, K, rng)
        else:
            mask = biased_selection(x, slope, rng)
        start = time.perf_counter()
        audit = audit_subsample(x, mask, alpha=alpha, seed=t)
        times.append(time.perf_counter() - start)
        flagged += audit.biased
        flagged_05 += audit.p_value <= 0.05
        named += audit.drift[0].feature == f"x{BIASED_FEATURE}"
        aucs.append(audit.auc)
    return {
        "rate": flagged / trials,
        "rate_05": flagged_05 / trials,
        "named": named / trials,
        "mean_auc": float(np.mean(aucs)),
    }


def mc_error(p: float, n: int) -> float:
    return math.sqrt(max(p * (1 - p), 1e-12) / n)


def lower_bound(p: float, n: int) -> float:
    """Clopper-Pearson one-sided 95% lower confidence bound for a rate of p over n trials."""
    from scipy.stats import beta

    hits = round(p * n)
    return 0.0 if hits == 0 else float(beta.ppf(0.05, hits, n - hits + 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--null-trials", type=int, default=400)
    parser.add_argument("--power-trials", type=int, default=100)
    parser.add_argument("--slopes", type=float, nargs="+", default=[0.3, 0.2])
    parser.add_argument("--alpha", type=float, default=0.01)
    args = parser.parse_args()

    times: list[float] = []
    print(f"setting: {N_NEGATIVES} negatives x {N_FEATURES} features, k = {K}, alpha {args.alpha}")

    null = run(args.null_trials, None, args.alpha, seed=1, times=times)
    se = mc_error(args.alpha, args.null_trials)
    print(
        f"false-alarm rate, uniform subsamples: {null['rate']:.3f} over {args.null_trials} "
        f"trials (target <= {args.alpha} + MC error; MC s.e. at the target = {se:.3f}); "
        f"at alpha 0.05: {null['rate_05']:.3f} (s.e. {mc_error(0.05, args.null_trials):.3f}); "
        f"mean AUC {null['mean_auc']:.4f}"
    )
    for i, slope in enumerate(args.slopes):
        res = run(args.power_trials, slope, args.alpha, seed=100 + i, times=times)
        # logistic(2a) / logistic(-2a) = e^(2a): the selection weight of a negative
        # two SD above the mean relative to one two SD below.
        ratio = math.exp(2 * slope)
        print(
            f"power, logistic slope {slope} per SD of x{BIASED_FEATURE} "
            f"(selection weight at +2 SD vs -2 SD: {ratio:.2f}x): {res['rate']:.3f} over "
            f"{args.power_trials} trials (MC s.e. {mc_error(res['rate'], args.power_trials):.3f}, "
            f"one-sided 95% lower bound {lower_bound(res['rate'], args.power_trials):.3f}); "
            f"drift table names x{BIASED_FEATURE} first in {res['named']:.0%}; "
            f"mean AUC {res['mean_auc']:.4f}"
        )
    # The first audit also pays for importing scipy/scikit-learn submodules.
    print(
        f"audit time, {N_NEGATIVES} x {N_FEATURES}: first (with imports) {times[0]:.2f} s; "
        f"then median {statistics.median(times[1:]):.2f} s, max {max(times[1:]):.2f} s "
        f"over {len(times) - 1} audits (target < 10 s)"
    )


if __name__ == "__main__":
    main()
