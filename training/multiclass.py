"""K-class softmax models decided by a value matrix: data, losses, fit, ONNX export, card.

The binary pipeline (``training.pipeline``) is untouched; this is its multiclass sibling.
A model is ``softmax(((x - mean) / scale) @ W + b)`` with K outputs, trained either with
cross-entropy or with the **expected-cost loss** derived from the value matrix
(``values[i][j]`` = value of deciding class j when the truth is class i):

    loss = mean_n sum_j q_nj * regret[y_n, j] / regret_scale,
    regret[i, j] = max_k values[i, k] - values[i, j]  (>= 0; 0 for the best decision)

It is the expected regret of a decision drawn from the model's probabilities ``q``, linear
in ``q`` like the reference's binary cost-weighted loss (for K = 2 it *is* that loss, with
``fn_cost = v_tp - v_fn`` and ``fp_cost = v_tn - v_fp``). ``regret_scale`` is the largest
regret, so the loss lies in [0, 1] and SGD's step does not depend on the matrix's unit.

Served decisions are always the minimum-expected-cost ones, ``argmax_j sum_i p_i
values[i][j]`` (``costaware.multiclass.decide``), whatever the loss.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from costaware.calibration import MULTICLASS_OUTPUT
from costaware.card import (
    MulticlassCard,
    MulticlassHeldOut,
    MulticlassLoss,
    MulticlassMetrics,
    ValueMatrixSpec,
    feature_ranges,
)
from costaware.core import ValueMatrix, decide, default_margin, realised_values
from costaware.economics import EconomicsError
from costaware.multiclass import class_labels_from_text
from costaware.tabular import TabularError, data_line_numbers, parse_numeric_csv, take_text_column
from training.calibrate import FittedCalibration, section, with_map
from training.data import MIN_ROWS, DataError, Split, data_sha256, read_text
from training.export import (
    CheckedGraph,
    export_graph,
    function_to_onnx,
    onnx_output,
    training_spec,
)
from training.fit import (
    STEPS_PER_EXECUTION,
    KerasFit,
    Progress,
    Scaler,
    fit_scaler,
    import_keras,
    kernel_initializer,
    seeded_fit,
    stderr_progress,
)
from training.variants import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_SEED,
    NAME_PATTERN,
    VariantError,
)

INPUT_NAME = "features"
OUTPUT_NAME = "scores"
LossName = Literal["cross_entropy", "expected_cost"]
LOSSES: tuple[LossName, ...] = ("cross_entropy", "expected_cost")
# 133 wine training rows make 5 batches an epoch: SGD needs a larger step and more epochs
# than the binary reference (lr 0.01, 50 epochs) to converge.
DEFAULT_MULTICLASS_EPOCHS = 200
DEFAULT_MULTICLASS_LEARNING_RATE = 0.1
WINE_SOURCE = "sklearn.datasets.load_wine (3 cultivars)"

# An ILLUSTRATIVE value matrix for the wine data (dollars per lot), not from any real
# business: a merchant labels each lot with a cultivar and prices it accordingly. Selling
# a lesser wine as class_0 (the premium cultivar) brings refunds and lost customers;
# under-labelling a premium lot gives its margin away.
WINE_VALUES = ValueMatrix(
    ("class_0", "class_1", "class_2"),
    np.array(
        [
            #  decide: class_0  class_1  class_2        truth:
            [100.0, -20.0, -40.0],  # class_0
            [-300.0, 50.0, -10.0],  # class_1
            [-300.0, -60.0, 60.0],  # class_2
        ]
    ),
)
WINE_NOTE = (
    "Illustrative values (dollars per lot), invented to show cost-sensitive multiclass "
    "decisions: not from any real business. A merchant labels each lot with a cultivar; "
    "selling a lesser wine as class_0 (premium) costs $300 in refunds and lost customers, "
    "under-labelling a premium lot gives its margin away."
)


class MulticlassError(ValueError):
    """Bad multiclass options or data; the message names the option, file, row or column."""


@dataclass(frozen=True)
class MulticlassData:
    x: np.ndarray  # float64 [n, f]
    y: np.ndarray  # int64 class indices [n]
    classes: tuple[str, ...]
    feature_names: list[str]
    source: str

    @property
    def sha256(self) -> str:
        return data_sha256(self.x, self.y)


def load_wine() -> MulticlassData:
    """scikit-learn's bundled wine data: 178 rows, 13 features, 3 cultivars."""
    from sklearn.datasets import load_wine as sklearn_wine

    bunch = sklearn_wine()
    return MulticlassData(
        x=np.asarray(bunch.data, dtype=np.float64),
        y=np.asarray(bunch.target, dtype=np.int64),
        classes=tuple(str(c) for c in bunch.target_names),
        feature_names=[str(f) for f in bunch.feature_names],
        source=WINE_SOURCE,
    )


def load_multiclass_csv(path: Path, label: str, classes: Sequence[str]) -> MulticlassData:
    """A CSV with a header; column ``label`` holds each row's class, as a class name or an
    index 0..K-1 in ``classes`` order (the rule of ``/evaluate``'s labels)."""
    source = str(path)
    text = read_text(path)
    try:
        numeric, cells = take_text_column(text, label, source=source)
        names, table = parse_numeric_csv(numeric, source=source, header=True)
    except TabularError as exc:
        raise DataError(
            exc.message,
            source=exc.source,
            row=exc.row,
            column=exc.column,
            column_name=exc.column_name,
        ) from None
    assert names is not None
    j = names.index(label)
    try:
        y = class_labels_from_text(cells, classes)
    except EconomicsError:
        rows = data_line_numbers(text, header=True)
        for index, cell in enumerate(cells):  # the first bad label, for its row
            try:
                class_labels_from_text([cell], classes)
            except EconomicsError as exc:
                raise DataError(
                    f"label {exc.message}",
                    source=source,
                    row=rows[index],
                    column=j + 1,
                    column_name=label,
                ) from None
        raise
    if len(y) < MIN_ROWS:
        raise DataError(f"{len(y)} data rows; training needs at least {MIN_ROWS}", source=source)
    return MulticlassData(
        x=np.delete(table, j, axis=1),
        y=y,
        classes=tuple(classes),
        feature_names=[n for i, n in enumerate(names) if i != j],
        source=source,
    )


def split_multiclass(data: MulticlassData, test_size: float = 0.25, seed: int = 1) -> Split:
    """Stratified ``train_test_split`` (every class in both parts, in proportion)."""
    from sklearn.model_selection import train_test_split

    counts = np.bincount(data.y, minlength=len(data.classes))
    if counts.min() < 2:
        rare = data.classes[int(np.argmin(counts))]
        raise DataError(
            f"class {rare!r} has {counts.min()} rows; every class needs at least 2",
            source=data.source,
        )
    try:
        x_train, x_test, y_train, y_test, _, test_index = train_test_split(
            data.x,
            data.y,
            np.arange(len(data.y)),
            test_size=test_size,
            random_state=seed,
            stratify=data.y,
        )
    except ValueError as exc:
        raise DataError(
            f"cannot split (test size {test_size}): {exc}", source=data.source
        ) from None
    return Split(
        x_train, x_test, y_train, y_test, test_size=test_size, seed=seed, test_index=test_index
    )


# ---------------------------------------------------------------------------
# Losses


def regret_matrix(matrix: ValueMatrix) -> tuple[np.ndarray, float]:
    """``regret[i, j] = max_k values[i, k] - values[i, j]`` divided by its largest entry,
    and that entry (the scale)."""
    if matrix.per_instance:
        raise MulticlassError("the expected-cost loss needs one value matrix, not one per row")
    regret = matrix.values.max(axis=1, keepdims=True) - matrix.values
    scale = float(regret.max())
    if scale <= 0:
        raise MulticlassError("the value matrix gives every decision the same value")
    return regret / scale, scale


def expected_cost_loss(regret: np.ndarray) -> Any:
    """A Keras loss ``(y_true indices, q) -> mean_n sum_j q_nj * regret[y_n, j]``."""
    keras = import_keras()
    from keras import ops

    table = np.asarray(regret, dtype=np.float32)

    def loss(y_true: Any, y_pred: Any) -> Any:
        rows = ops.take(
            ops.convert_to_tensor(table), ops.cast(ops.reshape(y_true, (-1,)), "int32"), axis=0
        )
        return ops.mean(ops.sum(rows * y_pred, axis=-1))

    loss.__name__ = "expected_cost"
    keras.saving.register_keras_serializable(package="costaware")(loss)
    return loss


# ---------------------------------------------------------------------------
# Fit


@dataclass(frozen=True)
class MulticlassSpec:
    name: str
    loss: LossName = "cross_entropy"
    epochs: int = DEFAULT_MULTICLASS_EPOCHS
    seed: int = DEFAULT_SEED
    batch_size: int = DEFAULT_BATCH_SIZE
    learning_rate: float = DEFAULT_MULTICLASS_LEARNING_RATE
    description: str = ""

    def __post_init__(self) -> None:
        if not NAME_PATTERN.match(self.name):
            raise VariantError(f"model name {self.name!r}: use letters, digits, '.', '_', '-'")
        if self.loss not in LOSSES:
            raise VariantError(f"loss {self.loss!r}: choose one of {', '.join(LOSSES)}")
        if self.epochs < 1 or self.batch_size < 1:
            raise VariantError("epochs and batch_size must be at least 1")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise VariantError(f"learning_rate {self.learning_rate}: must be a positive number")


@dataclass
class FittedMulticlass(KerasFit):
    spec: MulticlassSpec
    model: Any  # keras.Model
    scaler: Scaler
    classes: tuple[str, ...]
    regret_scale: float | None
    loss_history: list[float]

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Keras class probabilities float32 [n, K] for raw features."""
        return self.network_output(x)


def fit_multiclass(
    spec: MulticlassSpec,
    x_train: np.ndarray,
    y_train: np.ndarray,
    matrix: ValueMatrix,
    *,
    progress: Progress | None = stderr_progress,
) -> FittedMulticlass:
    """Scale, seed, build ``Dense(K, softmax)`` with SGD and the spec's loss, fit."""
    keras = import_keras()
    scaler = fit_scaler(x_train)
    scale = None
    if spec.loss == "cross_entropy":
        loss: Any = keras.losses.SparseCategoricalCrossentropy()
    else:
        regret, scale = regret_matrix(matrix)
        loss = expected_cost_loss(regret)

    def build() -> Any:
        model = keras.Sequential(
            [
                keras.Input(shape=(x_train.shape[1],), name=INPUT_NAME),
                keras.layers.Dense(
                    matrix.k,
                    activation="softmax",
                    kernel_initializer=kernel_initializer(spec.seed),
                ),
            ]
        )
        model.compile(
            optimizer=keras.optimizers.SGD(learning_rate=spec.learning_rate),
            loss=loss,
            steps_per_execution=STEPS_PER_EXECUTION,
        )
        return model

    def report(done: int, logs: dict[str, Any]) -> None:
        if progress and (done % 25 == 0 or done == spec.epochs):
            value = float(logs.get("loss", float("nan")))
            progress(f"[{spec.name}] epoch {done:>3}/{spec.epochs}  loss {value:.4f}")

    model, history = seeded_fit(
        spec,
        build,
        scaler.transform(x_train).astype(np.float32),
        np.asarray(y_train, dtype=np.int32),
        on_epoch=report,
    )
    return FittedMulticlass(spec, model, scaler, matrix.classes, scale, history)


# ---------------------------------------------------------------------------
# Export


def to_onnx(fitted: FittedMulticlass) -> bytes:
    """``scores = softmax(((features - mean) / scale) @ W + b)``, float32 [N, K]."""
    import_keras()
    import tensorflow as tf

    kernel, bias = fitted.weights
    mean = fitted.scaler.mean.astype(np.float32)
    scale = fitted.scaler.scale.astype(np.float32)
    w, b = np.asarray(kernel, dtype=np.float32), np.asarray(bias, dtype=np.float32)

    @tf.function(
        input_signature=[tf.TensorSpec([None, kernel.shape[0]], tf.float32, name=INPUT_NAME)]
    )
    def scores(features: Any) -> dict[str, Any]:
        return {OUTPUT_NAME: tf.nn.softmax(tf.matmul((features - mean) / scale, w) + b)}

    return function_to_onnx(scores)


def onnx_probabilities(model: bytes | Path, x: np.ndarray) -> np.ndarray:
    """Class probabilities from onnxruntime for raw features, float32 [n, K]."""
    return onnx_output(model, x)


@dataclass(frozen=True)
class Outcome:
    """Held-out value of one model's probabilities under two decision rules."""

    expected_value_min_cost: float
    expected_value_argmax: float
    accuracy_min_cost: float
    accuracy_argmax: float


def held_out_outcome(labels: np.ndarray, probabilities: np.ndarray, matrix: ValueMatrix) -> Outcome:
    decided = decide(probabilities, matrix, margin=0.0).index
    argmax = np.argmax(probabilities, axis=1)
    return Outcome(
        expected_value_min_cost=float(realised_values(labels, decided, matrix).mean()),
        expected_value_argmax=float(realised_values(labels, argmax, matrix).mean()),
        accuracy_min_cost=float(np.mean(decided == labels)),
        accuracy_argmax=float(np.mean(argmax == labels)),
    )


@dataclass(frozen=True)
class MulticlassExport:
    folder: Path
    card: MulticlassCard
    probabilities: np.ndarray  # onnxruntime, held-out [n, K]
    calibrated: np.ndarray | None = None  # the graph's calibrated output, held-out [n, K]


def export_multiclass(
    fitted: FittedMulticlass,
    data: MulticlassData,
    split: Split,
    matrix: ValueMatrix,
    models_dir: Path,
    *,
    margin: float | None = None,
    illustrative: bool = False,
    note: str = "",
    comparison: dict[str, Any] | None = None,
    calibration: FittedCalibration | None = None,
) -> MulticlassExport:
    """Export to ``models_dir/<name>/`` after the parity check (onnxruntime vs Keras within
    :data:`PARITY_TOLERANCE` on the held-out split); ``margin`` in dollars defaults to
    5% of the largest regret (``costaware.multiclass.default_margin``). ``calibration``
    adds its map as the graph's ``probabilities`` output (checked against
    ``costaware.calibration.apply_map`` on the held-out split) and the card's section."""
    spec = fitted.spec
    model_bytes = to_onnx(fitted)
    if calibration is not None:
        model_bytes = with_map(model_bytes, OUTPUT_NAME, calibration.map, MULTICLASS_OUTPUT)
    if margin is None:
        margin = default_margin(matrix)
    y = split.y_test
    k = matrix.k

    def card(header: dict[str, Any], graph: CheckedGraph) -> MulticlassCard:
        probabilities, calibrated = graph.raw, graph.calibrated
        p64 = probabilities.astype(np.float64)
        decided = decide(p64, matrix, margin=margin).index
        outcome = held_out_outcome(y, p64, matrix)
        return MulticlassCard(
            **header,
            description=spec.description,
            classes=list(matrix.classes),
            value_matrix=ValueMatrixSpec(
                classes=list(matrix.classes),
                values=matrix.values.tolist(),
                illustrative=illustrative,
                note=note,
            ),
            loss=MulticlassLoss(type=spec.loss, regret_scale=fitted.regret_scale),
            margin=float(margin),
            features=list(data.feature_names),
            training=training_spec(
                spec,
                type(fitted.model.optimizer).__name__,
                data,
                split,
                n_train=len(split.y_train)
                - (calibration.rows if calibration and calibration.fitted_on == "held_back" else 0),
                positive_label=None,
            ),
            metrics=MulticlassMetrics(
                accuracy=outcome.accuracy_min_cost,
                expected_value=outcome.expected_value_min_cost,
                total_value=float(realised_values(y, decided, matrix).sum()),
                argmax_accuracy=outcome.accuracy_argmax,
                argmax_expected_value=outcome.expected_value_argmax,
                confusion=np.bincount(y * k + decided, minlength=k * k).reshape(k, k).tolist(),
            ),
            held_out=MulticlassHeldOut(
                probabilities=[[float(v) for v in row] for row in probabilities],
                labels=[int(v) for v in y],
                calibrated_probabilities=(
                    None if calibrated is None else [[float(v) for v in row] for row in calibrated]
                ),
            ),
            comparison=comparison,
            feature_ranges=feature_ranges(split.x_train, list(data.feature_names)),
            calibration=(
                None
                if calibration is None or calibrated is None
                else section(calibration, MULTICLASS_OUTPUT, y, probabilities, calibrated)
            ),
        )

    folder, written, graph = export_graph(
        spec.name,
        model_bytes,
        split.x_test,
        fitted.predict(split.x_test),
        models_dir,
        card,
        output=OUTPUT_NAME,
        what="probabilities",
        calibration=calibration,
        calibrated_output=MULTICLASS_OUTPUT,
    )
    return MulticlassExport(
        folder=folder, card=written, probabilities=graph.raw, calibrated=graph.calibrated
    )
