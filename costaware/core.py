"""The K-class decision core, in pure numpy: values, the decision rule, counts, dollars.

A **value matrix** holds the dollar value (negative = loss) of each (truth, decision) pair:
``values[i][j]`` is the value of **deciding class j when the truth is class i** (row =
truth, column = decision). Libraries differ on this (scikit-learn's confusion matrix has
truth in rows too; some cost-matrix papers put the decision in rows), so every answer and
document repeats it. The values may be one K x K matrix, or one per instance (N x K x K).

With calibrated class probabilities ``p(i|x)`` the expected value of deciding ``j`` is
``EV_j = sum_i p(i|x) * values[i][j]``, and the decision is the ``j`` with the highest
``EV_j`` (:func:`decide`; :data:`TIE_RULE` says what a tie decides). A decision is *close*
when the best two actions' expected values are closer than a margin in the matrix's value
unit (dollars per instance).

A binary model is the K = 2 case (classes ``"0"``, ``"1"``; decision 1 = treat), parsed
from ``tp/fp/tn/fn`` by :class:`costaware.economics.CostMatrix`; what exists only for a
one-dimensional score (thresholds, sweeps, ROC) is :mod:`costaware.threshold`. Here also:
the number rules every input goes through, confusion counts (K x K, and the binary cells),
realised values, and :class:`ScoreCounts`, the mergeable summary of labelled scores.

Nothing here imports FastAPI or scikit-learn; training, the service and the batch engine
share it.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from numbers import Real
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from costaware.decision import decide as decide_threshold


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


ORIENTATION = "values[i][j] = value of deciding class j when the truth is class i"
PROBABILITY_TOLERANCE = 1e-6


class ValueMatrixError(EconomicsError):
    """A malformed value matrix; ``field`` names the entry."""


def _first_bad_cell(rows: Any, field: str, k: int) -> None:
    """Raise naming the first row of the wrong length or the first non-finite cell."""
    if not isinstance(rows, (Sequence, np.ndarray)) or isinstance(rows, (str, bytes)):
        raise ValueMatrixError(field, "expected a list of rows")
    if len(rows) != k:
        raise ValueMatrixError(
            field, f"has {len(rows)} rows but there are {k} classes (the matrix must be K x K)"
        )
    for i, row in enumerate(rows):
        where = f"{field}[{i}]"
        if not isinstance(row, (Sequence, np.ndarray)) or isinstance(row, (str, bytes)):
            raise ValueMatrixError(where, "expected a list of numbers")
        if len(row) != k:
            raise ValueMatrixError(
                where,
                f"has {len(row)} values but there are {k} classes (the matrix must be K x K)",
            )
        for j, cell in enumerate(row):
            number = as_number(cell, f"{where}[{j}]", ValueMatrixError)
            if not np.isfinite(number):
                raise ValueMatrixError(f"{where}[{j}]", f"{number} is not a finite number")


@dataclass(frozen=True, eq=False)
class ValueMatrix:
    """Class names and the values of (truth i, decision j): K x K, or N x K x K per instance.

    ``binary``: the two-class matrix ``[[tn, fp], [fn, tp]]`` of a binary model's cost
    matrix (:meth:`costaware.economics.CostMatrix.value_matrix`), decided by the binary
    form of the rule (see :func:`decide`)."""

    classes: tuple[str, ...]
    values: NDArray[np.float64]
    binary: bool = False

    def __post_init__(self) -> None:
        classes = tuple(self.classes)
        object.__setattr__(self, "classes", classes)
        k = len(classes)
        if k < 2:
            raise ValueMatrixError("cost_matrix.classes", "needs at least 2 classes")
        for index, name in enumerate(classes):
            if not isinstance(name, str) or not name:
                raise ValueMatrixError(
                    f"cost_matrix.classes[{index}]", f"{name!r} is not a class name"
                )
        duplicate = next((c for c in classes if classes.count(c) > 1), None)
        if duplicate is not None:
            raise ValueMatrixError("cost_matrix.classes", f"{duplicate!r} given twice")
        values = np.array(self.values, dtype=np.float64)
        if values.ndim not in (2, 3) or values.shape[-2:] != (k, k):
            raise ValueMatrixError(
                "cost_matrix.values",
                f"has shape {list(values.shape)}; expected {k} x {k} (one row and one column "
                "per class), or N x K x K",
            )
        bad = ~(np.abs(values) <= MAX_ABS_VALUE)  # NaN fails the comparison too
        if bad.any():
            index = tuple(int(i) for i in np.argwhere(bad)[0])
            where = "".join(f"[{i}]" for i in index)
            raise ValueMatrixError(
                f"cost_matrix.values{where}",
                f"{values[index]} is not a finite number within ±{MAX_ABS_VALUE:g}",
            )
        values.flags.writeable = False
        object.__setattr__(self, "values", values)

    @classmethod
    def of_binary(cls, values: NDArray[np.float64]) -> ValueMatrix:
        """A binary model's ``[[tn, fp], [fn, tp]]`` (or N x 2 x 2), already checked by its
        parser (:class:`costaware.economics.CostMatrix`: finite, within
        :data:`MAX_ABS_VALUE`); built without checking again, since a prediction with a
        cost matrix builds one per request."""
        matrix = object.__new__(cls)
        array = np.asarray(values, dtype=np.float64)
        array.flags.writeable = False
        object.__setattr__(matrix, "classes", BINARY_CLASSES)
        object.__setattr__(matrix, "values", array)
        object.__setattr__(matrix, "binary", True)
        return matrix

    @classmethod
    def from_mapping(cls, mapping: Any, prefix: str = "cost_matrix") -> ValueMatrix:
        """From a JSON object ``{"classes": [...], "values": [[...], ...]}``."""
        if not isinstance(mapping, Mapping):
            raise ValueMatrixError(prefix, "expected an object with classes and values")
        unknown = sorted(str(key) for key in mapping if key not in ("classes", "values"))
        if unknown:
            raise ValueMatrixError(
                f"{prefix}.{unknown[0]}", "unknown entry (expected classes and values)"
            )
        for key in ("classes", "values"):
            if mapping.get(key) is None:
                raise ValueMatrixError(f"{prefix}.{key}", "missing")
        classes = mapping["classes"]
        if not isinstance(classes, Sequence) or isinstance(classes, (str, bytes)):
            raise ValueMatrixError(f"{prefix}.classes", "expected a list of class names")
        _first_bad_cell(mapping["values"], f"{prefix}.values", len(classes))
        try:
            matrix = cls(tuple(classes), np.asarray(mapping["values"], dtype=np.float64))
        except ValueMatrixError as exc:
            if prefix == "cost_matrix":
                raise
            field = exc.field.replace("cost_matrix", prefix, 1)
            raise ValueMatrixError(field, exc.message) from exc
        refuse_indifferent(matrix.values, f"{prefix}.values", ValueMatrixError)
        return matrix

    @property
    def k(self) -> int:
        return len(self.classes)

    @property
    def per_instance(self) -> bool:
        return self.values.ndim == 3

    @property
    def n(self) -> int | None:
        return self.values.shape[0] if self.per_instance else None

    def check_length(self, n: int) -> None:
        if self.per_instance and self.values.shape[0] != n:
            raise ValueMatrixError(
                "cost_matrix.values",
                f"has {self.values.shape[0]} per-instance matrices but there are {n} instances",
            )

    def check_classes(self, classes: Sequence[str], field: str = "cost_matrix.classes") -> None:
        """The matrix must name the model's classes in the model's order."""
        if tuple(classes) != self.classes:
            raise ValueMatrixError(
                field,
                f"{list(self.classes)} does not match the model's classes {list(classes)} "
                "(same names, same order)",
            )

    def to_dict(self) -> dict[str, Any]:
        return {"classes": list(self.classes), "values": self.values.tolist()}

    def warnings(self) -> list[str]:
        """Columns where deciding a class is worth less, for its own truth, than another
        decision would be (the analogue of Elkan's reasonableness conditions)."""
        if self.per_instance:
            return []
        found = []
        for i, name in enumerate(self.classes):
            row = self.values[i]
            better = [self.classes[j] for j in range(self.k) if j != i and row[j] > row[i]]
            if better:
                found.append(
                    f"cost_matrix.values[{i}]: when the truth is {name!r}, deciding "
                    f"{', '.join(repr(b) for b in better)} is worth more than deciding {name!r}"
                )
        return found


# The default close-decision margin: this fraction of the matrix's largest regret
# (``max_k values[i, k] - values[i, j]``), in the matrix's value unit.
DEFAULT_MARGIN_FRACTION = 0.05
# Values beyond this (in absolute value) could overflow the expected-value sums.
MAX_ABS_VALUE = 1e15


def largest_regret(matrix: ValueMatrix) -> float:
    """The most a decision can lose against the best one for the same truth."""
    values = matrix.values
    return float((values.max(axis=-1, keepdims=True) - values).max())


def default_margin(matrix: ValueMatrix) -> float:
    """:data:`DEFAULT_MARGIN_FRACTION` of :func:`largest_regret`, in dollars."""
    return DEFAULT_MARGIN_FRACTION * largest_regret(matrix)


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
# Decisions

# The one tie rule. K classes: a tie between the best actions goes to the earlier class.
# Binary (decision 1 = treat): a tie treats, which is what thresholding at Elkan's t*
# (``score >= t*``) does, so the two forms of the binary rule never disagree.
BINARY_CLASSES = ("0", "1")
TIE_RULE = "ties: the earlier class (binary: treat)"


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
            return decide_threshold(scores, self.value)
        if self.kind == "always_positive":
            return np.ones(len(scores), dtype=bool)
        if self.kind == "inverted":
            return scores <= self.value
        return np.zeros(len(scores), dtype=bool)

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "kind": self.kind, "note": self.note}


def elkan_threshold(costs: Any) -> ElkanThreshold:
    """``t* = (v_tn - v_fp) / ((v_tn - v_fp) + (v_tp - v_fn))`` with the degenerate cases named.

    Treating is optimal when ``s * b >= (1 - s) * a`` with ``b = v_tp - v_fn`` and
    ``a = v_tn - v_fp``; the cases follow from the signs of a and b, so nothing divides by zero.
    """
    if costs.per_instance:
        raise CostMatrixError(
            "cost_matrix", "Elkan's single threshold needs a scalar matrix; use optimal_decisions"
        )
    b, a = (float(x) for x in costs.treat_gain())
    return _elkan(a, b)


def _elkan(a: float, b: float) -> ElkanThreshold:
    """The cases of ``s * b >= (1 - s) * a`` for one matrix (``a = v_tn - v_fp``,
    ``b = v_tp - v_fn``)."""
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


def expected_values(probabilities: NDArray, matrix: ValueMatrix) -> NDArray[np.float64]:
    """``EV[n, j] = sum_i p[n, i] * values[i, j]`` (or the instance's own matrix)."""
    p = np.asarray(probabilities, dtype=np.float64)
    matrix.check_length(len(p))
    if matrix.per_instance:
        return np.einsum("ni,nij->nj", p, matrix.values)
    return p @ matrix.values


def gap_width(matrix: ValueMatrix, best: NDArray, second: NDArray) -> NDArray[np.float64]:
    """How far the gap ``EV_best - EV_second`` can move over all probability vectors:
    ``max_i d_i - min_i d_i`` with ``d_i = values[i, best] - values[i, second]``. For two
    classes this is ``(v_tn - v_fp) + (v_tp - v_fn)``, so ``score_margin * width`` is the
    value margin equivalent to ``|p - t*| < score_margin``."""
    values = matrix.values
    if matrix.per_instance:
        rows = np.arange(len(best))
        d = values[rows, :, best] - values[rows, :, second]
    else:
        d = (values[:, best] - values[:, second]).T
    return d.max(axis=1) - d.min(axis=1)


@dataclass(frozen=True)
class Decisions:
    """Per instance: the decided class index, every action's expected value, the gap
    between the best two and whether it is under the margin (dollars)."""

    index: NDArray[np.int64]
    expected_values: NDArray[np.float64]  # N x K
    second: NDArray[np.int64]
    gap: NDArray[np.float64]
    close: NDArray[np.bool_]


def decide(
    probabilities: NDArray,
    matrix: ValueMatrix,
    margin: ArrayLike | None = None,
    score_margin: float | None = None,
) -> Decisions:
    """The action with the highest expected value for each instance (:data:`TIE_RULE`),
    with ``close`` when the best two are closer than ``margin`` (dollars: a number or one
    per instance) or, with ``score_margin``, than ``score_margin * gap_width`` (see
    :func:`gap_width`).

    A binary matrix (``matrix.binary``; ``probabilities`` the rows ``[1 - p, p]``) decides
    by the sign of the treat gain, ``p*(v_tp - v_fn) >= (1-p)*(v_tn - v_fp)``, and with one
    matrix for every instance as the threshold it reduces to (Elkan's t*), so that a score
    exactly at t* (as a float) is treated whatever the products round to; its expected
    values are taken term by term (``einsum``), as the binary formulas always were."""
    if matrix.binary:
        p = np.asarray(probabilities, dtype=np.float64)
        if margin is None and score_margin is not None:
            margin = value_margin(score_margin, matrix, len(p))
        return _decide_binary(p, matrix, margin)
    ev = expected_values(probabilities, matrix)
    n = len(ev)
    order = np.argsort(-ev, axis=1, kind="stable")
    best, second = order[:, 0], order[:, 1]
    rows = np.arange(n)
    gap = ev[rows, best] - ev[rows, second]
    if margin is None:
        if score_margin is None:
            raise ValueError("decide needs margin or score_margin")
        limit = float(score_margin) * gap_width(matrix, best, second)
    else:
        limit = np.broadcast_to(np.asarray(margin, dtype=np.float64), (n,))
    return Decisions(index=best, expected_values=ev, second=second, gap=gap, close=gap < limit)


def _decide_binary(p: NDArray, matrix: ValueMatrix, margin: ArrayLike | None) -> Decisions:
    matrix.check_length(len(p))
    s, rest = p[:, 1], p[:, 0]
    values = matrix.values
    gain_pos = values[..., 1, 1] - values[..., 1, 0]  # v_tp - v_fn
    gain_neg = values[..., 0, 0] - values[..., 0, 1]  # v_tn - v_fp
    if matrix.per_instance:
        treat = s * gain_pos >= rest * gain_neg
        ev = np.einsum("ni,nij->nj", p, values)
    else:
        treat = _elkan(float(gain_neg), float(gain_pos)).decide(s)
        ev = np.einsum("ni,ij->nj", p, values)
    index = np.asarray(treat, dtype=np.int64)
    gap = np.abs(ev[:, 1] - ev[:, 0])
    limit = _binary_margin(0.0 if margin is None else margin, len(p))
    return Decisions(index=index, expected_values=ev, second=1 - index, gap=gap, close=gap < limit)


def _binary_margin(margin: ArrayLike, n: int, field: str = "margin") -> NDArray[np.float64]:
    array = np.asarray(margin, dtype=np.float64)
    if array.ndim > 1 or (array.ndim == 1 and len(array) != n):
        raise EconomicsError(field, f"expected a number or {n} numbers")
    if not np.isfinite(array).all():
        raise EconomicsError(field, "is not a finite number")
    if (array < 0).any():
        raise EconomicsError(field, "must be >= 0")
    return np.broadcast_to(array, (n,))


def binary_probabilities(scores: NDArray) -> NDArray[np.float64]:
    """A binary model's P(positive) as the rows ``[1 - p, p]`` the K-class rule takes."""
    s = np.asarray(scores, dtype=np.float64)
    return np.column_stack([1.0 - s, s])


def value_margin(score_margin: float, matrix: ValueMatrix, n: int) -> NDArray[np.float64]:
    """The value margin (dollars, per instance) equivalent to ``|p - t*_i| < score_margin``
    for a binary matrix: ``score_margin * gap_width``, i.e.
    ``score_margin * |(v_tn - v_fp) + (v_tp - v_fn)|``."""
    treat = np.ones(n, dtype=np.int64)
    return float(score_margin) * gap_width(matrix, treat, 1 - treat)


# ---------------------------------------------------------------------------
# Evaluation


def confusion_matrix(truth: NDArray, decided: NDArray, k: int) -> NDArray[np.int64]:
    """K x K counts: row = truth, column = decision."""
    return np.bincount(truth * k + decided, minlength=k * k).reshape(k, k)


def realised_values(truth: NDArray, decided: NDArray, matrix: ValueMatrix) -> NDArray[np.float64]:
    """Each instance's value: ``values[truth, decision]`` (its own matrix when per instance)."""
    matrix.check_length(len(truth))
    if matrix.per_instance:
        return matrix.values[np.arange(len(truth)), truth, decided]
    return matrix.values[truth, decided]


def confusion_value(
    truth: NDArray, decided: NDArray, values: NDArray, k: int
) -> NDArray[np.float64]:
    """K x K dollars: the sum of the realised ``values`` of each (truth, decision) cell."""
    return np.bincount(truth * k + decided, weights=values, minlength=k * k).reshape(k, k)


def value_entry(values: NDArray) -> dict[str, float]:
    """The mean and the total of realised values."""
    return {"expected_value": float(values.mean()), "total_value": float(values.sum())}


def best_single_class(always: dict[str, dict[str, float]]) -> dict[str, Any]:
    """The best of always deciding one class (ties: the earlier class), the baseline a
    model must beat to be worth running at all."""
    name = max(always, key=lambda c: always[c]["expected_value"])  # max keeps the first
    return {"class": name, **always[name]}


def per_class(counts: NDArray, classes: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per class: support, times decided, recall (TPR), precision, f1, FNR and FPR;
    None where the denominator is zero."""
    n = int(counts.sum())
    out = {}
    for j, name in enumerate(classes):
        hit = int(counts[j, j])
        support = int(counts[j].sum())
        decided = int(counts[:, j].sum())
        negatives = n - support
        false_pos = decided - hit
        recall = hit / support if support else None
        precision = hit / decided if decided else None
        f1 = (
            2 * precision * recall / (precision + recall)
            if precision is not None and recall is not None and precision + recall
            else None
        )
        out[name] = {
            "support": support,
            "decided": decided,
            "recall": recall,
            "precision": precision,
            "f1": f1,
            "fnr": (support - hit) / support if support else None,
            "fpr": false_pos / negatives if negatives else None,
        }
    return out


def evaluate(
    labels: NDArray,
    probabilities: NDArray,
    matrix: ValueMatrix,
    score_margin: float = 0.1,
    margin: ArrayLike | None = None,
) -> dict[str, Any]:
    """Everything one multiclass ``/evaluate`` result shows, JSON-ready.

    ``labels``: class indices (see :func:`as_class_labels`); ``probabilities``: N x K rows
    (see :func:`as_probabilities`). Decisions are the minimum-expected-cost ones
    (:func:`decide`); for comparison, the value of deciding the most probable class
    (``argmax_probability``), of always deciding each single class (``always``) and the
    best of those (``best_single_class``). ``confusion.value`` holds the dollars of each
    confusion cell (the sum of its instances' values; they add up to ``total_value``).
    """
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(probabilities, dtype=np.float64)
    k = matrix.k
    if p.shape != (len(y), k):
        raise EconomicsError("labels", f"has {len(y)} labels but there are {len(p)} rows")
    decisions = decide(p, matrix, margin=margin, score_margin=score_margin)
    counts = confusion_matrix(y, decisions.index, k)
    values = realised_values(y, decisions.index, matrix)
    argmax = np.argmax(p, axis=1)
    argmax_counts = confusion_matrix(y, argmax, k)
    close = decisions.close
    always = {
        c: value_entry(realised_values(y, np.full(len(y), j), matrix))
        for j, c in enumerate(matrix.classes)
    }
    return {
        "n": len(y),
        "classes": list(matrix.classes),
        "orientation": ORIENTATION,
        "decision_rule": "argmax_j sum_i p(i|x) * values[i][j] (ties: the earlier class)",
        "prevalence": {c: float(np.mean(y == i)) for i, c in enumerate(matrix.classes)},
        "confusion": {
            "orientation": "rows = truth, columns = decision, in the order of classes",
            "counts": counts.tolist(),
            "value": confusion_value(y, decisions.index, values, k).tolist(),
        },
        "per_class": per_class(counts, matrix.classes),
        "accuracy": float(np.trace(counts) / len(y)),
        **value_entry(values),
        "close_confusions": {
            "total": int(close.sum()),
            "correct": int((close & (decisions.index == y)).sum()),
            "wrong": int((close & (decisions.index != y)).sum()),
        },
        "argmax_probability": {
            "accuracy": float(np.trace(argmax_counts) / len(y)),
            "confusion": argmax_counts.tolist(),
            **value_entry(realised_values(y, argmax, matrix)),
        },
        "always": always,
        "best_single_class": best_single_class(always),
        "warnings": matrix.warnings(),
    }


# ---------------------------------------------------------------------------
# Binary counts


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

    def matrix(self) -> NDArray[np.int64]:
        """The K = 2 confusion matrix ``[[tn, fp], [fn, tp]]`` (row = truth)."""
        return np.array([[self.tn, self.fp], [self.fn, self.tp]], dtype=np.int64)

    @classmethod
    def of(cls, truth: NDArray, decided: NDArray) -> Confusion:
        """The binary cells of :func:`confusion_matrix` for 0/1 labels and decisions."""
        (tn, fp), (fn, tp) = confusion_matrix(
            np.asarray(truth, dtype=np.int64), np.asarray(decided, dtype=np.int64), 2
        ).tolist()
        return cls(tp=tp, fp=fp, tn=tn, fn=fn)

    def report(self) -> dict[str, dict[str, Any]]:
        """Per class ("0", "1"): precision, recall, f1, support, from the K-class
        :func:`per_class`; 0.0 where undefined (as scikit-learn)."""
        return {
            name: {
                "precision": entry["precision"] or 0.0,
                "recall": entry["recall"] or 0.0,
                "f1": entry["f1"] or 0.0,
                "support": entry["support"],
            }
            for name, entry in per_class(self.matrix(), BINARY_CLASSES).items()
        }


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
