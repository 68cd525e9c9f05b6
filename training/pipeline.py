"""The training pipeline as plain functions: load data -> split -> fit a variant -> export.

The CLI, the SageMaker entry point and cost tuning all go through these, so a
variant trained by any of them is trained the same way. Each step returns its
value; nothing here prints except through the ``progress`` callback.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from costaware.decision import DEFAULT_MARGIN, DEFAULT_THRESHOLD
from costaware.economics import REFERENCE_QALY_VALUES, CostMatrix, outcome_values
from training.calibrate import (
    CalibrationPlan,
    FittedCalibration,
    check_rows,
    default_plan,
    fit_binary,
    fit_with_map,
)
from training.data import (
    DEFAULT_SPLIT_SEED,
    DEFAULT_TEST_SIZE,
    REFERENCE_SOURCE,
    Dataset,
    Split,
    load_csvs,
    load_reference,
    split,
)
from training.export import ExportResult, export_model
from training.fit import FittedModel, Progress, fit_variant, stderr_progress
from training.options import describe_cost_matrix
from training.subsample import correct_scores
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
class Pricing:
    """The outcome values a model's decisions are priced with, and where they came from."""

    costs: CostMatrix | None
    source: str  # e.g. "--cost-matrix", "variant q's tp/fp/tn/fn"


NOT_PRICED = (
    "no cost matrix stated (pass --cost-matrix tp=V,fp=V,tn=V,fn=V, or give a variant tp/fp/tn/fn)"
)


def pricing_for(spec: VariantSpec, dataset: Dataset, cost_matrix: CostMatrix | None) -> Pricing:
    """The variant's own matrix; else the one the user stated for the run; else the
    reference QALY values for the reference data (whose outcomes they describe); else none."""
    if spec.cost_matrix is not None:
        return Pricing(spec.cost_matrix, f"variant {spec.name}'s tp/fp/tn/fn")
    if cost_matrix is not None:
        return Pricing(cost_matrix, "--cost-matrix")
    if dataset.source == REFERENCE_SOURCE:
        return Pricing(REFERENCE_QALY_VALUES, "the default for the reference data")
    return Pricing(None, NOT_PRICED)


@dataclass(frozen=True)
class VariantResult:
    spec: VariantSpec
    fitted: FittedModel
    export: ExportResult
    pricing: Pricing = Pricing(None, NOT_PRICED)

    @property
    def expected_value(self) -> float | None:
        """Held-out expected value per instance at the card threshold, under ``pricing``."""
        if self.pricing.costs is None:
            return None
        card = self.export.card
        decided = np.asarray(card.held_out.scores) >= card.threshold
        return float(outcome_values(card.held_out.labels, decided, self.pricing.costs).mean())

    @property
    def summary(self) -> dict[str, Any]:
        """One row of the summary table (held-out split, card threshold, ``pricing``)."""
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
            "expected_value": self.expected_value,
            "priced_with": self.pricing.source,
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
    cost_matrix: CostMatrix | None = None,
    calibration: CalibrationPlan | None = None,
    progress: Progress | None = stderr_progress,
) -> VariantResult:
    """Fit one variant on ``rows`` (default: the training split), fit its calibration map
    (``calibration``, default sigmoid on 5-fold out-of-fold scores) and export both.

    ``cost_matrix`` prices a variant that states no matrix of its own (:func:`pricing_for`);
    it goes into the card as the matrix the model is evaluated with.
    """
    rows = rows or TrainingRows.from_split(data)
    plan = calibration or default_plan("binary")
    check_rows(plan, rows.y)
    pricing = pricing_for(spec, dataset, cost_matrix)
    if progress:
        weights = (
            "" if spec.loss == "builtin" else f" fn_cost={spec.fn_cost:g} fp_cost={spec.fp_cost:g}"
        )
        progress(
            f"[{spec.name}] training: loss={spec.loss}{weights}, {spec.epochs} epochs, "
            f"seed {spec.seed}, {len(rows.y)} rows"
        )
    fitted, calibrator = fit_calibrated(spec, rows, plan, data.seed, progress)
    exported = export_model(
        fitted,
        dataset,
        data,
        models_dir,
        beta=rows.beta,
        threshold=threshold,
        margin=margin,
        cost_matrix=pricing.costs,
        extra_sections=rows.card_sections or None,
        n_train=len(rows.y)
        - (calibrator.rows if calibrator and calibrator.fitted_on == "held_back" else 0),
        calibration=calibrator,
    )
    if progress:
        progress(f"[{spec.name}] exported {exported.folder}")
    return VariantResult(spec=spec, fitted=fitted, export=exported, pricing=pricing)


def fit_calibrated(
    spec: VariantSpec,
    rows: TrainingRows,
    plan: CalibrationPlan,
    seed: int,
    progress: Progress | None = stderr_progress,
) -> tuple[FittedModel, FittedCalibration | None]:
    """The variant's network and its map (:func:`training.calibrate.fit_with_map`).

    A negative subsample (``rows.beta < 1``) is scored as the graph scores it (corrected
    to the population's base rate) and its negatives weigh ``1 / beta`` in the map's fit.
    """

    def fit(x: np.ndarray, y: np.ndarray, final: bool) -> FittedModel:
        return fit_variant(spec, x, y, progress=progress if final else None)

    def fit_map(scores: np.ndarray, labels: np.ndarray) -> FittedCalibration:
        weights = None if rows.beta == 1.0 else np.where(labels == 0, 1.0 / rows.beta, 1.0)
        return fit_binary(plan, scores, labels, sample_weight=weights)

    return fit_with_map(
        plan,
        rows.x,
        rows.y,
        seed,
        fit=fit,
        output=lambda model, x: correct_scores(model.predict(x), rows.beta),
        fit_map=fit_map,
        progress=progress,
        name=spec.name,
    )


def pricing_groups(results: Sequence[VariantResult]) -> tuple[list[str], list[int]]:
    """The distinct matrices ``results`` are priced with, each described with every source
    it came from, and the index of each result's matrix in that list."""
    keys: list[tuple | None] = []
    sources: list[list[str]] = []
    index = []
    for result in results:
        costs = result.pricing.costs
        key = None if costs is None else tuple(costs.to_dict().values())
        if key not in keys:
            keys.append(key)
            sources.append([])
        i = keys.index(key)
        if result.pricing.source not in sources[i]:
            sources[i].append(result.pricing.source)
        index.append(i)
    texts = []
    for key, where in zip(keys, sources, strict=True):
        if key is None:
            texts.append(f"not priced: {NOT_PRICED}")
        else:
            texts.append(f"{describe_cost_matrix(CostMatrix(*key))}, from {' and '.join(where)}")
    return texts, index


def format_summary(results: list[VariantResult]) -> str:
    """The summary table printed at the end of a run, with the matrix each EV is priced with.

    When the models are priced with different matrices, a column names each row's matrix
    (M1, M2, ...): their values are then not comparable with each other.
    """
    pricings, which = pricing_groups(results)
    several = len(pricings) > 1
    header = (
        f"{'model':<16} {'loss':<8} {'fn:fp':>9} {'accuracy':>8} {'AUC':>7} "
        f"{'FN':>4} {'FP':>4} {'EV $/instance':>14}" + (f" {'matrix':>6}" if several else "")
    )
    lines = [header, "-" * len(header)]
    for result, matrix in zip(results, which, strict=True):
        row = result.summary
        ratio = f"{row['fn_cost']:g}:{row['fp_cost']:g}"
        value = row["expected_value"]
        lines.append(
            f"{row['name']:<16} {row['loss']:<8} {ratio:>9} {row['accuracy']:>8.3f} "
            f"{row['auc']:>7.4f} {row['fn']:>4} {row['fp']:>4} "
            + (f"{value:>14,.2f}" if value is not None else f"{'-':>14}")
            + (f" {'M' + str(matrix + 1):>6}" if several else "")
        )
    lines.append(
        "EV: held-out expected value per instance at each card's threshold, priced with "
        + (pricings[0] if not several else "the matrix in the last column (values under "
           "different matrices are not comparable):")
    )  # fmt: skip
    if several:
        lines += [f"  M{i}: {text}" for i, text in enumerate(pricings, start=1)]
    return "\n".join(lines)
