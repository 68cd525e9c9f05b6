"""What exists only for a one-dimensional score, in pure numpy: Elkan's threshold t*, the
best threshold in sample, sweeps and the value curve, ROC and AUC, close confusions around
a threshold, and prevalence weights. Each comes for labelled scores and, where the batch
engine needs it, for :class:`costaware.core.ScoreCounts` (how many positives and negatives
have each distinct score), whose sums are those of the counts.

Conventions: positive class = 1, ``label = score >= threshold``,
``close_confusion = |score - threshold| < margin``. Costs are a binary
:class:`costaware.economics.CostMatrix`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from costaware.core import (
    Confusion,
    EconomicsError,
    ElkanThreshold,
    ScoreCounts,
    _check_unit,
    _inputs,
    as_labels,
    as_scores,
    elkan_threshold,
)
from costaware.decision import close_to_threshold, decide

if TYPE_CHECKING:
    from costaware.economics import CostMatrix

__all__ = ["ElkanThreshold", "elkan_threshold"]


@dataclass(frozen=True)
class BestThreshold:
    """The in-sample threshold with the highest expected value; None threshold = treat none."""

    threshold: float | None
    expected_value: float
    total_value: float
    n_treated: int
    in_sample: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "decision": "treat_none" if self.threshold is None else "threshold",
            "expected_value": self.expected_value,
            "total_value": self.total_value,
            "per_1000_decisions": per_1000_decisions(self.expected_value),
            "n_treated": self.n_treated,
            "in_sample": self.in_sample,
        }


def _treat_deltas(
    y: NDArray, costs: CostMatrix, weights: NDArray | None = None
) -> tuple[NDArray, float]:
    """Per instance, the value change from treating it; and the value of treating no one."""
    costs.check_length(len(y))
    positive = y == 1
    gain_pos, gain_neg = costs.treat_gain()
    delta = np.where(positive, gain_pos, -np.asarray(gain_neg, dtype=np.float64))
    untreated = np.where(positive, costs.fn, costs.tn).astype(np.float64)
    if weights is not None:
        delta, untreated = delta * weights, untreated * weights
    return delta.astype(np.float64), float(untreated.sum())


def best_threshold(
    labels: ArrayLike, scores: ArrayLike, costs: CostMatrix, prevalence: float | None = None
) -> BestThreshold:
    """Maximise expected value over every distinct score as threshold, plus treating no one.

    Ties (within float rounding of the running sums) go to the lower threshold. Sorting
    once and taking cumulative sums makes this O(n log n). With ``prevalence`` the
    instances are weighted as :func:`prevalence_weights` says.
    """
    y, s = _inputs(labels, scores)
    return _best_threshold(y, s, costs, prevalence_weights(y, prevalence))


def _best_threshold(
    y: NDArray, s: NDArray, costs: CostMatrix, weights: NDArray | None = None
) -> BestThreshold:
    delta, base = _treat_deltas(y, costs, weights)
    order = np.argsort(-s, kind="mergesort")
    s_sorted = s[order]
    # The last position of each run of equal scores: thresholding there treats the whole run.
    last = np.r_[np.flatnonzero(s_sorted[1:] != s_sorted[:-1]), len(s) - 1]
    totals = np.r_[base, base + np.cumsum(delta[order])[last]]
    thresholds = np.r_[np.nan, s_sorted[last]]
    treated = np.r_[0, last + 1]
    tolerance = 1e-9 * max(1.0, float(np.abs(totals).max()))
    # Candidates run from treat-none down to the lowest score, so the last maximum is the
    # lowest threshold among the ties.
    best = int(np.flatnonzero(totals >= totals.max() - tolerance)[-1])
    n = len(y)
    return BestThreshold(
        threshold=None if best == 0 else float(thresholds[best]),
        expected_value=float(totals[best]) / n,
        total_value=float(totals[best]),
        n_treated=int(treated[best]),
    )


@dataclass(frozen=True)
class Sweep:
    thresholds: NDArray
    expected_value: NDArray
    net_benefit: NDArray  # NaN at t = 1 where t/(1-t) is undefined
    tp: NDArray
    fp: NDArray

    def to_dict(self) -> dict[str, list]:
        return {
            "thresholds": self.thresholds.tolist(),
            "expected_value": self.expected_value.tolist(),
            "net_benefit": [None if math.isnan(v) else v for v in self.net_benefit.tolist()],
            "tp": self.tp.tolist(),
            "fp": self.fp.tolist(),
        }


def default_thresholds() -> NDArray:
    """A linear grid plus a log grid near 0, where cost-sensitive thresholds tend to sit."""
    return np.unique(np.r_[np.linspace(0.0, 1.0, 201), np.geomspace(1e-4, 1.0, 81)])


def threshold_sweep(
    labels: ArrayLike,
    scores: ArrayLike,
    costs: CostMatrix,
    thresholds: ArrayLike | None = None,
    prevalence: float | None = None,
) -> Sweep:
    """Expected value and Vickers' net benefit ``TP/n - FP/n * t/(1-t)`` at each threshold.

    With ``prevalence`` the instances are weighted as :func:`prevalence_weights` says (the
    counts ``tp`` and ``fp`` stay counts).
    """
    y, s = _inputs(labels, scores)
    grid = default_thresholds() if thresholds is None else as_scores(thresholds, "thresholds")
    return _sweep(y, s, costs, grid, prevalence_weights(y, prevalence))


def _sweep(
    y: NDArray, s: NDArray, costs: CostMatrix, grid: NDArray, weights: NDArray | None = None
) -> Sweep:
    delta, base = _treat_deltas(y, costs, weights)
    order = np.argsort(s, kind="mergesort")
    s_sorted = s[order]
    # Suffix sums over ascending scores: everything at index >= k is treated.
    suffix_delta = np.r_[np.cumsum(delta[order][::-1])[::-1], 0.0]
    suffix_pos = np.r_[np.cumsum(y[order][::-1])[::-1], 0]
    start = np.searchsorted(s_sorted, grid, side="left")
    n = len(y)
    tp = suffix_pos[start].astype(np.int64)
    fp = (n - start) - tp
    if weights is None:
        weighted_tp, weighted_fp = tp, fp
    else:
        w_sorted = weights[order]
        weighted_tp = np.r_[np.cumsum((w_sorted * y[order])[::-1])[::-1], 0.0][start]
        weighted_fp = np.r_[np.cumsum(w_sorted[::-1])[::-1], 0.0][start] - weighted_tp
    with np.errstate(divide="ignore", invalid="ignore"):
        odds = np.where(grid < 1.0, grid / (1.0 - grid), np.nan)
    return Sweep(
        thresholds=grid,
        expected_value=(base + suffix_delta[start]) / n,
        net_benefit=weighted_tp / n - weighted_fp / n * odds,
        tp=tp,
        fp=fp,
    )


def value_curve(
    labels: ArrayLike,
    scores: ArrayLike,
    costs: CostMatrix,
    marks: Sequence[float] = (),
    prevalence: float | None = None,
) -> dict[str, list[float]]:
    """Expected value by threshold on :func:`default_thresholds` plus the ``marks``.

    The curve is a step function of the threshold; sampling it at the marked thresholds
    too (the chosen one, Elkan's t*, the in-sample best) puts each marked point exactly
    on the curve drawn through the samples.
    """
    y, s = _inputs(labels, scores)
    marked = as_scores(list(marks), "marks") if len(marks) else np.empty(0)
    grid = np.unique(np.r_[default_thresholds(), marked])
    sweep = _sweep(y, s, costs, grid, prevalence_weights(y, prevalence))
    return {
        "thresholds": sweep.thresholds.tolist(),
        "expected_value": sweep.expected_value.tolist(),
    }


def prevalence_weights(labels: ArrayLike, prevalence: float | None) -> NDArray | None:
    """Per-instance weights that give the positives a share ``prevalence`` of the data.

    Positives weigh ``prevalence / p`` and negatives ``(1 - prevalence) / (1 - p)``, where
    ``p`` is the data's own prevalence; the weights add up to ``n``, so a weighted mean is
    the expected value per instance at the stated prevalence (the reference formula with
    ``p`` replaced, the rates kept). None (no weighting) when ``prevalence`` is None.
    """
    if prevalence is None:
        return None
    target = _check_unit(prevalence, "prevalence")
    y = as_labels(labels)
    observed = float(y.mean())
    if observed in (0.0, 1.0):
        only = "positives" if observed == 1.0 else "negatives"
        raise EconomicsError(
            "prevalence", f"the data has only {only}, so it cannot be reweighted to {target:g}"
        )
    return np.where(y == 1, target / observed, (1.0 - target) / (1.0 - observed))


def per_1000_decisions(expected_value: float) -> float:
    """What 1,000 decisions are worth at an expected value per instance."""
    return expected_value * 1000.0


# ---------------------------------------------------------------------------
# ROC, AUC and close confusions


def _average_ranks(s: NDArray) -> NDArray[np.float64]:
    """1-based ranks with ties given the mean of the ranks they span."""
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    starts = np.flatnonzero(np.r_[True, sorted_s[1:] != sorted_s[:-1]])
    ends = np.r_[starts[1:], len(s)]
    mean_rank = (starts + ends + 1) / 2.0
    ranks = np.empty(len(s), dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def roc_auc(labels: ArrayLike, scores: ArrayLike) -> float | None:
    """ROC AUC by the Mann–Whitney rank statistic (ties count half); None with one class only."""
    y, s = _inputs(labels, scores)
    return _roc_auc(y, s)


def _roc_auc(y: NDArray, s: NDArray) -> float | None:
    n_pos = int(np.count_nonzero(y))
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    rank_sum = float(_average_ranks(s)[y == 1].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def roc_curve(labels: ArrayLike, scores: ArrayLike) -> tuple[NDArray, NDArray, NDArray]:
    """(fpr, tpr, thresholds) at every distinct score, from (0, 0) to (1, 1)."""
    y, s = _inputs(labels, scores)
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    last = np.r_[np.flatnonzero(s_sorted[1:] != s_sorted[:-1]), len(s) - 1]
    tps = np.cumsum(y_sorted)[last]
    fps = (last + 1) - tps
    n_pos, n_neg = max(int(y.sum()), 1), max(len(y) - int(y.sum()), 1)
    return (
        np.r_[0.0, fps / n_neg],
        np.r_[0.0, tps / n_pos],
        np.r_[np.inf, s_sorted[last]],
    )


def close_confusions(
    labels: ArrayLike, scores: ArrayLike, threshold: float, margin: float
) -> dict[str, int]:
    """Counts per confusion cell of instances with ``|score - threshold| < margin``."""
    y, s = _inputs(labels, scores)
    return _close_confusions(
        y, s, _check_unit(threshold, "threshold"), _check_unit(margin, "margin")
    )


def _close_confusions(y: NDArray, s: NDArray, threshold: float, margin: float) -> dict[str, int]:
    close = close_to_threshold(s, threshold, margin)
    counts = Confusion.of(y[close], decide(s[close], threshold)).counts()
    counts["total"] = int(np.count_nonzero(close))
    return counts


# ---------------------------------------------------------------------------
# On score counts


@dataclass(frozen=True)
class Weights:
    """Per-instance weights by class: 1 and 1, or what ``prevalence_weights`` gives (every
    positive ``prevalence / p``, every negative ``(1 - prevalence) / (1 - p)``)."""

    positive: float = 1.0
    negative: float = 1.0

    @classmethod
    def of(cls, counts: ScoreCounts, prevalence: float | None) -> Weights | None:
        if prevalence is None:
            return None
        # The library's own checks and weights, on one instance of each class present.
        n_pos = int(counts.positives.sum())
        labels = np.array([1] * min(n_pos, 1) + [0] * min(counts.n - n_pos, 1), dtype=np.int8)
        prevalence_weights(labels, prevalence)  # raises for a one-class data set
        observed = n_pos / counts.n
        return cls(prevalence / observed, (1.0 - prevalence) / (1.0 - observed))


def counts_auc(counts: ScoreCounts) -> float | None:
    """Mann–Whitney with ties counted half, from the counts (exact integer rank sums)."""
    n_pos, n_neg = int(counts.positives.sum()), int(counts.negatives.sum())
    if n_pos == 0 or n_neg == 0:
        return None
    size = counts.positives + counts.negatives
    before = np.cumsum(size) - size
    # Twice the positives' average-rank sum: each run of ties has mean rank before + (c+1)/2.
    # int64 is exact up to about three billion rows.
    twice_rank_sum = int(np.sum(counts.positives * (2 * before + size + 1), dtype=np.int64))
    return (twice_rank_sum - n_pos * (n_pos + 1)) / (2 * n_pos * n_neg)


def _count_deltas(
    counts: ScoreCounts, costs: CostMatrix, w: Weights | None
) -> tuple[np.ndarray, float]:
    """Per distinct score (ascending), the value change from treating its rows; and the
    value of treating no one (the per-instance deltas, summed per score)."""
    w = w or Weights()
    gain_pos, gain_neg = (float(v) for v in costs.treat_gain())
    delta = counts.positives * (gain_pos * w.positive) - counts.negatives * (gain_neg * w.negative)
    base = (
        int(counts.positives.sum()) * float(costs.fn) * w.positive
        + int(counts.negatives.sum()) * float(costs.tn) * w.negative
    )
    return delta, base


def counts_best_threshold(
    counts: ScoreCounts, costs: CostMatrix, w: Weights | None
) -> BestThreshold:
    """As :func:`best_threshold`, on the counts: every distinct score as threshold plus
    treating no one; ties within 1e-9 relative go to the lower threshold."""
    delta, base = _count_deltas(counts, costs, w)
    totals = np.r_[base, base + np.cumsum(delta[::-1])]
    thresholds = np.r_[np.nan, counts.scores[::-1]]
    treated = np.r_[0, np.cumsum((counts.positives + counts.negatives)[::-1])]
    tolerance = 1e-9 * max(1.0, float(np.abs(totals).max()))
    best = int(np.flatnonzero(totals >= totals.max() - tolerance)[-1])
    return BestThreshold(
        threshold=None if best == 0 else float(thresholds[best]),
        expected_value=float(totals[best]) / counts.n,
        total_value=float(totals[best]),
        n_treated=int(treated[best]),
    )


def counts_curve(
    counts: ScoreCounts, costs: CostMatrix, marks: list[float], w: Weights | None
) -> dict[str, list[float]]:
    """As :func:`value_curve`, on the counts: expected value at the default thresholds
    and the marks."""
    grid = np.unique(np.r_[default_thresholds(), np.asarray(marks, dtype=np.float64)])
    delta, base = _count_deltas(counts, costs, w)
    suffix = np.r_[np.cumsum(delta[::-1])[::-1], 0.0]  # treated: every score >= t
    start = np.searchsorted(counts.scores, grid, side="left")
    return {
        "thresholds": grid.tolist(),
        "expected_value": ((base + suffix[start]) / counts.n).tolist(),
    }
