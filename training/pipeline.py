"""The training pipeline as plain functions: load data -> split -> fit a variant -> export.

The CLI, the SageMaker entry point and cost tuning all go through these, so a
variant trained by any of them is trained the same way. Each step returns its
value; nothing here prints except through the ``progress`` callback.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from costaware.decision import DEFAULT_MARGIN, DEFAULT_THRESHOLD
from training.data import (
    DEFAULT_SPLIT_SEED,
    DEFAULT_TEST_SIZE,
    Dataset,
    Split,
    load_csvs,
    load_reference,
    split,
)
from training.export import ExportResult, export_model
from training.fit import FittedModel, Progress, fit_variant, stderr_progress
from training.variants import VariantSpec


@dataclass(frozen=True)
class TrainingRows:
    """The rows a variant is fitted on, and how the export must account for them.

    By default the training split itself (``beta = 1``). Negative subsampling
    replaces the rows with a subsample, sets ``beta`` to the negatives' keep rate
    (the export folds the prior-shift correction into the graph) and adds a
    ``subsample`` card section.
    """

    x: np.ndarray
    y: np.ndarray
    beta: float = 1.0
    card_sections: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_split(cls, data: Split) -> TrainingRows:
        return cls(x=data.x_train, y=data.y_train)


@dataclass(frozen=True)
class VariantResult:
    spec: VariantSpec
    fitted: FittedModel
    export: ExportResult

    @property
    def summary(self) -> dict[str, Any]:
        """One row of the summary table (held-out split, card threshold, reference values)."""
        card = self.export.card
        return {
            "name": self.spec.name,
            "loss": self.spec.loss,
            "fn_cost": card.loss.fn_cost,
            "fp_cost": card.loss.fp_cost,
            "accuracy": card.metrics.accuracy,
            "auc": card.metrics.auc,
            "fn": card.metrics.confusion.fn,
            "fp": card.metrics.confusion.fp,
            "expected_value": card.metrics.reference_expected_value,
        }


def load_data(paths: list[Path] | None = None, label: str | None = None) -> Dataset:
    """The reference data, or the given CSV file(s) (label column by name, or first)."""
    return load_reference() if not paths else load_csvs(paths, label=label)


def make_split(
    dataset: Dataset, test_size: float = DEFAULT_TEST_SIZE, seed: int = DEFAULT_SPLIT_SEED
) -> Split:
    return split(dataset, test_size=test_size, seed=seed)


def train_variant(
    spec: VariantSpec,
    dataset: Dataset,
    data: Split,
    models_dir: Path,
    *,
    rows: TrainingRows | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    margin: float = DEFAULT_MARGIN,
    progress: Progress | None = stderr_progress,
) -> VariantResult:
    """Fit one variant on ``rows`` (default: the training split) and export it."""
    rows = rows or TrainingRows.from_split(data)
    if progress:
        weights = (
            "" if spec.loss == "builtin" else f" fn_cost={spec.fn_cost:g} fp_cost={spec.fp_cost:g}"
        )
        progress(
            f"[{spec.name}] training: loss={spec.loss}{weights}, {spec.epochs} epochs, "
            f"seed {spec.seed}, {len(rows.y)} rows"
        )
    fitted = fit_variant(spec, rows.x, rows.y, progress=progress)
    exported = export_model(
        fitted,
        dataset,
        data,
        models_dir,
        beta=rows.beta,
        threshold=threshold,
        margin=margin,
        extra_sections=rows.card_sections or None,
        n_train=len(rows.y),
    )
    if progress:
        progress(f"[{spec.name}] exported {exported.folder}")
    return VariantResult(spec=spec, fitted=fitted, export=exported)


def format_summary(results: list[VariantResult]) -> str:
    """The summary table printed at the end of a run."""
    header = (
        f"{'model':<16} {'loss':<8} {'fn:fp':>9} {'accuracy':>8} {'AUC':>7} "
        f"{'FN':>4} {'FP':>4} {'EV $/patient':>13}"
    )
    lines = [header, "-" * len(header)]
    for result in results:
        row = result.summary
        ratio = f"{row['fn_cost']:g}:{row['fp_cost']:g}"
        value = row["expected_value"]
        lines.append(
            f"{row['name']:<16} {row['loss']:<8} {ratio:>9} {row['accuracy']:>8.3f} "
            f"{row['auc']:>7.4f} {row['fn']:>4} {row['fp']:>4} "
            + (f"{value:>13,.2f}" if value is not None else f"{'-':>13}")
        )
    lines.append("EV: expected value per patient under the reference QALY values ($100,000/QALY)")
    return "\n".join(lines)
