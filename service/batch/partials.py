"""``/evaluate`` from mergeable per-partition results.

Every figure ``costaware.economics.evaluate`` reports for a scalar cost matrix (confusion
counts, rates, per-class report, AUC, close confusions, values at the threshold, at
Elkan's t*, at the in-sample best threshold, treat none, treat all) depends on the data
only through how many positives and negatives have each distinct score. A partition's
:class:`ScoreCounts` holds exactly that; two of them merge by adding counts, so partitions
can be evaluated anywhere, in any grouping, and the merged result is the single-process
one. Its size is the number of distinct scores (at most one entry per float32 value the
model produces), not the number of rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from costaware import economics
from costaware.decision import close_to_threshold, decide
from costaware.economics import (
    BestThreshold,
    Confusion,
    CostMatrix,
    EconomicsError,
    elkan_threshold,
)


@dataclass(frozen=True)
class ScoreCounts:
    """Per distinct score (ascending), how many rows with label 1 and with label 0 have it."""

    scores: np.ndarray  # float64, strictly ascending
    positives: np.ndarray  # int64
    negatives: np.ndarray  # int64

    @classmethod
    def of(cls, labels: np.ndarray, scores: np.ndarray) -> ScoreCounts:
        """Counts for one partition: ``labels`` 0/1, ``scores`` float64 in [0, 1]."""
        distinct, inverse = np.unique(np.asarray(scores, dtype=np.float64), return_inverse=True)
        positive = np.asarray(labels) == 1
        pos = np.bincount(inverse, weights=positive, minlength=len(distinct))
        total = np.bincount(inverse, minlength=len(distinct))
        return cls(distinct, pos.astype(np.int64), (total - pos).astype(np.int64))

    @classmethod
    def merge(cls, parts: Iterable[ScoreCounts]) -> ScoreCounts:
        parts = list(parts)
        if len(parts) == 1:
            return parts[0]
        scores = np.concatenate([p.scores for p in parts])
        distinct, inverse = np.unique(scores, return_inverse=True)
        pos = np.zeros(len(distinct), dtype=np.int64)
        neg = np.zeros(len(distinct), dtype=np.int64)
        np.add.at(pos, inverse, np.concatenate([p.positives for p in parts]))
        np.add.at(neg, inverse, np.concatenate([p.negatives for p in parts]))
        return cls(distinct, pos, neg)

    @property
    def n(self) -> int:
        return int(self.positives.sum() + self.negatives.sum())

    def confusion(self, treated: np.ndarray) -> Confusion:
        """Counts when the rows of the scores marked ``treated`` are treated."""
        tp = int(self.positives[treated].sum())
        fp = int(self.negatives[treated].sum())
        return Confusion(
            tp=tp,
            fp=fp,
            tn=int(self.negatives.sum()) - fp,
            fn=int(self.positives.sum()) - tp,
        )


class Merger:
    """Merges partial results as they arrive, a few at a time, so the client holds one
    merged table and a short list, whatever the number of partitions."""

    def __init__(self, batch: int = 16) -> None:
        self.batch = batch
        self.pending: list[ScoreCounts] = []

    def add(self, part: ScoreCounts) -> None:
        self.pending.append(part)
        if len(self.pending) >= self.batch:
            self.pending = [ScoreCounts.merge(self.pending)]

    def result(self) -> ScoreCounts:
        if not self.pending:
            raise EconomicsError("labels", "empty: need at least one labeled instance")
        return ScoreCounts.merge(self.pending)


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
        economics.prevalence_weights(labels, prevalence)  # raises for a one-class data set
        observed = n_pos / counts.n
        return cls(prevalence / observed, (1.0 - prevalence) / (1.0 - observed))


def _cells(c: Confusion, costs: CostMatrix, w: Weights | None) -> dict[str, float]:
    """Dollars in each confusion cell (``+ 0.0``: an empty cell is 0.0, never -0.0)."""
    w = w or Weights()
    return {
        "tp": c.tp * float(costs.tp) * w.positive + 0.0,
        "fp": c.fp * float(costs.fp) * w.negative + 0.0,
        "tn": c.tn * float(costs.tn) * w.negative + 0.0,
        "fn": c.fn * float(costs.fn) * w.positive + 0.0,
    }


def _value_entry(c: Confusion, costs: CostMatrix, w: Weights | None) -> dict[str, float]:
    total = sum(_cells(c, costs, w).values())
    expected = total / c.n
    return {
        "expected_value": expected,
        "total_value": total,
        "per_1000_decisions": economics.per_1000_decisions(expected),
    }


def _per_class(c: Confusion) -> dict[str, dict[str, Any]]:
    # As economics.classification_report: 0.0 where a ratio is undefined.
    report = {}
    for cls, hit, support, called in (
        ("0", c.tn, c.tn + c.fp, c.tn + c.fn),
        ("1", c.tp, c.tp + c.fn, c.tp + c.fp),
    ):
        precision = hit / called if called else 0.0
        recall = hit / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        report[cls] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
    return report


def _auc(counts: ScoreCounts) -> float | None:
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


def _deltas(counts: ScoreCounts, costs: CostMatrix, w: Weights | None) -> tuple[np.ndarray, float]:
    """Per distinct score (ascending), the value change from treating its rows; and the
    value of treating no one (as economics' per-instance deltas, summed per score)."""
    w = w or Weights()
    gain_pos, gain_neg = (float(v) for v in costs.treat_gain())
    delta = counts.positives * (gain_pos * w.positive) - counts.negatives * (gain_neg * w.negative)
    base = (
        int(counts.positives.sum()) * float(costs.fn) * w.positive
        + int(counts.negatives.sum()) * float(costs.tn) * w.negative
    )
    return delta, base


def _best_threshold(counts: ScoreCounts, costs: CostMatrix, w: Weights | None) -> BestThreshold:
    """As economics.best_threshold: every distinct score as threshold plus treating no one;
    ties within 1e-9 relative go to the lower threshold."""
    delta, base = _deltas(counts, costs, w)
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


def _curve(
    counts: ScoreCounts, costs: CostMatrix, marks: list[float], w: Weights | None
) -> dict[str, list[float]]:
    """As economics.value_curve: expected value at the default thresholds and the marks."""
    grid = np.unique(np.r_[economics.default_thresholds(), np.asarray(marks, dtype=np.float64)])
    delta, base = _deltas(counts, costs, w)
    suffix = np.r_[np.cumsum(delta[::-1])[::-1], 0.0]  # treated: every score >= t
    start = np.searchsorted(counts.scores, grid, side="left")
    return {
        "thresholds": grid.tolist(),
        "expected_value": ((base + suffix[start]) / counts.n).tolist(),
    }


def evaluate(
    counts: ScoreCounts,
    costs: CostMatrix,
    threshold: float,
    margin: float,
    *,
    prevalence: float | None = None,
    curve: bool = False,
    curve_marks: Sequence[float] = (),
    probability_counts: ScoreCounts | None = None,
) -> dict[str, Any]:
    """What ``costaware.economics.evaluate`` gives for the rows behind ``counts`` (scalar
    cost matrices; the warnings are left to the summary, as ``/evaluate`` does);
    ``probability_counts``, the same rows counted by a calibrated model's probability,
    decide Elkan's row as ``economics.evaluate``'s ``probabilities`` do."""
    if costs.per_instance:
        raise EconomicsError("cost_matrix", "batch evaluation needs one value per outcome")
    n = counts.n
    if n == 0:
        raise EconomicsError("labels", "empty: need at least one labeled instance")
    w = Weights.of(counts, prevalence)
    s = counts.scores
    at_threshold = counts.confusion(decide(s, threshold))
    close = close_to_threshold(s, threshold, margin)
    near = ScoreCounts(s[close], counts.positives[close], counts.negatives[close])
    close_counts = near.confusion(decide(near.scores, threshold)).counts()
    close_counts["total"] = near.n
    elkan = elkan_threshold(costs)
    by_probability = counts if probability_counts is None else probability_counts
    best = _best_threshold(counts, costs, w)
    result: dict[str, Any] = {
        "n": n,
        "prevalence": int(counts.positives.sum()) / n,
        "target_prevalence": None if prevalence is None else float(prevalence),
        "threshold": threshold,
        "margin": margin,
        "confusion": at_threshold.counts(),
        "confusion_value": _cells(at_threshold, costs, w),
        "rates": at_threshold.rates(),
        "accuracy": at_threshold.accuracy,
        "per_class": _per_class(at_threshold),
        "auc": _auc(counts),
        "close_confusions": close_counts,
        **_value_entry(at_threshold, costs, w),
        "elkan_threshold": {
            **elkan.to_dict(),
            "applied_to": "score" if probability_counts is None else "probability",
            **_value_entry(by_probability.confusion(elkan.decide(by_probability.scores)), costs, w),
        },
        "best_threshold": best.to_dict(),
        "treat_none": _value_entry(counts.confusion(np.zeros(len(s), dtype=bool)), costs, w),
        "treat_all": _value_entry(counts.confusion(np.ones(len(s), dtype=bool)), costs, w),
    }
    if curve:
        marks = [threshold, *curve_marks]
        if probability_counts is None and elkan.kind in ("threshold", "always_positive"):
            marks.append(float(elkan.value))
        if best.threshold is not None:
            marks.append(best.threshold)
        result["curve"] = _curve(counts, costs, marks, w)
    return result
