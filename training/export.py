"""ONNX export with the scaling (and any prior-shift correction) inside the graph.

The exported graph maps raw features to the served score:
``score = correct(sigmoid(((features - mean) / scale) @ W + b))`` with
``correct(p) = beta*p / (beta*p - p + 1)`` (identity at ``beta = 1``). The export
is checked: onnxruntime's scores must equal the Keras model's (after the same
correction) within :data:`PARITY_TOLERANCE` on the held-out split, or nothing is
written.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from costaware.calibration import BINARY_OUTPUT
from costaware.card import (
    CARD_FILENAME,
    MODEL_FILENAME,
    ClassReport,
    ConfusionCounts,
    DataSpec,
    HeldOut,
    HeldOutMetrics,
    LossSpec,
    ModelCard,
    OnnxSpec,
    OutcomeValues,
    ScoreCorrection,
    TrainingSpec,
    feature_ranges,
    rows_sha256,
    sha256_file,
    write_card,
)
from costaware.decision import DEFAULT_MARGIN, DEFAULT_THRESHOLD
from costaware.economics import (
    REFERENCE_QALY_VALUES,
    CostMatrix,
    classification_report,
    confusion,
    expected_value,
    roc_auc,
)
from training.calibrate import FittedCalibration, check_parity, section, with_map
from training.data import REFERENCE_SOURCE, Dataset, Split
from training.fit import FittedModel, import_keras
from training.subsample import correct_scores

INPUT_NAME = "features"
OUTPUT_NAME = "score"
OPSET = 17
PARITY_TOLERANCE = 1e-5
# The card's optional free-form sections other features may add at export time.
EXTRA_SECTIONS = ("subsample", "tuning")
CardT = TypeVar("CardT")
_LIBRARIES = ("numpy", "tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "scikit-learn")


class ExportError(RuntimeError):
    """The exported model disagrees with the trained one, or cannot be written."""


@dataclass(frozen=True)
class ExportResult:
    folder: Path
    card: ModelCard
    scores: np.ndarray  # onnxruntime scores on the held-out split, float32 [n]
    # the graph's calibrated probability on the held-out split (None without a map)
    probabilities: np.ndarray | None = None


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            # tensorflow-cpu installs the `tensorflow` module under another dist name
            if name == "tensorflow":
                versions[name] = metadata.version("tensorflow-cpu")
    return versions


def to_onnx(fitted: FittedModel, *, beta: float = 1.0) -> bytes:
    """The serialized ONNX model for ``fitted`` (scaling and correction folded in)."""
    import_keras()
    import tensorflow as tf

    kernel, bias = fitted.weights
    n_features = kernel.shape[0]
    # numpy arrays, not tf.constant: tf2onnx turns captured tensors into graph inputs
    mean = fitted.scaler.mean.astype(np.float32)
    scale = fitted.scaler.scale.astype(np.float32)
    w = np.asarray(kernel, dtype=np.float32)
    b = np.asarray(bias, dtype=np.float32)

    @tf.function(input_signature=[tf.TensorSpec([None, n_features], tf.float32, name=INPUT_NAME)])
    def score(features: Any) -> dict[str, Any]:
        p = tf.sigmoid(tf.matmul((features - mean) / scale, w) + b)
        if beta != 1.0:
            p = beta * p / (beta * p - p + 1.0)
        # a dict output is how tf2onnx names the graph output
        return {OUTPUT_NAME: p}

    return function_to_onnx(score)


def function_to_onnx(function: Any) -> bytes:
    """A ``tf.function`` with an input signature as ONNX bytes (binary and multiclass)."""
    import tf2onnx

    proto, _ = tf2onnx.convert.from_function(
        function, input_signature=function.input_signature, opset=OPSET
    )
    # tf2onnx names the batch dimension unk__N; give it a readable, stable name
    for value in (*proto.graph.input, *proto.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "N"
    # tf2onnx writes the traced function's name here, which carries TensorFlow's
    # process-wide trace counter (``__inference_score_689``): the same model exported
    # after other traces would get other bytes, another sha256 and another card version.
    proto.graph.doc_string = "converted by tf2onnx from the model's scoring tf.function"
    return proto.SerializeToString()


def onnx_outputs(model: bytes | Path, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every output of the graph from onnxruntime for raw features, by name (float32)."""
    import onnxruntime as ort

    source = str(model) if isinstance(model, Path) else model
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    # the one input, whatever the graph names it
    values = session.run(names, {session.get_inputs()[0].name: np.asarray(x, dtype=np.float32)})
    return dict(zip(names, values, strict=True))


def onnx_output(model: bytes | Path, x: np.ndarray) -> np.ndarray:
    """The graph's first (raw) output from onnxruntime for raw features (float32)."""
    return next(iter(onnx_outputs(model, x).values()))


def onnx_scores(model: bytes | Path, x: np.ndarray) -> np.ndarray:
    """Scores from onnxruntime for raw features, float32 [n]."""
    return onnx_output(model, x).reshape(-1)


def held_out_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float) -> HeldOutMetrics:
    counts = confusion(labels, scores, threshold)
    report = classification_report(labels, np.asarray(scores) >= threshold)
    auc = roc_auc(labels, scores)
    if auc is None:
        raise ExportError("held-out split has a single class; AUC is undefined")
    return HeldOutMetrics(
        threshold=threshold,
        accuracy=counts.accuracy,
        auc=auc,
        per_class={cls: ClassReport(**report[cls]) for cls in ("0", "1")},
        confusion=ConfusionCounts(**counts.counts()),
        reference_expected_value=expected_value(labels, scores, threshold, REFERENCE_QALY_VALUES),
    )


def write_atomically(path: Path, data: bytes) -> None:
    # the service may be loading this folder; never let it see half a file
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; models are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class CheckedGraph:
    """A graph's held-out outputs from onnxruntime, once both parity checks passed."""

    raw: np.ndarray  # the raw output, shaped like the Keras reference
    calibrated: np.ndarray | None  # the calibrated output (None without a map)


def export_graph(
    name: str,
    model_bytes: bytes,
    x_test: np.ndarray,
    keras: np.ndarray,
    models_dir: Path,
    card: Callable[[dict[str, Any], CheckedGraph], CardT],
    *,
    output: str,
    what: str,
    calibration: FittedCalibration | None = None,
    calibrated_output: str | None = None,
) -> tuple[Path, CardT, CheckedGraph]:
    """The one exporter of binary and multiclass graphs: check, then write.

    onnxruntime's ``output`` on the held-out split must equal ``keras`` (the Keras
    model's, ``what`` in the message) within :data:`PARITY_TOLERANCE`, and with a
    ``calibration`` its ``calibrated_output`` the fitted map's
    (:func:`training.calibrate.check_parity`), or nothing is written. Then
    ``models_dir/<name>/model.onnx`` and the card ``card(header, graph)`` builds from the
    fields every card shares (``name``, ``version``, ``created_at``, ``onnx``), each
    written atomically.
    """
    outputs = onnx_outputs(model_bytes, x_test)
    shape = np.shape(keras)
    raw = outputs[output].reshape(shape)
    gap = float(np.max(np.abs(raw - keras)))
    if not gap <= PARITY_TOLERANCE:
        raise ExportError(
            f"{name}: onnxruntime {what} differ from Keras by {gap:.3g} "
            f"(> {PARITY_TOLERANCE:g}) on the held-out split; not exported"
        )
    calibrated = None
    if calibration is not None:
        assert calibrated_output is not None
        calibrated = outputs[calibrated_output].reshape(shape)
        check_parity(calibration, raw, calibrated, name)
    graph = CheckedGraph(raw=raw, calibrated=calibrated)

    folder = models_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    model_path = folder / MODEL_FILENAME
    write_atomically(model_path, model_bytes)
    header = {
        "name": name,
        "version": sha256_file(model_path)[:12],
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "onnx": onnx_spec(model_path, output),
    }
    written = card(header, graph)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".card.") as tmp:
        os.replace(write_card(Path(tmp), written), folder / CARD_FILENAME)
    return folder, written, graph


def export_model(
    fitted: FittedModel,
    dataset: Dataset,
    data: Split,
    models_dir: Path,
    *,
    beta: float = 1.0,
    threshold: float = DEFAULT_THRESHOLD,
    margin: float = DEFAULT_MARGIN,
    cost_matrix: CostMatrix | None = None,
    extra_sections: dict[str, dict[str, Any]] | None = None,
    n_train: int | None = None,
    calibration: FittedCalibration | None = None,
) -> ExportResult:
    """Export ``fitted`` to ``models_dir/<name>/`` (model.onnx + model-card.json).

    ``beta < 1`` folds the prior-shift correction for a negative subsample into the
    graph; ``extra_sections`` adds the card's optional sections (``subsample``,
    ``tuning``); ``n_train`` overrides the training-row count when the model was
    fitted on something other than ``data.x_train`` (e.g. a subsample of it).
    ``cost_matrix`` (outcome values) goes into the card; by default the variant's own
    matrix, or the reference QALY values for the reference data. ``calibration`` adds
    its map to the graph as the ``probability`` output (checked against the fitted
    calibrator on the held-out split) and the card's ``calibration`` section.
    """
    spec = fitted.spec
    if not 0 < beta <= 1:
        raise ExportError(f"beta {beta} must be in (0, 1]")
    unknown = sorted(set(extra_sections or {}) - set(EXTRA_SECTIONS))
    if unknown:
        raise ExportError(f"unknown card section {unknown[0]!r} (allowed: {EXTRA_SECTIONS})")

    model_bytes = to_onnx(fitted, beta=beta)
    if calibration is not None:
        model_bytes = with_map(model_bytes, OUTPUT_NAME, calibration.map, BINARY_OUTPUT)
    if cost_matrix is None:
        cost_matrix = spec.cost_matrix
    if cost_matrix is None and dataset.source == REFERENCE_SOURCE:
        cost_matrix = REFERENCE_QALY_VALUES

    def card(header: dict[str, Any], graph: CheckedGraph) -> ModelCard:
        scores, probabilities = graph.raw, graph.calibrated
        return ModelCard(
            **header,
            description=spec.description,
            loss=LossSpec(
                type=spec.loss,
                fn_cost=spec.fn_cost if spec.loss == "custom" else 1.0,
                fp_cost=spec.fp_cost if spec.loss == "custom" else 1.0,
            ),
            cost_matrix=(
                OutcomeValues(**{k: float(v) for k, v in cost_matrix.to_dict().items()})
                if cost_matrix is not None
                else None
            ),
            threshold=threshold,
            margin=margin,
            features=list(dataset.feature_names),
            training=training_spec(
                spec,
                type(fitted.model.optimizer).__name__,
                dataset,
                data,
                n_train=len(data.y_train) if n_train is None else n_train,
            ),
            metrics=held_out_metrics(data.y_test, scores, threshold),
            held_out=HeldOut(
                scores=[float(s) for s in scores],
                labels=[int(v) for v in data.y_test],
                probabilities=None if probabilities is None else [float(p) for p in probabilities],
            ),
            score_correction=ScoreCorrection(
                kind="none" if beta == 1.0 else "prior_shift", beta=beta
            ),
            # The whole training split, also for a model fitted on a subsample of it: the
            # split is what the data says the model is meant for.
            feature_ranges=feature_ranges(data.x_train, list(dataset.feature_names)),
            calibration=(
                None
                if calibration is None or probabilities is None
                else section(
                    calibration,
                    BINARY_OUTPUT,
                    data.y_test,
                    scores,
                    probabilities,
                    prior_shift_weight=prior_shift_weight(spec),
                )
            ),
            **(extra_sections or {}),
        )

    folder, written, graph = export_graph(
        spec.name,
        model_bytes,
        data.x_test,
        correct_scores(fitted.predict(data.x_test), beta),
        models_dir,
        card,
        output=OUTPUT_NAME,
        what="scores",
        calibration=calibration,
        calibrated_output=BINARY_OUTPUT,
    )
    return ExportResult(
        folder=folder, card=written, scores=graph.raw, probabilities=graph.calibrated
    )


def prior_shift_weight(spec: Any) -> float | None:
    """``fn_cost / fp_cost`` of a weighted loss (the card's prior-shift baseline), else None."""
    if spec.loss != "custom" or spec.fn_cost <= 0 or spec.fp_cost <= 0:
        return None
    return float(spec.fn_cost / spec.fp_cost)


def onnx_spec(model_path: Path, output_name: str) -> OnnxSpec:
    """The card's description of an exported graph (binary ``score`` or multiclass
    ``scores``): file, input and output names, opset and the file's sha256."""
    return OnnxSpec(
        file=MODEL_FILENAME,
        input_name=INPUT_NAME,
        output_name=output_name,
        opset=OPSET,
        sha256=sha256_file(model_path),
    )


def held_out_rows(test_index: np.ndarray | None) -> dict[str, Any]:
    """The card's record of which rows were held out (nothing when the split has none)."""
    if test_index is None:
        return {}
    rows = [int(i) for i in test_index]
    return {"test_rows": rows, "test_rows_sha256": rows_sha256(rows)}


def training_spec(
    spec: Any,
    optimizer: str,
    dataset: Any,
    split: Any,
    *,
    n_train: int,
    positive_label: str | None = "1",
) -> TrainingSpec:
    """How a model was fitted and on what data; ``spec`` has the fit's seed, epochs, batch
    size and learning rate, ``dataset`` its source, sha256 and labels, ``split`` the
    held-out part (a multiclass model has no positive label)."""
    return TrainingSpec(
        seed=spec.seed,
        epochs=spec.epochs,
        batch_size=spec.batch_size,
        optimizer=optimizer,
        learning_rate=spec.learning_rate,
        data=DataSpec(
            source=dataset.source,
            sha256=dataset.sha256,
            n_rows=len(dataset.y),
            n_train=n_train,
            n_test=len(split.y_test),
            test_size=split.test_size,
            split_seed=split.seed,
            positive_label=positive_label,
            **held_out_rows(getattr(split, "test_index", None)),
        ),
        library_versions=library_versions(),
    )
