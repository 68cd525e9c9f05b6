"""The K-class model's own parser, in pure numpy: class probabilities (N x K rows) and
class labels (names or indices). The value matrix, the decision rule and the evaluation
are the K-class core's (:mod:`costaware.core`); a binary model's inputs are parsed by
:mod:`costaware.economics`.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral

import numpy as np
from numpy.typing import ArrayLike, NDArray

from costaware.core import PROBABILITY_TOLERANCE, EconomicsError, as_number, shown


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
