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

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

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


def _value(confusion: Confusion, costs: CostMatrix) -> float:
    return (
        confusion.tp * float(costs.tp)
        + confusion.fp * float(costs.fp)
        + confusion.tn * float(costs.tn)
        + confusion.fn * float(costs.fn)
    )


def _value_entry(confusion: Confusion, costs: CostMatrix) -> dict[str, float]:
    total = _value(confusion, costs)
    return {"expected_value": total / confusion.n, "total_value": total}


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


def _best_threshold(counts: ScoreCounts, costs: CostMatrix) -> BestThreshold:
    """As economics.best_threshold: every distinct score as threshold plus treating no one;
    ties within 1e-9 relative go to the lower threshold."""
    gain_pos, gain_neg = (float(v) for v in costs.treat_gain())
    n_pos, n_neg = int(counts.positives.sum()), int(counts.negatives.sum())
    base = n_pos * float(costs.fn) + n_neg * float(costs.tn)
    pos, neg = counts.positives[::-1], counts.negatives[::-1]
    totals = np.r_[base, base + np.cumsum(pos * gain_pos - neg * gain_neg)]
    thresholds = np.r_[np.nan, counts.scores[::-1]]
    treated = np.r_[0, np.cumsum(pos + neg)]
    tolerance = 1e-9 * max(1.0, float(np.abs(totals).max()))
    best = int(np.flatnonzero(totals >= totals.max() - tolerance)[-1])
    return BestThreshold(
        threshold=None if best == 0 else float(thresholds[best]),
        expected_value=float(totals[best]) / (n_pos + n_neg),
        total_value=float(totals[best]),
        n_treated=int(treated[best]),
    )


def evaluate(
    counts: ScoreCounts, costs: CostMatrix, threshold: float, margin: float
) -> dict[str, Any]:
    """What ``costaware.economics.evaluate`` gives for the rows behind ``counts`` (scalar
    cost matrices; the warnings are left to the summary, as ``/evaluate`` does)."""
    if costs.per_instance:
        raise EconomicsError("cost_matrix", "batch evaluation needs one value per outcome")
    n = counts.n
    if n == 0:
        raise EconomicsError("labels", "empty: need at least one labeled instance")
    s = counts.scores
    at_threshold = counts.confusion(s >= threshold)
    close = np.abs(s - threshold) < margin
    near = ScoreCounts(s[close], counts.positives[close], counts.negatives[close])
    close_counts = near.confusion(near.scores >= threshold).counts()
    close_counts["total"] = near.n
    elkan = elkan_threshold(costs)
    return {
        "n": n,
        "prevalence": int(counts.positives.sum()) / n,
        "threshold": threshold,
        "margin": margin,
        "confusion": at_threshold.counts(),
        "rates": at_threshold.rates(),
        "accuracy": at_threshold.accuracy,
        "per_class": _per_class(at_threshold),
        "auc": _auc(counts),
        "close_confusions": close_counts,
        **_value_entry(at_threshold, costs),
        "elkan_threshold": {
            **elkan.to_dict(),
            **_value_entry(counts.confusion(elkan.decide(s)), costs),
        },
        "best_threshold": _best_threshold(counts, costs).to_dict(),
        "treat_none": _value_entry(counts.confusion(np.zeros(len(s), dtype=bool)), costs),
        "treat_all": _value_entry(counts.confusion(np.ones(len(s), dtype=bool)), costs),
    }
