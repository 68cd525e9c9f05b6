"""Generated data with a known true probability, to measure a calibration against the truth.

Logistic truth: ``x ~ N(0, I)``, ``P(y = 1 | x) = sigmoid(x @ beta + c)`` with ``beta`` drawn
once from the seed and ``c`` set so that about ``prevalence`` of the rows are positive. A
one-unit network is well specified for it, so a calibrated model's probability can come
close to ``p_true`` and the gap measures the calibration, not the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

LABEL = "label"


@dataclass(frozen=True)
class LogisticTruth:
    x: np.ndarray  # [n, f]
    y: np.ndarray  # [n] 0/1
    p_true: np.ndarray  # [n]

    def write_csv(self, path: Path) -> Path:
        """A CSV with a header (``label``, ``x1`` ... ``xf``) for ``--data ... --label label``."""
        header = ",".join([LABEL, *(f"x{i}" for i in range(1, self.x.shape[1] + 1))])
        table = np.column_stack([self.y, self.x])
        np.savetxt(path, table, delimiter=",", header=header, comments="", fmt="%.17g")
        return path


def logistic_truth(
    n: int = 20_000, features: int = 10, prevalence: float = 0.05, seed: int = 0
) -> LogisticTruth:
    """``n`` rows of logistic truth (see the module docstring)."""
    rng = np.random.default_rng(seed)
    beta = rng.normal(0.0, 1.0, features) * (1.5 / np.sqrt(features))
    x = rng.normal(size=(n, features))
    z = x @ beta
    # the intercept that gives the wanted mean probability (bisection on a monotone mean)
    low, high = -20.0, 20.0
    for _ in range(80):
        c = (low + high) / 2
        if (1 / (1 + np.exp(-(z + c)))).mean() < prevalence:
            low = c
        else:
            high = c
    p = 1 / (1 + np.exp(-(z + c)))
    y = (rng.random(n) < p).astype(np.int8)
    return LogisticTruth(x=x, y=y, p_true=p)


# fn:fp = 50:1 as outcome values: a missed positive costs 50, a needless treatment 1
GENERATED_COSTS = {"tp": 0.0, "fp": -1.0, "tn": 0.0, "fn": -50.0}


def expected_value(p_true: np.ndarray, treat: np.ndarray, costs: dict[str, float]) -> float:
    """Mean value per row of the decisions ``treat`` when the truth is ``p_true`` (the
    expectation over the labels, not one draw of them)."""
    t = np.asarray(treat, dtype=bool)
    p = np.asarray(p_true, dtype=np.float64)
    positive = np.where(t, costs["tp"], costs["fn"])
    negative = np.where(t, costs["fp"], costs["tn"])
    return float((p * positive + (1 - p) * negative).mean())


def against_truth(
    truth: LogisticTruth,
    test_rows: list[int],
    scores: np.ndarray,
    probabilities: np.ndarray,
    costs: dict[str, float] = GENERATED_COSTS,
) -> dict[str, float]:
    """On the held-out rows: mean |probability - p_true| and |score - p_true|, and the value
    of the Bayes decisions (treat when ``p >= t*``) on ``p_true``, on the probability and on
    the raw score, with the probability's loss as a fraction of the truth's value."""
    p_true = truth.p_true[np.asarray(test_rows)]
    s = np.asarray(scores, dtype=np.float64)
    p = np.asarray(probabilities, dtype=np.float64)
    gain, harm = costs["tp"] - costs["fn"], costs["tn"] - costs["fp"]
    t_star = harm / (harm + gain)
    truth_value = expected_value(p_true, p_true >= t_star, costs)
    probability_value = expected_value(p_true, p >= t_star, costs)
    return {
        "mean_abs_probability": float(np.abs(p - p_true).mean()),
        "mean_abs_score": float(np.abs(s - p_true).mean()),
        "t_star": t_star,
        "value_truth": truth_value,
        "value_probability": probability_value,
        "value_score": expected_value(p_true, s >= t_star, costs),
        "loss_fraction": (truth_value - probability_value) / abs(truth_value),
    }
