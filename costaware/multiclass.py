"""Multiclass cost-sensitive decisions and their evaluation, in pure numpy.

A **value matrix** ``{"classes": [names], "values": [[...], ...]}`` holds the dollar value
(negative = loss) of each (truth, decision) pair: ``values[i][j]`` is the value of
**deciding class j when the truth is class i** (row = truth, column = decision). Libraries
differ on this (scikit-learn's confusion matrix has truth in rows too; some cost-matrix
papers put the decision in rows), so every answer and document repeats it.

With calibrated class probabilities ``p(i|x)``, the expected value of deciding ``j`` is
``EV_j = sum_i p(i|x) * values[i][j]`` (``probabilities @ values``), and the decision is
``argmax_j EV_j`` (ties: the earlier class). A decision is *close* when the best two
actions' expected values are closer than a margin in the matrix's value unit (dollars per
instance). The values may also be one K x K matrix per instance (shape N x K x K).

Nothing here imports FastAPI or scikit-learn; training, the service and the batch engine
share it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from costaware.economics import EconomicsError, as_number, refuse_indifferent, shown

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
    """Class names and the values of (truth i, decision j): K x K, or N x K x K per instance."""

    classes: tuple[str, ...]
    values: NDArray[np.float64]

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


def as_probabilities(
    rows: ArrayLike, k: int, field: str = "scores", tolerance: float = PROBABILITY_TOLERANCE
) -> NDArray[np.float64]:
    """N x K class probabilities: each row K finite numbers in [0, 1] summing to 1 within
    ``tolerance``; the error names the first bad row (and cell)."""
    if isinstance(rows, np.ndarray) and rows.dtype.kind in "iuf":
        array = rows.astype(np.float64, copy=False)
    else:
        if not isinstance(rows, Sequence) or isinstance(rows, (str, bytes)):
            raise EconomicsError(field, f"expected a list of rows of {k} probabilities")
        for r, row in enumerate(rows):
            if not isinstance(row, (Sequence, np.ndarray)) or isinstance(row, (str, bytes)):
                raise EconomicsError(f"{field}[{r}]", f"expected a list of {k} probabilities")
            if len(row) != k:
                raise EconomicsError(
                    f"{field}[{r}]", f"has {len(row)} probabilities but there are {k} classes"
                )
            for j, cell in enumerate(row):
                as_number(cell, f"{field}[{r}][{j}]")
        array = np.asarray(rows, dtype=np.float64).reshape(len(rows), k)
    if array.ndim != 2 or array.shape[1] != k:
        raise EconomicsError(field, f"expected N x {k}, got shape {list(array.shape)}")
    if len(array) == 0:
        raise EconomicsError(field, "empty: need at least one row")
    finite = np.isfinite(array)
    if not finite.all():
        r, j = (int(i) for i in np.argwhere(~finite)[0])
        raise EconomicsError(f"{field}[{r}][{j}]", f"{array[r, j]} is not a finite number")
    inside = (array >= 0.0) & (array <= 1.0)
    if not inside.all():
        r, j = (int(i) for i in np.argwhere(~inside)[0])
        raise EconomicsError(f"{field}[{r}][{j}]", f"{array[r, j]} is not a probability in [0, 1]")
    sums = array.sum(axis=1)
    off = np.abs(sums - 1.0) > tolerance
    if off.any():
        r = int(np.argmax(off))
        total = float(sums[r])
        raise EconomicsError(f"{field}[{r}]", f"sums to {total!r}, not 1 (within {tolerance:g})")
    return array


def as_class_labels(
    labels: ArrayLike, classes: Sequence[str], field: str = "labels"
) -> NDArray[np.int64]:
    """Labels as class indices; each label a class name or an index 0..K-1."""
    if isinstance(labels, np.ndarray):
        labels = labels.tolist()
    if not isinstance(labels, Sequence) or isinstance(labels, (str, bytes)):
        raise EconomicsError(field, "expected a list of class names or indices")
    if len(labels) == 0:
        raise EconomicsError(field, "empty: need at least one labeled instance")
    lookup = {name: i for i, name in enumerate(classes)}
    out = np.empty(len(labels), dtype=np.int64)
    for index, label in enumerate(labels):
        if isinstance(label, str):
            if label not in lookup:
                raise EconomicsError(
                    f"{field}[{index}]", f"{label!r} is not one of the classes {list(classes)}"
                )
            out[index] = lookup[label]
        elif isinstance(label, Integral) and not isinstance(label, bool):
            if not 0 <= int(label) < len(classes):
                raise EconomicsError(
                    f"{field}[{index}]",
                    f"{shown(label)} is not a class index 0..{len(classes) - 1} nor a class name",
                )
            out[index] = int(label)
        elif isinstance(label, float) and label.is_integer() and 0 <= label < len(classes):
            out[index] = int(label)
        else:
            raise EconomicsError(f"{field}[{index}]", f"{label!r} is not a class name or index")
    return out


def class_labels_from_text(
    cells: Sequence[str], classes: Sequence[str], field: str = "labels"
) -> NDArray[np.int64]:
    """Labels read as text (a CSV column) as class indices, by the rule of
    :func:`as_class_labels`: a cell that is a class name is that class (names first, so
    classes named ``1``, ``2``, ``3`` mean those names), otherwise it must be an index
    0..K-1 (``2`` or ``2.0``)."""
    names = set(classes)
    return as_class_labels([_name_or_number(cell, names) for cell in cells], classes, field)


def _name_or_number(cell: str, names: set[str]) -> str | int | float:
    if cell in names:
        return cell
    for kind in (int, float):
        try:
            return kind(cell)
        except ValueError:
            pass
    return cell


# ---------------------------------------------------------------------------
# Decisions


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
    """``argmax_j EV_j`` (ties: the earlier class), with ``close`` when the best two are
    closer than ``margin`` (dollars: a number or one per instance) or, with
    ``score_margin``, than ``score_margin * gap_width`` (see :func:`gap_width`)."""
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


def _value_entry(values: NDArray) -> dict[str, float]:
    return {"expected_value": float(values.mean()), "total_value": float(values.sum())}


def best_single_class(always: dict[str, dict[str, float]]) -> dict[str, Any]:
    """The best of always deciding one class (ties: the earlier class), the baseline a
    model must beat to be worth running at all."""
    name = max(always, key=lambda c: always[c]["expected_value"])  # max keeps the first
    return {"class": name, **always[name]}


def _per_class(counts: NDArray, classes: Sequence[str]) -> dict[str, dict[str, Any]]:
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
        c: _value_entry(realised_values(y, np.full(len(y), j), matrix))
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
        "per_class": _per_class(counts, matrix.classes),
        "accuracy": float(np.trace(counts) / len(y)),
        **_value_entry(values),
        "close_confusions": {
            "total": int(close.sum()),
            "correct": int((close & (decisions.index == y)).sum()),
            "wrong": int((close & (decisions.index != y)).sum()),
        },
        "argmax_probability": {
            "accuracy": float(np.trace(argmax_counts) / len(y)),
            "confusion": argmax_counts.tolist(),
            **_value_entry(realised_values(y, argmax, matrix)),
        },
        "always": always,
        "best_single_class": best_single_class(always),
        "warnings": matrix.warnings(),
    }
