"""Labeled data files in CSV and Parquet for the shipped models (the cluster is the
session's, from tests/conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from _servicekit import SHIPPED

from costaware.card import read_card

N_ROWS = 3000


@dataclass(frozen=True)
class Labeled:
    """Rows drawn from the bundled breast-cancer data with noise, so scores spread out."""

    features: list[str]
    x: np.ndarray  # float64, as written to the files (repr round-trips)
    labels: np.ndarray
    ids: list[str]
    csv: Path  # header: id, label, then the features in reverse card order
    plain_csv: Path  # no header: label first, then the features in card order (as /evaluate)
    parquet: Path  # several row groups


def write_csv(path: Path, header: list[str] | None, rows: list[list[str]]) -> Path:
    lines = ([",".join(header)] if header else []) + [",".join(row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def labeled(tmp_path_factory: pytest.TempPathFactory) -> Labeled:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from sklearn.datasets import load_breast_cancer

    features = list(read_card(SHIPPED / "medical").features)
    data = load_breast_cancer()
    rng = np.random.default_rng(18)
    pick = rng.integers(0, len(data.data), N_ROWS)
    x = data.data[pick] * rng.normal(1.0, 0.15, size=(N_ROWS, data.data.shape[1]))
    x = np.round(x, 5)
    labels = (data.target[pick] == 0).astype(np.int8)  # malignant = 1
    ids = [f"case-{i:05d}" for i in range(N_ROWS)]
    root = tmp_path_factory.mktemp("batch-data")
    order = list(reversed(range(len(features))))
    csv = write_csv(
        root / "labeled.csv",
        ["id", "label", *(features[c] for c in order)],
        [[ids[r], str(labels[r]), *(repr(float(x[r, c])) for c in order)] for r in range(N_ROWS)],
    )
    plain = write_csv(
        root / "plain.csv",
        None,
        [[str(labels[r]), *map(repr, x[r].tolist())] for r in range(N_ROWS)],
    )
    table = pa.table(
        {"id": ids, "label": labels, **{name: x[:, c] for c, name in enumerate(features)}}
    )
    parquet = root / "labeled.parquet"
    pq.write_table(table, parquet, row_group_size=400)
    return Labeled(features, x, labels, ids, csv, plain, parquet)
