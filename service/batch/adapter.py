"""The batch engine's one doorway into the service core.

Everything the batch code needs from the service (loading a model folder into an
onnxruntime session, the CSV decoding rules, the decision rule, the defaults, the
``/evaluate`` answer's shape) is reached through this module, so that when the core moves
(an HTTP-free data plane, the decision rule in ``costaware/``) only this file changes.
Nothing here imports FastAPI.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from costaware.card import CARD_FILENAME, MODEL_FILENAME
from costaware.decision import not_probabilities
from costaware.economics import CostMatrix
from costaware.tabular import TabularError, data_line_numbers, parse_numeric_csv
from service.codecs import CSV_COLUMNS, csv_field, prediction_csv_lines
from service.dataplane import (
    DataPlane,
    PredictInputs,
    Predictions,
    calibration_head,
    checked_outputs,
    non_finite_error,
    summarize,
)
from service.errors import ServiceError
from service.registry import LoadedModel, ModelRefusedError, ModelRegistry, load_model
from service.registry import session_options as _session_options
from service.settings import Settings
from service.valuation import ValuedPredictions

FLOAT32_MAX = float(np.finfo(np.float32).max)
DEFAULT_MODEL: str = Settings.model_fields["default_model"].default

__all__ = [
    "CSV_COLUMNS",
    "DEFAULT_MODEL",
    "BatchInputError",
    "LoadedModel",
    "ModelRefusedError",
    "Predictions",
    "ValuedPredictions",
    "calibration_head",
    "csv_field",
    "csv_lines",
    "decode_numeric_csv",
    "load_registry",
    "predict",
    "scores_and_probabilities",
    "summary",
]


class BatchInputError(ValueError):
    """Bad input data or options: one line naming the file, row and column (exit status 2)."""


def load_registry(model_dir: Path) -> ModelRegistry:
    """The service's registry over ``model_dir`` (one onnxruntime thread per session)."""
    return ModelRegistry.load(model_dir, DEFAULT_MODEL, _session_options())


def pick_models(registry: ModelRegistry, names: Sequence[str] | None) -> list[LoadedModel]:
    """The named models (``None``: the default one), with the registry's own messages."""
    try:
        if names is None:
            return [registry.get(None)]
        return [registry.get(name) for name in names]
    except ServiceError as exc:
        refused = "; ".join(f"{k}: {v}" for k, v in registry.refused.items())
        raise BatchInputError(exc.detail + (f" (refused: {refused})" if refused else "")) from None


def model_files(model: LoadedModel) -> dict[str, bytes]:
    """The card and graph of a loaded model, to load it again on a worker."""
    return {
        CARD_FILENAME: (model.folder / CARD_FILENAME).read_bytes(),
        MODEL_FILENAME: (model.folder / model.card.onnx.file).read_bytes(),
    }


def load_model_folder(folder: Path) -> LoadedModel:
    """A worker's copy of a model; the card's sha256 is checked again on the worker."""
    return load_model(folder, _session_options())


def decode_numeric_csv(
    text: str,
    names: Sequence[str],
    columns: Sequence[int],
    source: str,
    first_line: int = 1,
) -> np.ndarray:
    """Headerless numeric CSV text as float64 ``[N, len(names)]``, by the service's rules.

    The same parser and checks as the service's ``text/csv`` decoder (every cell a finite
    number within float32 range); errors name ``source``, the file's line (``first_line`` is
    the file line of the text's first line) and the file's column (``columns[i]``, 1-based,
    for the text's column ``i``) with its name.
    """
    try:
        _, matrix = parse_numeric_csv(text, source=source, n_columns=len(names))
    except TabularError as exc:
        if exc.row is not None:
            exc.row += first_line - 1
        if exc.column is not None:
            exc.column_name = names[exc.column - 1]
            exc.column = columns[exc.column - 1]
        raise BatchInputError(str(exc)) from None
    too_big = np.abs(matrix) > FLOAT32_MAX
    if too_big.any():
        r, c = (int(i) for i in np.argwhere(too_big)[0])
        line = _data_line(text, r) + first_line - 1
        raise BatchInputError(
            f"{source}, row {line}, column {columns[c]} ({names[c]}): "
            f"{float(matrix[r, c])!r} is outside float32 range"
        )
    return matrix


def _data_line(text: str, index: int) -> int:
    return data_line_numbers(text)[index]


def check_values(
    matrix: np.ndarray, names: Sequence[str], columns: Sequence[int], where: Any
) -> None:
    """The service's value rules for numbers that arrive already typed (Parquet): finite and
    within float32 range. ``where(r)`` names row ``r`` (``file, row R``)."""
    bad = ~np.isfinite(matrix) | (np.abs(matrix) > FLOAT32_MAX)
    if bad.any():
        r, c = (int(i) for i in np.argwhere(bad)[0])
        value = float(matrix[r, c])
        what = "is not a finite number" if not np.isfinite(value) else "is outside float32 range"
        raise BatchInputError(f"{where(r)}, column {columns[c]} ({names[c]}): {value!r} {what}")


# ---------------------------------------------------------------------------------------
# Scoring: the service's data plane, on the worker

# A worker's data plane per model (keyed by the loaded model's identity).
_PLANES: dict[int, DataPlane] = {}


def _plane(model: LoadedModel) -> DataPlane:
    key = id(model)
    if key not in _PLANES:
        registry = ModelRegistry(
            model_dir=model.folder, default_name=model.name, models={model.name: model}
        )
        _PLANES[key] = DataPlane(registry)
    return _PLANES[key]


def predict(
    model: LoadedModel,
    x: np.ndarray,
    row_name: Callable[[int], str],
    *,
    threshold: float | None = None,
    margin: float | None = None,
    on_out_of_range: str = "flag",
) -> Predictions | ValuedPredictions:
    """The service's prediction for the rows ``x`` (scores, decisions, out-of-range
    features; a multiclass model's decisions by expected value), with its refusals (a
    non-finite score; an out-of-range row when asked to refuse) as one-line errors naming
    the row with ``row_name``."""
    inputs = PredictInputs(
        instances=x,
        model=model.name,
        threshold=threshold,
        margin=margin,
        on_out_of_range=on_out_of_range,  # type: ignore[arg-type]
        row_name=row_name,
    )
    try:
        return _plane(model).predict_now(inputs)
    except ServiceError as exc:
        raise BatchInputError(exc.detail) from None


def scores_and_probabilities(
    model: LoadedModel, x: np.ndarray, row_name: Callable[[int], str]
) -> tuple[np.ndarray, np.ndarray | None]:
    """Scores to evaluate and, for a calibrated model, its probabilities (one session call),
    by /evaluate's rule: no value from a number that is not a finite number in [0, 1];
    float64."""

    def refuse(found: np.ndarray) -> BatchInputError:
        error = non_finite_error(model.name, found, not_probabilities(found), row_name)
        return BatchInputError(error.detail)

    return checked_outputs(model, x, refuse)


def csv_lines(predictions: Predictions | ValuedPredictions) -> list[str]:
    """The service's text/csv answer, one line per row."""
    return prediction_csv_lines(predictions)


# ---------------------------------------------------------------------------------------
# The /evaluate answer


NOTE = "files read in partitions, scored by each model on the workers and merged"


def summary(
    entries: list[dict[str, Any]], costs: CostMatrix, data: str = "batch", note: str = NOTE
) -> dict[str, Any]:
    """``/evaluate``'s JSON around ``entries`` (the data plane's own summary)."""
    return summarize(entries, costs, data, note)
