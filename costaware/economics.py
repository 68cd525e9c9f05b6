"""The economics of a binary classifier's decisions, in pure numpy.

A cost matrix holds the dollar *value* of each outcome (``tp``, ``fp``, ``tn``,
``fn``; negative for a loss). Each entry is a number or, for example-dependent
values (a fraud amount, say), one number per instance. Everything here is shared
by the training report and the service, so it imports neither FastAPI nor
scikit-learn.

Conventions (docs/ARCHITECTURE.md): positive class = 1, ``label = score >= threshold``,
``close_confusion = |score - threshold| < margin``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Real
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

# The core's names a binary caller uses are re-exported here (training, the reports and
# the benchmarks import them from economics).
from costaware.core import (
    MAX_ABS_VALUE,
    Confusion,
    CostMatrixError,
    EconomicsError,
    ElkanThreshold,
    ScoreCounts,
    ValueMatrix,
    _as_float,
    _as_float_array,
    _check_unit,
    _inputs,
    as_labels,
    as_number,
    as_scores,
    binary_probabilities,
    decide,
    elkan_threshold,
    realised_values,
    refuse_indifferent,
    shown,
)
from costaware.decision import DEFAULT_MARGIN, DEFAULT_THRESHOLD, close_to_threshold
from costaware.decision import decide as decide_threshold
from costaware.threshold import (
    BestThreshold,
    Sweep,
    Weights,
    _best_threshold,
    _close_confusions,
    _roc_auc,
    best_threshold,
    close_confusions,
    counts_auc,
    counts_best_threshold,
    counts_curve,
    default_thresholds,
    per_1000_decisions,
    prevalence_weights,
    roc_auc,
    roc_curve,
    threshold_sweep,
    value_curve,
)

__all__ = [
    "Confusion",
    "CostMatrixError",
    "EconomicsError",
    "ElkanThreshold",
    "Sweep",
    "as_labels",
    "as_number",
    "as_scores",
    "best_threshold",
    "close_confusions",
    "default_thresholds",
    "elkan_threshold",
    "prevalence_weights",
    "refuse_indifferent",
    "roc_auc",
    "roc_curve",
    "shown",
    "threshold_sweep",
    "value_curve",
]

OUTCOMES = ("tp", "fp", "tn", "fn")
# The largest outcome value in magnitude: sums over millions of instances, and the
# differences between outcomes, stay far from float64's overflow (about 1.8e308), which
# would turn an expected value into inf or NaN.
MAX_OUTCOME_VALUE = MAX_ABS_VALUE

CostValue = float | NDArray[np.float64]


def _check_magnitude(values: NDArray, field: str, *, scalar: bool) -> None:
    too_big = np.abs(values) > MAX_OUTCOME_VALUE
    if too_big.any():
        index = int(np.argmax(too_big))
        where = field if scalar else f"{field}[{index}]"
        raise CostMatrixError(
            where,
            f"{values[index]:g} is larger in magnitude than {MAX_OUTCOME_VALUE:g}, the "
            "largest outcome value supported (sums must stay finite)",
        )


@dataclass(frozen=True, eq=False)
class CostMatrix:
    """Dollar value of each outcome; each entry a float or one float per instance."""

    tp: CostValue
    fp: CostValue
    tn: CostValue
    fn: CostValue

    def __post_init__(self) -> None:
        lengths: dict[str, int] = {}
        for name in OUTCOMES:
            raw = getattr(self, name)
            field = f"cost_matrix.{name}"
            if isinstance(raw, Real) and not isinstance(raw, bool):
                value = _as_float(raw, field, CostMatrixError)
                _check_magnitude(np.array([value]), field, scalar=True)
                object.__setattr__(self, name, value)
            else:
                array = _as_float_array(raw, field, CostMatrixError)
                _check_magnitude(array, field, scalar=False)
                array.flags.writeable = False
                object.__setattr__(self, name, array)
                lengths[name] = len(array)
        if len(set(lengths.values())) > 1:
            detail = ", ".join(f"{name} has {length}" for name, length in lengths.items())
            raise CostMatrixError("cost_matrix", f"per-instance lists differ in length ({detail})")

    @classmethod
    def from_mapping(
        cls, mapping: Any, n: int | None = None, prefix: str = "cost_matrix"
    ) -> CostMatrix:
        """Build from e.g. a JSON object; per-instance lists must have ``n`` values if given."""
        if not isinstance(mapping, Mapping):
            raise CostMatrixError(prefix, "expected an object with tp, fp, tn and fn")
        unknown = sorted(str(key) for key in mapping if key not in OUTCOMES)
        if unknown:
            raise CostMatrixError(
                f"{prefix}.{unknown[0]}", "unknown entry (expected tp, fp, tn and fn)"
            )
        values: dict[str, CostValue] = {}
        for name in OUTCOMES:
            field = f"{prefix}.{name}"
            if name not in mapping or mapping[name] is None:
                raise CostMatrixError(field, "missing")
            raw = mapping[name]
            if isinstance(raw, (Sequence, np.ndarray)) and not isinstance(raw, (str, bytes)):
                array = _as_float_array(raw, field, CostMatrixError)
                if n is not None and len(array) != n:
                    raise CostMatrixError(
                        field, f"has {len(array)} per-instance values but there are {n} instances"
                    )
                values[name] = array
            else:
                values[name] = _as_float(raw, field, CostMatrixError)
        try:
            costs = cls(**values)
        except CostMatrixError as exc:
            if prefix == "cost_matrix":
                raise
            raise CostMatrixError(exc.field.replace("cost_matrix", prefix, 1), exc.message) from exc
        refuse_indifferent(costs.as_value_matrix(), prefix, CostMatrixError)
        return costs

    def value_matrix(self) -> ValueMatrix:
        """The K = 2 value matrix these outcome values are (decided by the binary rule)."""
        if self.per_instance:
            return ValueMatrix.of_binary(self.as_value_matrix())
        return ValueMatrix.of_binary(np.array([[self.tn, self.fp], [self.fn, self.tp]]))

    def as_value_matrix(self) -> NDArray[np.float64]:
        """``[[tn, fp], [fn, tp]]`` (row = truth 0/1, column = decision 0/1), or one such
        matrix per instance (N x 2 x 2): the multiclass value matrix of two classes."""
        tp, fp, tn, fn = np.broadcast_arrays(*(np.asarray(getattr(self, k)) for k in OUTCOMES))
        return np.stack([np.stack([tn, fp], -1), np.stack([fn, tp], -1)], -2).astype(np.float64)

    @property
    def n(self) -> int | None:
        """The number of instances the per-instance entries cover, or None for a scalar matrix."""
        for name in OUTCOMES:
            value = getattr(self, name)
            if isinstance(value, np.ndarray):
                return len(value)
        return None

    @property
    def per_instance(self) -> bool:
        return self.n is not None

    def check_length(self, n: int) -> None:
        if self.n is not None and self.n != n:
            name = next(k for k in OUTCOMES if isinstance(getattr(self, k), np.ndarray))
            raise CostMatrixError(
                f"cost_matrix.{name}",
                f"has {self.n} per-instance values but there are {n} instances",
            )

    def treat_gain(self) -> tuple[CostValue, CostValue]:
        """(v_tp - v_fn, v_tn - v_fp): what deciding right is worth for a positive, a negative."""
        return self.tp - self.fn, self.tn - self.fp

    def loss_weights(self) -> tuple[float, float]:
        """``(fn_cost, fp_cost)`` for the cost-weighted loss (scalar matrices only)."""
        if self.per_instance:
            raise CostMatrixError(
                "cost_matrix", "loss weights need a scalar matrix, not per-instance values"
            )
        fn_cost, fp_cost = self.treat_gain()
        return float(fn_cost), float(fp_cost)

    def warnings(self) -> list[str]:
        """Violations of Elkan's reasonableness conditions (v_tp > v_fn and v_tn > v_fp)."""
        found = []
        checks = (
            ("tp", "fn", "a true positive should be worth more than a false negative"),
            ("tn", "fp", "a true negative should be worth more than a false positive"),
        )
        for right, wrong, why in checks:
            bad = np.asarray(getattr(self, right) <= getattr(self, wrong))
            if not bad.any():
                continue
            if self.per_instance:
                where = f"{int(bad.sum())} of {self.n} instances have"
                message = f"{where} v_{right} <= v_{wrong}"
            else:
                message = (
                    f"v_{right} = {getattr(self, right):g} <= v_{wrong} = {getattr(self, wrong):g}"
                )
            found.append(
                f"cost_matrix: {message}, violating Elkan's reasonableness condition ({why})"
            )
        return found

    def to_dict(self) -> dict[str, float | list[float]]:
        out: dict[str, float | list[float]] = {}
        for name in OUTCOMES:
            value = getattr(self, name)
            out[name] = value.tolist() if isinstance(value, np.ndarray) else value
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CostMatrix):
            return NotImplemented
        return all(
            type(getattr(self, k)) is type(getattr(other, k))
            and np.array_equal(getattr(self, k), getattr(other, k))
            for k in OUTCOMES
        )

    __hash__ = None  # type: ignore[assignment]


# The reference experiment's outcome values per patient, at $100,000 per QALY.
QALY_DOLLARS = 100_000.0
REFERENCE_QALY = {"tp": -0.3528, "fp": -0.0128767, "tn": 0.0, "fn": -2.52}
REFERENCE_QALY_VALUES = CostMatrix(tp=-35280.0, fp=-1287.67, tn=0.0, fn=-252000.0)


# ---------------------------------------------------------------------------
# Counts and values at a threshold


def confusion(labels: ArrayLike, scores: ArrayLike, threshold: float) -> Confusion:
    """Confusion counts with ``predicted = score >= threshold``."""
    y, s = _inputs(labels, scores)
    return Confusion.of(y, decide_threshold(s, _check_unit(threshold, "threshold")))


def accuracy(labels: ArrayLike, scores: ArrayLike, threshold: float) -> float:
    return confusion(labels, scores, threshold).accuracy


def classification_report(labels: ArrayLike, predicted: ArrayLike) -> dict[str, dict[str, Any]]:
    """Per class ("0", "1"): precision, recall, f1, support; 0.0 where undefined (as sklearn)."""
    y = as_labels(labels)
    p = as_labels(predicted, field="predicted")
    if len(y) != len(p):
        raise EconomicsError("predicted", f"has {len(p)} values but there are {len(y)} labels")
    return Confusion.of(y, p).report()


def outcome_values(labels: ArrayLike, predicted: ArrayLike, costs: CostMatrix) -> NDArray:
    """Each instance's dollar value given its label and the decision taken (the K-class
    :func:`costaware.core.realised_values` under ``costs.value_matrix()``)."""
    y = (np.asarray(labels) == 1).astype(np.int64)
    p = np.asarray(predicted).astype(bool).astype(np.int64)
    costs.check_length(len(y))
    return realised_values(y, p, costs.value_matrix())


def total_value(labels: ArrayLike, scores: ArrayLike, threshold: float, costs: CostMatrix) -> float:
    y, s = _inputs(labels, scores)
    return float(
        outcome_values(y, decide_threshold(s, _check_unit(threshold, "threshold")), costs).sum()
    )


def expected_value(
    labels: ArrayLike, scores: ArrayLike, threshold: float, costs: CostMatrix
) -> float:
    """Mean outcome value per instance (the reference formula, generalised per instance)."""
    y, s = _inputs(labels, scores)
    return float(
        outcome_values(y, decide_threshold(s, _check_unit(threshold, "threshold")), costs).mean()
    )


def optimal_decisions(scores: ArrayLike, costs: CostMatrix) -> NDArray[np.bool_]:
    """Per instance, treat when ``s*v_tp + (1-s)*v_fp >= s*v_fn + (1-s)*v_tn`` (calibrated
    s): the core's decision rule (:func:`costaware.core.decide`) under ``costs``."""
    s = as_scores(scores)
    costs.check_length(len(s))
    return decide(binary_probabilities(s), costs.value_matrix()).index == 1


# ---------------------------------------------------------------------------
# The evaluation: one entry of ``/evaluate``, from labelled scores or from score counts


def _value_entry(total: float, n: int) -> dict[str, float]:
    expected = total / n
    return {
        "expected_value": expected,
        "total_value": total,
        "per_1000_decisions": per_1000_decisions(expected),
    }


class _Scores:
    """Labelled scores, one per instance: values are per-instance sums (per-instance cost
    matrices allowed)."""

    def __init__(self, y: NDArray, s: NDArray, costs: CostMatrix, prevalence: float | None) -> None:
        self.y, self.scores, self.costs = y, s, costs
        self.weights = prevalence_weights(y, prevalence)
        self.n = len(y)
        self.prevalence = float(y.mean())

    def confusion(self, treated: NDArray) -> Confusion:
        return Confusion.of(self.y, treated)

    def values(self, treated: NDArray) -> NDArray:
        values = outcome_values(self.y, treated, self.costs)
        return values if self.weights is None else values * self.weights

    def value_entry(self, treated: NDArray) -> dict[str, float]:
        values = self.values(treated)
        expected = float(values.mean())
        return {
            "expected_value": expected,
            "total_value": float(values.sum()),
            "per_1000_decisions": per_1000_decisions(expected),
        }

    def cells(self, treated: NDArray) -> dict[str, float]:
        """Dollars in each confusion cell: the sum of its instances' outcome values."""
        values, positive = self.values(treated), self.y == 1
        cells = {
            "tp": treated & positive,
            "fp": treated & ~positive,
            "tn": ~treated & ~positive,
            "fn": ~treated & positive,
        }
        return {name: float(values[cell].sum()) for name, cell in cells.items()}

    def auc(self) -> float | None:
        return _roc_auc(self.y, self.scores)

    def close(self, threshold: float, margin: float) -> dict[str, int]:
        return _close_confusions(self.y, self.scores, threshold, margin)

    def best(self) -> BestThreshold:
        return _best_threshold(self.y, self.scores, self.costs, self.weights)


class _Counted:
    """Score counts (the batch engine's merged partitions): values are counts times the
    outcome values (scalar cost matrices only)."""

    def __init__(self, counts: ScoreCounts, costs: CostMatrix, prevalence: float | None) -> None:
        self.counts, self.scores, self.costs = counts, counts.scores, costs
        self.weights = Weights.of(counts, prevalence)
        self.n = counts.n
        self.prevalence = int(counts.positives.sum()) / self.n

    def confusion(self, treated: NDArray) -> Confusion:
        return self.counts.confusion(treated)

    def cells(self, treated: NDArray) -> dict[str, float]:
        """Dollars in each confusion cell (``+ 0.0``: an empty cell is 0.0, never -0.0)."""
        c, costs, w = self.confusion(treated), self.costs, self.weights or Weights()
        return {
            "tp": c.tp * float(costs.tp) * w.positive + 0.0,
            "fp": c.fp * float(costs.fp) * w.negative + 0.0,
            "tn": c.tn * float(costs.tn) * w.negative + 0.0,
            "fn": c.fn * float(costs.fn) * w.positive + 0.0,
        }

    def value_entry(self, treated: NDArray) -> dict[str, float]:
        return _value_entry(sum(self.cells(treated).values()), self.n)

    def auc(self) -> float | None:
        return counts_auc(self.counts)

    def close(self, threshold: float, margin: float) -> dict[str, int]:
        s = self.scores
        near = close_to_threshold(s, threshold, margin)
        part = ScoreCounts(s[near], self.counts.positives[near], self.counts.negatives[near])
        counts = part.confusion(decide_threshold(part.scores, threshold)).counts()
        counts["total"] = part.n
        return counts

    def best(self) -> BestThreshold:
        return counts_best_threshold(self.counts, self.costs, self.weights)


def _evaluation(
    data: _Scores | _Counted,
    by_probability: _Scores | _Counted | None,
    costs: CostMatrix,
    threshold: float,
    margin: float,
    prevalence: float | None,
) -> tuple[dict[str, Any], list[float]]:
    """The entry's figures in the answer's order, and the thresholds it marks on the curve
    (the entry's own, Elkan's t* when on the score axis, the in-sample best)."""
    predicted = decide_threshold(data.scores, threshold)
    counts = data.confusion(predicted)
    result: dict[str, Any] = {
        "n": data.n,
        "prevalence": data.prevalence,
        "target_prevalence": None if prevalence is None else float(prevalence),
        "threshold": threshold,
        "margin": margin,
        "confusion": counts.counts(),
        "confusion_value": data.cells(predicted),
        "rates": counts.rates(),
        "accuracy": counts.accuracy,
        "per_class": counts.report(),
        "auc": data.auc(),
        "close_confusions": data.close(threshold, margin),
        **data.value_entry(predicted),
    }
    marks = [threshold]
    p = data if by_probability is None else by_probability
    if costs.per_instance:
        assert isinstance(p, _Scores)
        decisions = optimal_decisions(p.scores, costs)
        optimal = data.value_entry(decisions)
        result["elkan_threshold"] = {
            "value": None,
            "kind": "per_instance",
            "note": "per-instance values: each instance has its own threshold; "
            "see optimal_decision",
            **optimal,
        }
        result["optimal_decision"] = {
            "rule": "treat when p*v_tp + (1-p)*v_fp >= p*v_fn + (1-p)*v_tn"
            + (" (p = the score)" if by_probability is None else " (p = the probability)"),
            "n_treated": int(decisions.sum()),
            "decisions": decisions.astype(int).tolist(),
            **optimal,
        }
    else:
        elkan = elkan_threshold(costs)
        result["elkan_threshold"] = {
            **elkan.to_dict(),
            "applied_to": "score" if by_probability is None else "probability",
            **p.value_entry(elkan.decide(p.scores)),
        }
        # The curve's axis is the score: t* is a point on it only when scores are taken as
        # probabilities.
        if by_probability is None and elkan.kind in ("threshold", "always_positive"):
            marks.append(float(elkan.value))  # type: ignore[arg-type]
    best = data.best()
    result["best_threshold"] = best.to_dict()
    if best.threshold is not None:
        marks.append(best.threshold)
    size = len(data.scores)
    result["treat_none"] = data.value_entry(np.zeros(size, dtype=bool))
    result["treat_all"] = data.value_entry(np.ones(size, dtype=bool))
    return result, marks


def evaluate(
    labels: ArrayLike,
    scores: ArrayLike,
    costs: CostMatrix,
    threshold: float = DEFAULT_THRESHOLD,
    margin: float = DEFAULT_MARGIN,
    *,
    prevalence: float | None = None,
    curve: bool = False,
    curve_marks: Sequence[float] = (),
    probabilities: ArrayLike | None = None,
) -> dict[str, Any]:
    """Everything one ``/evaluate`` result entry shows, JSON-ready (no numpy types).

    ``probabilities``: the calibrated P(positive) of each instance (a calibrated model's
    ``probability`` output); Elkan's threshold and the per-instance optimal decisions, which
    treat a number as a probability, are taken on them, while everything about a threshold
    on the score (confusion, best threshold, curve) stays on ``scores``. None: the scores
    are taken as probabilities.

    ``prevalence``: value the decisions as if the positives were that share of the data
    (:func:`prevalence_weights`); counts, rates and AUC stay those of the data as given.
    ``curve``: add the expected value by threshold (:func:`value_curve`), sampled at
    ``curve_marks`` and at the thresholds this entry reports as well.
    """
    y, s = _inputs(labels, scores)
    threshold = _check_unit(threshold, "threshold")
    margin = _check_unit(margin, "margin")
    costs.check_length(len(y))
    data = _Scores(y, s, costs, prevalence)
    by_probability = (
        None
        if probabilities is None
        else _Scores(y, _inputs(labels, probabilities)[1], costs, prevalence)
    )
    result, marks = _evaluation(data, by_probability, costs, threshold, margin, prevalence)
    if curve:
        result["curve"] = value_curve(
            y, s, costs, [*marks[:1], *curve_marks, *marks[1:]], prevalence
        )
    result["warnings"] = costs.warnings()
    return result


def evaluate_counts(
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
    """:func:`evaluate` for the rows behind ``counts`` (the batch engine's merged
    partitions; scalar cost matrices; the warnings are left to the summary, as
    ``/evaluate`` does). ``probability_counts``, the same rows counted by a calibrated
    model's probability, decide Elkan's row as :func:`evaluate`'s ``probabilities`` do."""
    if costs.per_instance:
        raise EconomicsError("cost_matrix", "batch evaluation needs one value per outcome")
    if counts.n == 0:
        raise EconomicsError("labels", "empty: need at least one labeled instance")
    data = _Counted(counts, costs, prevalence)
    by_probability = (
        None if probability_counts is None else _Counted(probability_counts, costs, prevalence)
    )
    result, marks = _evaluation(data, by_probability, costs, threshold, margin, prevalence)
    if curve:
        result["curve"] = counts_curve(
            counts, costs, [*marks[:1], *curve_marks, *marks[1:]], data.weights
        )
    return result
