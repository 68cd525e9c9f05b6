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

import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Real
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from costaware.decision import DEFAULT_MARGIN, DEFAULT_THRESHOLD, close_to_threshold, decide

OUTCOMES = ("tp", "fp", "tn", "fn")
# The largest outcome value in magnitude: sums over millions of instances, and the
# differences between outcomes, stay far from float64's overflow (about 1.8e308), which
# would turn an expected value into inf or NaN.
MAX_OUTCOME_VALUE = 1e15

CostValue = float | NDArray[np.float64]


class EconomicsError(ValueError):
    """Bad input to an economic computation; ``field`` names what was wrong and where."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class CostMatrixError(EconomicsError):
    """A cost matrix with a missing, non-numeric, non-finite or mis-sized entry."""


def refuse_indifferent(
    values: ArrayLike, field: str, error: type[EconomicsError] = EconomicsError
) -> None:
    """The one rule for a matrix of decision values (``values[..., truth, decision]``: a
    binary cost matrix as :meth:`CostMatrix.as_value_matrix`, a multiclass value matrix,
    either per instance): it must prefer some decision to another for some truth. One
    under which every decision is worth the same for every truth (all zeros, say) makes
    every decision equally right, so deciding by it is arbitrary and a loss derived from
    it has nothing to learn; it is refused wherever a matrix comes in, naming ``field``."""
    array = np.asarray(values, dtype=np.float64)
    if array.size and bool((array.max(axis=-1) == array.min(axis=-1)).all()):
        raise error(
            field,
            "every decision has the same value whatever the truth (binary: v_tp = v_fn and "
            "v_tn = v_fp; multiclass: each row of values is constant), so no decision is "
            "better than another; give the outcomes the values they have",
        )


def shown(value: Any) -> str:
    """A value as an error message shows it; an integer of more than 20 digits by its
    first digits and its length (JSON integers have no size limit)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**20:
        digits = math.floor(math.log10(abs(value))) + 1
        head = abs(value) // 10 ** (digits - 12)  # the first 12 digits
        return f"{'-' if value < 0 else ''}{head}... ({digits} digits)"
    return repr(value)


def as_number(value: Any, field: str, error: type[EconomicsError] = EconomicsError) -> float:
    """The one rule by which a number from a request, a card or a command line becomes a
    float: a real number (a boolean is not one) within float64's range. JSON integers
    have no size limit and ``float(10**400)`` raises OverflowError, so such an integer is
    refused here, naming ``field``. Finiteness and narrower bounds are the caller's."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise error(field, f"{shown(value)} is not a number")
    try:
        return float(value)
    except OverflowError:
        raise error(
            field, f"{shown(value)} is beyond the range of a number (±{sys.float_info.max:.4g})"
        ) from None


def _first_non_number(original: Any, array: NDArray) -> tuple[int, Any]:
    """Index and value of the first element that is not a number (for the error message)."""
    values = original if isinstance(original, Sequence) else array.tolist()
    for index, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, Real):
            return index, value
    return 0, values[0]


def _numbers(values: Any, field: str, error: type[EconomicsError]) -> NDArray:
    """A list numpy could not make numeric (integers past 64 bits, non-numbers): each
    element through :func:`as_number`, which names the first one at fault."""
    return np.array(
        [as_number(value, f"{field}[{index}]", error) for index, value in enumerate(values)],
        dtype=np.float64,
    )


def _as_float_array(values: ArrayLike, field: str, error: type[EconomicsError]) -> NDArray:
    """A 1-D finite float64 array, or an error naming the first offending element."""
    if isinstance(values, np.ndarray):
        array = values
    else:
        try:
            array = np.asarray(values)
        except (ValueError, TypeError) as exc:
            raise error(field, f"not a list of numbers ({exc})") from exc
    if array.ndim != 1:
        raise error(field, f"expected a flat list of numbers, got shape {list(array.shape)}")
    if array.dtype.kind not in "iuf":
        if array.dtype.kind == "b":
            raise error(field, "expected numbers, got booleans")
        array = _numbers(array.tolist() if isinstance(values, np.ndarray) else values, field, error)
    array = array.astype(np.float64, copy=False)
    finite = np.isfinite(array)
    if not finite.all():
        index = int(np.argmin(finite))
        raise error(f"{field}[{index}]", f"{array[index]} is not a finite number")
    return array


def _as_float(value: Any, field: str, error: type[EconomicsError]) -> float:
    number = as_number(value, field, error)
    if not math.isfinite(number):
        raise error(field, f"{number} is not a finite number")
    return number


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
# Inputs


def as_labels(labels: ArrayLike, field: str = "labels") -> NDArray[np.int8]:
    """0/1 labels as an int8 array, or an error naming the first bad one."""
    array = labels if isinstance(labels, np.ndarray) else np.asarray(labels)
    if array.ndim != 1:
        raise EconomicsError(field, f"expected a flat list of 0/1, got shape {list(array.shape)}")
    if len(array) == 0:
        raise EconomicsError(field, "empty: need at least one labeled instance")
    if array.dtype.kind == "b":
        return array.astype(np.int8)
    if array.dtype.kind not in "iuf":
        index, value = _first_non_number(labels, array)
        if isinstance(value, Real) and not isinstance(value, bool):
            index = next(i for i, v in enumerate(labels) if v not in (0, 1))
            value = labels[index]
        raise EconomicsError(f"{field}[{index}]", f"{shown(value)} is not 0 or 1")
    ok = (array == 0) | (array == 1)
    if not ok.all():
        index = int(np.argmin(ok))
        raise EconomicsError(f"{field}[{index}]", f"{array[index].item()!r} is not 0 or 1")
    return array.astype(np.int8)


def as_scores(scores: ArrayLike, field: str = "scores") -> NDArray[np.float64]:
    """Probabilities in [0, 1] as float64, or an error naming the first bad one."""
    array = _as_float_array(scores, field, EconomicsError)
    if len(array) == 0:
        raise EconomicsError(field, "empty: need at least one score")
    inside = (array >= 0.0) & (array <= 1.0)
    if not inside.all():
        index = int(np.argmin(inside))
        raise EconomicsError(f"{field}[{index}]", f"{array[index]} is not a probability in [0, 1]")
    return array


def _inputs(labels: ArrayLike, scores: ArrayLike) -> tuple[NDArray, NDArray]:
    y = as_labels(labels)
    s = as_scores(scores)
    if len(y) != len(s):
        raise EconomicsError("labels", f"has {len(y)} labels but there are {len(s)} scores")
    return y, s


def _check_unit(value: float, field: str) -> float:
    number = _as_float(value, field, EconomicsError)
    if not 0.0 <= number <= 1.0:
        raise EconomicsError(field, f"{number} is outside [0, 1]")
    return number


# ---------------------------------------------------------------------------
# Counting


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


@dataclass(frozen=True)
class Confusion:
    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.tn + self.fn

    @property
    def accuracy(self) -> float:
        return (self.tp + self.tn) / self.n

    def counts(self) -> dict[str, int]:
        return {"tp": self.tp, "fp": self.fp, "tn": self.tn, "fn": self.fn}

    def rates(self) -> dict[str, float | None]:
        """Rates; None where the denominator is zero (e.g. FNR with no positives)."""
        return {
            "tpr": _ratio(self.tp, self.tp + self.fn),
            "fnr": _ratio(self.fn, self.tp + self.fn),
            "fpr": _ratio(self.fp, self.fp + self.tn),
            "tnr": _ratio(self.tn, self.fp + self.tn),
            "precision": _ratio(self.tp, self.tp + self.fp),
            "npv": _ratio(self.tn, self.tn + self.fn),
            "accuracy": self.accuracy,
        }


def _count(y: NDArray, predicted: NDArray) -> Confusion:
    positive = y == 1
    tp = int(np.count_nonzero(predicted & positive))
    fp = int(np.count_nonzero(predicted & ~positive))
    fn = int(np.count_nonzero(positive)) - tp
    tn = len(y) - tp - fp - fn
    return Confusion(tp=tp, fp=fp, tn=tn, fn=fn)


def confusion(labels: ArrayLike, scores: ArrayLike, threshold: float) -> Confusion:
    """Confusion counts with ``predicted = score >= threshold``."""
    y, s = _inputs(labels, scores)
    return _count(y, decide(s, _check_unit(threshold, "threshold")))


def accuracy(labels: ArrayLike, scores: ArrayLike, threshold: float) -> float:
    return confusion(labels, scores, threshold).accuracy


def classification_report(labels: ArrayLike, predicted: ArrayLike) -> dict[str, dict[str, Any]]:
    """Per class ("0", "1"): precision, recall, f1, support; 0.0 where undefined (as sklearn)."""
    y = as_labels(labels)
    p = as_labels(predicted, field="predicted")
    if len(y) != len(p):
        raise EconomicsError("predicted", f"has {len(p)} values but there are {len(y)} labels")
    report = {}
    for cls in (0, 1):
        hit = int(np.count_nonzero((y == cls) & (p == cls)))
        support = int(np.count_nonzero(y == cls))
        called = int(np.count_nonzero(p == cls))
        precision = hit / called if called else 0.0
        recall = hit / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        report[str(cls)] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
    return report


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
    counts = _count(y[close], decide(s[close], threshold)).counts()
    counts["total"] = int(np.count_nonzero(close))
    return counts


# ---------------------------------------------------------------------------
# Value


def outcome_values(labels: ArrayLike, predicted: ArrayLike, costs: CostMatrix) -> NDArray:
    """Each instance's dollar value given its label and the decision taken."""
    y = np.asarray(labels) == 1
    p = np.asarray(predicted).astype(bool)
    costs.check_length(len(y))
    return np.where(y, np.where(p, costs.tp, costs.fn), np.where(p, costs.fp, costs.tn)).astype(
        np.float64
    )


def total_value(labels: ArrayLike, scores: ArrayLike, threshold: float, costs: CostMatrix) -> float:
    y, s = _inputs(labels, scores)
    return float(outcome_values(y, decide(s, _check_unit(threshold, "threshold")), costs).sum())


def expected_value(
    labels: ArrayLike, scores: ArrayLike, threshold: float, costs: CostMatrix
) -> float:
    """Mean outcome value per instance (the reference formula, generalised per instance)."""
    y, s = _inputs(labels, scores)
    return float(outcome_values(y, decide(s, _check_unit(threshold, "threshold")), costs).mean())


ElkanKind = Literal["threshold", "always_positive", "always_negative", "indifferent", "inverted"]


@dataclass(frozen=True)
class ElkanThreshold:
    """Elkan's optimal threshold for calibrated scores, or what replaces it when degenerate.

    ``kind``: ``threshold`` (treat when s >= value, 0 < value < 1); ``always_positive``
    (treating is never worse; value 0.0); ``always_negative`` (never treating is never
    worse; value None); ``indifferent`` (every decision is worth the same; value None);
    ``inverted`` (the matrix rewards wrong decisions: treat when s <= value).
    """

    kind: ElkanKind
    value: float | None
    note: str

    def decide(self, scores: NDArray) -> NDArray[np.bool_]:
        if self.kind == "threshold":
            return decide(scores, self.value)
        if self.kind == "always_positive":
            return np.ones(len(scores), dtype=bool)
        if self.kind == "inverted":
            return scores <= self.value
        return np.zeros(len(scores), dtype=bool)

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "kind": self.kind, "note": self.note}


def elkan_threshold(costs: CostMatrix) -> ElkanThreshold:
    """``t* = (v_tn - v_fp) / ((v_tn - v_fp) + (v_tp - v_fn))`` with the degenerate cases named.

    Treating is optimal when ``s * b >= (1 - s) * a`` with ``b = v_tp - v_fn`` and
    ``a = v_tn - v_fp``; the cases follow from the signs of a and b, so nothing divides by zero.
    """
    if costs.per_instance:
        raise CostMatrixError(
            "cost_matrix", "Elkan's single threshold needs a scalar matrix; use optimal_decisions"
        )
    b, a = (float(x) for x in costs.treat_gain())
    if a > 0 and b > 0:
        return ElkanThreshold("threshold", a / (a + b), "treat when P(positive) >= t*")
    if a == 0 and b == 0:
        return ElkanThreshold(
            "indifferent", None, "v_tp = v_fn and v_tn = v_fp: every decision is worth the same"
        )
    if a <= 0 and b >= 0:
        return ElkanThreshold(
            "always_positive",
            0.0,
            "v_fp >= v_tn and v_tp >= v_fn: treating everyone is optimal whatever the score",
        )
    if a >= 0 and b <= 0:
        return ElkanThreshold(
            "always_negative",
            None,
            "v_fn >= v_tp and v_tn >= v_fp: treating no one is optimal whatever the score",
        )
    return ElkanThreshold(
        "inverted",
        a / (a + b),
        "v_fp > v_tn and v_fn > v_tp: the matrix rewards wrong decisions; "
        "treat when score <= this value",
    )


def optimal_decisions(scores: ArrayLike, costs: CostMatrix) -> NDArray[np.bool_]:
    """Per instance, treat when ``s*v_tp + (1-s)*v_fp >= s*v_fn + (1-s)*v_tn`` (calibrated s)."""
    s = as_scores(scores)
    costs.check_length(len(s))
    gain_pos, gain_neg = costs.treat_gain()
    return s * gain_pos >= (1.0 - s) * gain_neg


# ---------------------------------------------------------------------------
# Thresholds


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
# One result


def _value_entry(values: NDArray) -> dict[str, float]:
    expected = float(values.mean())
    return {
        "expected_value": expected,
        "total_value": float(values.sum()),
        "per_1000_decisions": per_1000_decisions(expected),
    }


def _confusion_value(y: NDArray, predicted: NDArray, values: NDArray) -> dict[str, float]:
    """Dollars in each confusion cell: the sum of its instances' outcome values."""
    positive = y == 1
    cells = {
        "tp": predicted & positive,
        "fp": predicted & ~positive,
        "tn": ~predicted & ~positive,
        "fn": ~predicted & positive,
    }
    return {name: float(values[cell].sum()) for name, cell in cells.items()}


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
    weights = prevalence_weights(y, prevalence)

    def weighted_values(decisions: NDArray) -> NDArray:
        values = outcome_values(y, decisions, costs)
        return values if weights is None else values * weights

    n = len(y)
    p = s if probabilities is None else _inputs(labels, probabilities)[1]
    predicted = decide(s, threshold)
    counts = _count(y, predicted)
    values = weighted_values(predicted)
    result: dict[str, Any] = {
        "n": n,
        "prevalence": float(y.mean()),
        "target_prevalence": None if prevalence is None else float(prevalence),
        "threshold": threshold,
        "margin": margin,
        "confusion": counts.counts(),
        "confusion_value": _confusion_value(y, predicted, values),
        "rates": counts.rates(),
        "accuracy": counts.accuracy,
        "per_class": classification_report(y, predicted),
        "auc": _roc_auc(y, s),
        "close_confusions": _close_confusions(y, s, threshold, margin),
        **_value_entry(values),
    }
    marks = [threshold, *curve_marks]
    if costs.per_instance:
        decisions = optimal_decisions(p, costs)
        optimal = _value_entry(weighted_values(decisions))
        result["elkan_threshold"] = {
            "value": None,
            "kind": "per_instance",
            "note": "per-instance values: each instance has its own threshold; "
            "see optimal_decision",
            **optimal,
        }
        result["optimal_decision"] = {
            "rule": "treat when p*v_tp + (1-p)*v_fp >= p*v_fn + (1-p)*v_tn"
            + (" (p = the score)" if probabilities is None else " (p = the probability)"),
            "n_treated": int(decisions.sum()),
            "decisions": decisions.astype(int).tolist(),
            **optimal,
        }
    else:
        elkan = elkan_threshold(costs)
        result["elkan_threshold"] = {
            **elkan.to_dict(),
            "applied_to": "score" if probabilities is None else "probability",
            **_value_entry(weighted_values(elkan.decide(p))),
        }
        # The curve's axis is the score: t* is a point on it only when scores are taken as
        # probabilities.
        if probabilities is None and elkan.kind in ("threshold", "always_positive"):
            marks.append(elkan.value)
    best = _best_threshold(y, s, costs, weights)
    result["best_threshold"] = best.to_dict()
    if best.threshold is not None:
        marks.append(best.threshold)
    result["treat_none"] = _value_entry(weighted_values(np.zeros(n, dtype=bool)))
    result["treat_all"] = _value_entry(weighted_values(np.ones(n, dtype=bool)))
    if curve:
        result["curve"] = value_curve(y, s, costs, marks, prevalence)
    result["warnings"] = costs.warnings()
    return result
