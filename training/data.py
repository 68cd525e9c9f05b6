"""Training data: the bundled reference data, user CSVs, checks and the train/test split.

Everything here is numpy (plus scikit-learn, imported where used): no TensorFlow, so
data problems are reported before the slow import.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from costaware.tabular import TabularError, data_line_numbers, parse_numeric_csv

REFERENCE_SOURCE = "sklearn.datasets.load_breast_cancer (malignant = 1)"
DEFAULT_TEST_SIZE = 0.25
DEFAULT_SPLIT_SEED = 1
# Below this a 25% hold-out has a handful of rows and its AUC means nothing.
MIN_ROWS = 20


class DataError(TabularError):
    """Training data that cannot be used; the message names file, row and column."""


@dataclass(frozen=True)
class Dataset:
    """Features ``x`` (float64 [n, f]), labels ``y`` (int8 [n], 1 = positive)."""

    x: np.ndarray
    y: np.ndarray
    feature_names: list[str]
    source: str

    @property
    def sha256(self) -> str:
        return data_sha256(self.x, self.y)


@dataclass(frozen=True)
class Split:
    x_train: np.ndarray
    x_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray
    test_size: float
    seed: int


def data_sha256(x: np.ndarray, y: np.ndarray) -> str:
    """sha256 of the data in a canonical form independent of how the file was written.

    The bytes hashed are the rows of ``[label, feature_1, ..., feature_f]`` as
    little-endian float64, row-major, in file order: the same numbers give the
    same hash whether they came from a CSV with a header, without one, or from
    scikit-learn's bundled copy.
    """
    table = np.column_stack([np.asarray(y, dtype="<f8"), np.asarray(x, dtype="<f8")])
    return hashlib.sha256(np.ascontiguousarray(table).tobytes()).hexdigest()


def load_reference() -> Dataset:
    """The Wisconsin breast-cancer data bundled with scikit-learn, malignant coded as 1."""
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    # scikit-learn codes malignant as 0; the experiment's positive class is malignant.
    y = (1 - bunch.target).astype(np.int8)
    return Dataset(
        x=np.asarray(bunch.data, dtype=np.float64),
        y=y,
        feature_names=[str(name) for name in bunch.feature_names],
        source=REFERENCE_SOURCE,
    )


def read_text(path: Path) -> str:
    """The text of a user's data file, or a DataError naming the file."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError("no such file", source=str(path)) from None
    except IsADirectoryError:
        raise DataError("is a directory, expected a CSV file", source=str(path)) from None
    except UnicodeDecodeError as exc:
        raise DataError(
            f"not UTF-8 text (byte {exc.start}); expected a CSV file", source=str(path)
        ) from None
    except OSError as exc:
        raise DataError(f"cannot read ({exc.strerror})", source=str(path)) from None


def headerless_column_name(column: int | None) -> str | None:
    """The name a file without a header gives its 1-based ``column`` (SageMaker convention:
    ``label`` first, then ``feature_1``, ...): the card's feature names and error messages."""
    if column is None:
        return None
    return "label" if column == 1 else f"feature_{column - 1}"


def parse_labelled_csv(text: str, *, source: str, label: str | None) -> Dataset:
    """Parse CSV text: label column named ``label`` (header required) or, with
    ``label=None``, the SageMaker convention (label first, no header)."""
    try:
        names, table = parse_numeric_csv(text, source=source, header=label is not None)
    except TabularError as exc:
        raise DataError(
            exc.message,
            source=exc.source,
            row=exc.row,
            column=exc.column,
            column_name=exc.column_name or headerless_column_name(exc.column),
        ) from None
    if names is not None:
        if label not in names:
            shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
            raise DataError(f"no column named {label!r} (columns: {shown})", source=source, row=1)
        label_index = names.index(label)
        feature_names = [n for i, n in enumerate(names) if i != label_index]
    else:
        label_index = 0
        feature_names = [headerless_column_name(c) for c in range(2, table.shape[1] + 1)]
    if table.shape[1] < 2:
        raise DataError(
            f"needs a label column and at least one feature column, found {table.shape[1]} column",
            source=source,
        )
    raw_labels = table[:, label_index]
    bad = np.flatnonzero((raw_labels != 0) & (raw_labels != 1))
    if bad.size:
        row = data_line_numbers(text, header=names is not None)[bad[0]]
        raise DataError(
            f"label {raw_labels[bad[0]]:g} is not 0 or 1",
            source=source,
            row=row,
            column=label_index + 1,
            column_name=label if names is not None else "label",
        )
    x = np.delete(table, label_index, axis=1)
    return Dataset(x=x, y=raw_labels.astype(np.int8), feature_names=feature_names, source=source)


def load_csv(path: Path, label: str | None = None) -> Dataset:
    """Load one CSV file and check it is fit for training (see :func:`check_trainable`)."""
    dataset = parse_labelled_csv(read_text(path), source=str(path), label=label)
    check_trainable(dataset, label_column=label or "label")
    return dataset


def load_csvs(paths: Sequence[Path], label: str | None = None) -> Dataset:
    """Load and concatenate several CSV files with the same columns, in the given order."""
    if not paths:
        raise DataError("no CSV files found", source="training data")
    parts = [parse_labelled_csv(read_text(p), source=str(p), label=label) for p in paths]
    first = parts[0]
    for part in parts[1:]:
        if part.x.shape[1] != first.x.shape[1]:
            raise DataError(
                f"has {part.x.shape[1] + 1} columns but {first.source} has {first.x.shape[1] + 1}",
                source=part.source,
            )
        if label is not None and part.feature_names != first.feature_names:
            raise DataError(f"columns differ from those of {first.source}", source=part.source)
    source = first.source if len(parts) == 1 else ", ".join(p.source for p in parts)
    dataset = Dataset(
        x=np.concatenate([p.x for p in parts]),
        y=np.concatenate([p.y for p in parts]),
        feature_names=first.feature_names,
        source=source,
    )
    check_trainable(dataset, label_column=label or "label")
    return dataset


def check_trainable(dataset: Dataset, *, label_column: str = "label") -> None:
    """Enough rows, both classes present."""
    n = len(dataset.y)
    if n < MIN_ROWS:
        raise DataError(f"{n} data rows; training needs at least {MIN_ROWS}", source=dataset.source)
    counts = np.bincount(dataset.y, minlength=2)
    for cls in (0, 1):
        if counts[cls] < 2:
            raise DataError(
                f"column {label_column!r}: {counts[cls]} rows of class {cls}; "
                f"training needs both classes 0 and 1 (at least 2 rows each), "
                f"found {counts[0]} of class 0 and {counts[1]} of class 1",
                source=dataset.source,
            )


def split(
    dataset: Dataset, *, test_size: float = DEFAULT_TEST_SIZE, seed: int = DEFAULT_SPLIT_SEED
) -> Split:
    """``train_test_split(x, y, test_size, random_state=seed)``, unstratified like the reference."""
    from sklearn.model_selection import train_test_split

    if not 0 < test_size < 1:
        raise DataError(f"test size {test_size} must be between 0 and 1", source=dataset.source)
    x_train, x_test, y_train, y_test = train_test_split(
        dataset.x, dataset.y, test_size=test_size, random_state=seed
    )
    for name, labels in (("training", y_train), ("held-out", y_test)):
        missing = [cls for cls in (0, 1) if not np.any(labels == cls)]
        if missing:
            raise DataError(
                f"the {name} split (test size {test_size}, seed {seed}) has no rows of class "
                f"{missing[0]}; provide more rows of that class",
                source=dataset.source,
            )
    return Split(x_train, x_test, y_train, y_test, test_size=test_size, seed=seed)
