"""The model card: the JSON written beside every exported ``model.onnx``.

Training writes it, the service reads it. It is the one contract between the two
roles, so it lives here, in the package both install, and imports no TensorFlow
and no FastAPI.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import stat
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from costaware.decision import DEFAULT_MARGIN, DEFAULT_THRESHOLD, MODEL_NAME_PATTERN

CARD_FILENAME = "model-card.json"
MODEL_FILENAME = "model.onnx"
CARD_SCHEMA_VERSION = 1
# What reading a model folder may cost (the service's COSTAWARE_MAX_CARD_BYTES and
# COSTAWARE_MAX_MODEL_BYTES set the sizes): the shipped cards are 10-100 kB nested 7 levels
# at most, their graphs under 1 kB. The depth bound keeps the JSON parser far from
# Python's recursion limit (a card nested 100,000 deep raised RecursionError).
MAX_CARD_BYTES = 16 * 1024 * 1024
MAX_MODEL_BYTES = 1024 * 1024 * 1024
MAX_CARD_DEPTH = 64


class CardError(ValueError):
    """A card that is missing, unreadable or inconsistent with its model file."""


class _Strict(BaseModel):
    # No NaN or infinity anywhere in a card: the service shows cards as strict JSON.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class LossSpec(_Strict):
    type: Literal["builtin", "custom"]
    fn_cost: float = Field(ge=0)
    fp_cost: float = Field(ge=0)


class OutcomeValues(_Strict):
    """Dollar value of each outcome (negative for a loss), relative to a true negative."""

    tp: float
    fp: float
    tn: float
    fn: float


class OnnxSpec(_Strict):
    file: str = MODEL_FILENAME
    input_name: str
    output_name: str
    opset: int
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


def rows_sha256(rows: list[int]) -> str:
    """sha256 of row positions written as decimal numbers joined by commas (ASCII)."""
    return hashlib.sha256(",".join(str(int(i)) for i in rows).encode("ascii")).hexdigest()


class DataSpec(_Strict):
    source: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    n_rows: int
    n_train: int
    n_test: int
    test_size: float
    split_seed: int
    positive_label: str | None = "1"  # None for a multiclass model
    # Which rows were held out: their 0-based positions in the data (file order, the
    # order of the card's held_out arrays), from train_test_split(rows, test_size=test_size,
    # random_state=split_seed) (stratified by class for a multiclass model), and the
    # rows_sha256 of that list. None in cards written before it was recorded.
    test_rows: list[int] | None = None
    test_rows_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")

    @model_validator(mode="after")
    def _test_rows_match(self) -> DataSpec:
        rows = self.test_rows
        if (rows is None) != (self.test_rows_sha256 is None):
            raise ValueError("test_rows and test_rows_sha256 are given together")
        if rows is not None:
            if len(rows) != self.n_test or len(set(rows)) != len(rows):
                raise ValueError(f"test_rows must be {self.n_test} distinct row positions")
            if not all(0 <= i < self.n_rows for i in rows):
                raise ValueError(f"test_rows must be positions 0..{self.n_rows - 1}")
            if rows_sha256(rows) != self.test_rows_sha256:
                raise ValueError("test_rows_sha256 is not the sha256 of test_rows")
        return self


class TrainingSpec(_Strict):
    seed: int
    epochs: int
    batch_size: int
    optimizer: str
    learning_rate: float
    data: DataSpec
    library_versions: dict[str, str]


class ClassReport(_Strict):
    precision: float
    recall: float
    f1: float
    support: int


class ConfusionCounts(_Strict):
    tp: int
    fp: int
    tn: int
    fn: int


class HeldOutMetrics(_Strict):
    threshold: float
    accuracy: float
    auc: float
    per_class: dict[Literal["0", "1"], ClassReport]
    confusion: ConfusionCounts
    # Expected dollar value per instance under the reference QALY values; a
    # convenience for people reading the card, the service recomputes its own.
    reference_expected_value: float | None = None


class HeldOut(_Strict):
    scores: list[float]
    labels: list[Literal[0, 1]]
    # The graph's calibrated ``probability`` output for the same rows (cards with a
    # calibration map; None for older cards and ``--calibration none``).
    probabilities: list[float] | None = None

    @model_validator(mode="after")
    def _same_length(self) -> HeldOut:
        if len(self.scores) != len(self.labels):
            raise ValueError(
                f"held_out has {len(self.scores)} scores but {len(self.labels)} labels"
            )
        if self.probabilities is not None and len(self.probabilities) != len(self.scores):
            raise ValueError(
                f"held_out has {len(self.probabilities)} probabilities for "
                f"{len(self.scores)} scores"
            )
        return self


# ---------------------------------------------------------------------------
# Calibration (costaware.calibration computes what each map means)


class SigmoidMap(_Strict):
    """Platt scaling on the logit of the score: ``1 / (1 + exp(a * logit(s) + b))``."""

    method: Literal["sigmoid"]
    a: float
    b: float


class IsotonicMap(_Strict):
    """Isotonic regression on the score: linear interpolation of ``y_thresholds`` over
    ``x_thresholds`` (increasing), the score clipped to their range."""

    method: Literal["isotonic"]
    x_thresholds: list[float] = Field(min_length=1)
    y_thresholds: list[float] = Field(min_length=1)

    @model_validator(mode="after")
    def _monotone(self) -> IsotonicMap:
        x, y = self.x_thresholds, self.y_thresholds
        if len(x) != len(y):
            raise ValueError(f"{len(x)} x_thresholds but {len(y)} y_thresholds")
        if any(b < a for a, b in itertools.pairwise(x)):
            raise ValueError("x_thresholds must be non-decreasing")
        if any(b < a for a, b in itertools.pairwise(y)) or not all(0 <= v <= 1 for v in y):
            raise ValueError("y_thresholds must be non-decreasing probabilities in [0, 1]")
        return self


class TemperatureMap(_Strict):
    """Temperature scaling of class probabilities: ``softmax(log(q) / temperature)``."""

    method: Literal["temperature"]
    temperature: float = Field(gt=0)


class VectorMap(_Strict):
    """Vector scaling: ``softmax(weights * log(q) + biases)``, one weight and bias a class."""

    method: Literal["vector"]
    weights: list[float] = Field(min_length=2)
    biases: list[float] = Field(min_length=2)

    @model_validator(mode="after")
    def _same_length(self) -> VectorMap:
        if len(self.weights) != len(self.biases):
            raise ValueError(f"{len(self.weights)} weights but {len(self.biases)} biases")
        return self


CalibrationMap = Annotated[
    SigmoidMap | IsotonicMap | TemperatureMap | VectorMap, Field(discriminator="method")
]
BINARY_METHODS = ("sigmoid", "isotonic")
MULTICLASS_METHODS = ("temperature", "vector")


class ReliabilityBin(_Strict):
    mean_probability: float = Field(ge=0, le=1)
    observed_rate: float = Field(ge=0, le=1)
    count: int = Field(ge=1)


class CalibrationQuality(_Strict):
    """``costaware.calibration.quality``: ECE on equal-mass bins, Brier score, log loss and
    the reliability curve (binary: the positive class; multiclass: the top label)."""

    ece: float = Field(ge=0)
    brier: float = Field(ge=0)
    log_loss: float = Field(ge=0)
    reliability: list[ReliabilityBin]


class CalibrationHeldOut(_Strict):
    """On the held-out split (never used for fitting): the raw score (``before``) and the
    calibrated probability (``after``)."""

    before: CalibrationQuality
    after: CalibrationQuality


class PriorShiftBaseline(_Strict):
    """For a weighted loss: the analytic inverse ``p = s / (w - s (w - 1))`` of the shift
    the weight ``w = fn_cost / fp_cost`` causes, as a baseline for the fitted map."""

    weight: float = Field(gt=0)
    held_out: CalibrationQuality


class Calibration(_Strict):
    """The map from the graph's raw output to the probabilities it also outputs under
    ``output_name``, how it was fitted and what it does on the held-out split."""

    map: CalibrationMap
    output_name: str = Field(min_length=1)
    fitted_on: Literal["out_of_fold", "held_back"]
    rows: int = Field(ge=1)
    folds: int | None = Field(default=None, ge=2)
    held_out: CalibrationHeldOut
    prior_shift_baseline: PriorShiftBaseline | None = None

    @model_validator(mode="after")
    def _folds_match(self) -> Calibration:
        if (self.fitted_on == "out_of_fold") != (self.folds is not None):
            raise ValueError("folds is given exactly when fitted_on is out_of_fold")
        return self


def _check_calibration(
    calibration: Calibration | None, onnx: OnnxSpec, methods: tuple[str, ...], k: int | None
) -> None:
    if calibration is None:
        return
    if calibration.map.method not in methods:
        raise ValueError(
            f"calibration method {calibration.map.method!r} does not apply to this kind of "
            f"model (one of {', '.join(methods)})"
        )
    if calibration.output_name == onnx.output_name:
        raise ValueError("calibration.output_name must differ from onnx.output_name")
    if (
        k is not None
        and isinstance(calibration.map, VectorMap)
        and len(calibration.map.weights) != k
    ):
        raise ValueError(
            f"vector calibration has {len(calibration.map.weights)} weights for {k} classes"
        )


class ScoreCorrection(_Strict):
    """How served scores relate to what the network learned.

    ``prior_shift``: the model was trained on a subsample keeping negatives at rate
    ``beta``; the ONNX graph itself maps the raw score ``p_s`` to
    ``beta*p_s / (beta*p_s - p_s + 1)``, so served scores are on the true base rate.
    """

    kind: Literal["none", "prior_shift"] = "none"
    beta: float = Field(default=1.0, gt=0, le=1)
    applied: Literal["in_graph"] = "in_graph"


class FeatureRange(_Strict):
    """One feature's values in the training split: the extremes and the 0.5th and 99.5th
    percentiles (linear interpolation), in the card's feature order."""

    name: str
    min: float
    p0_5: float
    p99_5: float
    max: float

    @model_validator(mode="after")
    def _ordered(self) -> FeatureRange:
        if not self.min <= self.p0_5 <= self.p99_5 <= self.max:
            raise ValueError(
                f"feature {self.name!r}: expected min <= p0_5 <= p99_5 <= max, got "
                f"{self.min}, {self.p0_5}, {self.p99_5}, {self.max}"
            )
        return self


def feature_ranges(x: Any, names: list[str]) -> list[FeatureRange]:
    """Each column's training range from the training rows ``x`` ([n, len(names)])."""
    import numpy as np

    rows = np.asarray(x, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[1] != len(names) or len(rows) == 0:
        raise CardError(f"training rows of shape {list(rows.shape)} for {len(names)} features")
    low, high = np.percentile(rows, [0.5, 99.5], axis=0)
    return [
        FeatureRange(name=name, min=lo, p0_5=p_lo, p99_5=p_hi, max=hi)
        for name, lo, p_lo, p_hi, hi in zip(
            names,
            rows.min(axis=0).tolist(),
            low.tolist(),
            high.tolist(),
            rows.max(axis=0).tolist(),
            strict=True,
        )
    ]


class ModelCard(BaseModel):
    """Everything a reader or the service needs to know about one exported model.

    Optional sections (``subsample``, ``tuning``) are free-form objects written by
    the features that produce them.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    schema_version: Literal[1] = CARD_SCHEMA_VERSION
    name: str = Field(pattern=MODEL_NAME_PATTERN)
    version: str
    created_at: str
    description: str = ""
    loss: LossSpec
    cost_matrix: OutcomeValues | None = None
    threshold: float = Field(default=DEFAULT_THRESHOLD, ge=0, le=1)
    margin: float = Field(default=DEFAULT_MARGIN, ge=0, le=1)
    features: list[str] = Field(min_length=1)
    onnx: OnnxSpec
    training: TrainingSpec
    metrics: HeldOutMetrics
    held_out: HeldOut
    score_correction: ScoreCorrection = ScoreCorrection()
    subsample: dict[str, Any] | None = None
    tuning: dict[str, Any] | None = None
    # What the model saw in training, feature by feature; the service flags (or refuses)
    # instances outside [min, max]. Cards written before ranges were recorded have none.
    feature_ranges: list[FeatureRange] | None = None
    # The calibration map the graph applies for its ``probability`` output; None for
    # cards written before calibration and for ``--calibration none`` (served, and every
    # answer says ``"calibrated": false``).
    calibration: Calibration | None = None

    @model_validator(mode="after")
    def _ranges_match_features(self) -> ModelCard:
        if self.feature_ranges is not None:
            names = [item.name for item in self.feature_ranges]
            if names != self.features:
                raise ValueError("feature_ranges must name the card's features, in order")
        _check_calibration(self.calibration, self.onnx, BINARY_METHODS, None)
        if (self.calibration is None) != (self.held_out.probabilities is None):
            raise ValueError("held_out.probabilities is given exactly when calibration is")
        return self

    @property
    def calibrated(self) -> bool:
        return self.calibration is not None

    def summary(self) -> dict[str, Any]:
        """The card without the held-out score arrays (what ``GET /models/{name}`` shows)."""
        return self.model_dump(exclude={"held_out"})


# ---------------------------------------------------------------------------
# Multiclass models (``task: multiclass``): K-class softmax graphs with a value matrix

VALUE_ORIENTATION = "values[i][j] = value of deciding class j when the truth is class i"


class ValueMatrixSpec(_Strict):
    """The value matrix a multiclass model decides with (row = truth, column = decision)."""

    classes: list[str] = Field(min_length=2)
    values: list[list[float]]
    orientation: Literal["values[i][j] = value of deciding class j when the truth is class i"] = (
        VALUE_ORIENTATION
    )
    unit: str = "dollars per instance"
    illustrative: bool = False
    note: str = ""

    @model_validator(mode="after")
    def _square(self) -> ValueMatrixSpec:
        k = len(self.classes)
        if len(self.values) != k or any(len(row) != k for row in self.values):
            raise ValueError(f"value matrix must be {k} x {k} (one row and column per class)")
        return self


class MulticlassLoss(_Strict):
    """``cross_entropy``, or ``expected_cost``: the mean over the batch of
    ``sum_j q_j * regret[y, j]`` with ``regret[i, j] = max_k values[i, k] - values[i, j]``
    divided by ``regret_scale`` (its largest entry, so SGD's step does not depend on the
    matrix's unit)."""

    type: Literal["cross_entropy", "expected_cost"]
    regret_scale: float | None = None


class MulticlassMetrics(_Strict):
    """Held-out figures: the minimum-expected-cost decisions and, for comparison, the most
    probable class (``argmax_*``)."""

    accuracy: float
    expected_value: float
    total_value: float
    argmax_accuracy: float
    argmax_expected_value: float
    confusion: list[list[int]]  # rows = truth, columns = decision (classes order)


class MulticlassHeldOut(_Strict):
    probabilities: list[list[float]]  # the graph's raw ``scores`` output
    labels: list[int]  # class indices
    # The graph's calibrated ``probabilities`` output for the same rows (None without a map).
    calibrated_probabilities: list[list[float]] | None = None

    @model_validator(mode="after")
    def _same_length(self) -> MulticlassHeldOut:
        if len(self.probabilities) != len(self.labels):
            raise ValueError(
                f"held_out has {len(self.probabilities)} rows but {len(self.labels)} labels"
            )
        calibrated = self.calibrated_probabilities
        if calibrated is not None and len(calibrated) != len(self.probabilities):
            raise ValueError(
                f"held_out has {len(calibrated)} calibrated rows for {len(self.probabilities)} rows"
            )
        return self


class MulticlassCard(BaseModel):
    """A multiclass model: ``scores`` output ``[N, K]`` (class probabilities in ``classes``
    order), decided by the highest expected value under ``value_matrix``. ``margin`` is in
    the matrix's value unit: a decision is close when its best two actions' expected values
    differ by less."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = CARD_SCHEMA_VERSION
    task: Literal["multiclass"] = "multiclass"
    name: str = Field(pattern=MODEL_NAME_PATTERN)
    version: str
    created_at: str
    description: str = ""
    classes: list[str] = Field(min_length=2)
    value_matrix: ValueMatrixSpec
    loss: MulticlassLoss
    decision: Literal["min_expected_cost"] = "min_expected_cost"
    margin: float = Field(ge=0)
    margin_unit: Literal["value"] = "value"
    features: list[str] = Field(min_length=1)
    onnx: OnnxSpec
    training: TrainingSpec
    metrics: MulticlassMetrics
    held_out: MulticlassHeldOut
    comparison: dict[str, Any] | None = None
    # As ModelCard's: the training split's range of each feature (out_of_range flags).
    feature_ranges: list[FeatureRange] | None = None
    # As ModelCard's, for the graph's ``probabilities`` output.
    calibration: Calibration | None = None

    @property
    def calibrated(self) -> bool:
        return self.calibration is not None

    @model_validator(mode="after")
    def _consistent(self) -> MulticlassCard:
        ranges = self.feature_ranges
        if ranges is not None and [item.name for item in ranges] != self.features:
            raise ValueError("feature_ranges must name the card's features, in order")
        k = len(self.classes)
        _check_calibration(self.calibration, self.onnx, MULTICLASS_METHODS, k)
        calibrated = self.held_out.calibrated_probabilities
        if (self.calibration is None) != (calibrated is None):
            raise ValueError(
                "held_out.calibrated_probabilities is given exactly when calibration is"
            )
        if calibrated is not None and any(len(row) != k for row in calibrated):
            raise ValueError(f"held_out.calibrated_probabilities rows must have {k} entries")
        if self.value_matrix.classes != self.classes:
            raise ValueError("value_matrix.classes must equal classes")
        if any(len(row) != k for row in self.held_out.probabilities):
            raise ValueError(f"held_out.probabilities rows must have {k} entries")
        if any(not 0 <= label < k for label in self.held_out.labels):
            raise ValueError(f"held_out.labels must be class indices 0..{k - 1}")
        return self

    def summary(self) -> dict[str, Any]:
        """The card without the held-out arrays (what ``GET /models/{name}`` shows)."""
        return self.model_dump(exclude={"held_out"})


AnyCard = ModelCard | MulticlassCard


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_card(folder: Path) -> ModelCard:
    """Read and validate a binary model's ``folder/model-card.json``; raise
    :class:`CardError` naming the problem (a multiclass card is one)."""
    card = read_any_card(folder)
    if not isinstance(card, ModelCard):
        raise CardError(f"{folder / CARD_FILENAME}: a multiclass model card, not a binary one")
    return card


def read_any_card(folder: Path, max_bytes: int = MAX_CARD_BYTES) -> AnyCard:
    """Read and validate ``folder/model-card.json``, binary or multiclass (``task``)."""
    path = folder / CARD_FILENAME
    return parse_card(read_folder_file(folder, CARD_FILENAME, max_bytes, "model card"), path)


def read_folder_file(folder: Path, name: str, max_bytes: int, what: str) -> bytes:
    """The bytes of ``folder/name``, refused (:class:`CardError` naming ``what`` and why)
    unless ``name`` is a plain file name and the file a regular file of at most
    ``max_bytes``, itself no symbolic link. Nothing outside ``folder`` is ever opened
    (an absolute name, ``..`` or a link is refused before any open) and nothing can block:
    the file is examined before it is opened and opened non-blocking, so a FIFO or a
    device (``/dev/zero``) is refused, never read. What is checked is what is read: the
    open file's own status is checked again, and the read stops past ``max_bytes``."""
    path = folder / name
    if not name or name in {".", ".."} or "/" in name or "\0" in name:
        # Not echoed: a path the card names may be anywhere on the host.
        kind = "an absolute path" if name.startswith("/") else "a path" if "/" in name else ""
        raise CardError(
            f"{folder}: the {what} is {kind or 'no file name'}; it must be a file name in "
            "the folder"
        )
    try:
        directory = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise CardError(f"{folder}: unreadable model folder ({exc.strerror})") from None
    try:
        try:
            before = os.stat(name, dir_fd=directory, follow_symlinks=False)
        except FileNotFoundError:
            raise CardError(f"{path}: no {what}") from None
        _check_regular(before, path, what, max_bytes)
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        handle = os.open(name, flags, dir_fd=directory)
    except OSError as exc:
        raise CardError(f"{path}: unreadable {what} ({exc.strerror})") from None
    finally:
        os.close(directory)
    with os.fdopen(handle, "rb") as stream:
        opened = os.fstat(stream.fileno())
        if (opened.st_dev, opened.st_ino) != (before.st_dev, before.st_ino):
            raise CardError(f"{path}: the {what} was replaced while it was being read")
        _check_regular(opened, path, what, max_bytes)
        data = stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise CardError(f"{path}: the {what} grew past {max_bytes} bytes while being read")
    return data


def _check_regular(info: os.stat_result, path: Path, what: str, max_bytes: int) -> None:
    if stat.S_ISLNK(info.st_mode):
        raise CardError(
            f"{path}: the {what} is a symbolic link; it must be a regular file in the folder"
        )
    if not stat.S_ISREG(info.st_mode):
        raise CardError(f"{path}: the {what} is not a regular file")
    if info.st_size > max_bytes:
        raise CardError(f"{path}: the {what} has {info.st_size} bytes, more than {max_bytes}")


_CONTAINERS = frozenset({list, dict})


def nesting_depth(value: Any) -> int:
    """How deep the lists and dicts of a parsed JSON value nest (0 for a scalar), counted
    without recursion."""
    deepest = 0
    pending: list[tuple[Any, int]] = [(value, 0)] if type(value) in _CONTAINERS else []
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            item = list(item.values())
        deepest = max(deepest, depth + 1)
        # A card's long arrays hold numbers: their element types are looked at in C.
        if _CONTAINERS.isdisjoint(map(type, item)):
            continue
        pending.extend((child, depth + 1) for child in item if type(child) in _CONTAINERS)
    return deepest


def parse_card(data: bytes, path: Path, max_depth: int = MAX_CARD_DEPTH) -> AnyCard:
    """Validate a card's bytes (as read from ``path``, which error messages name); the
    service reads a card's bytes once and keeps them with the model they describe."""
    try:
        # The parser refuses nesting near the recursion limit with RecursionError; what it
        # accepts is bounded again, well below, before anything else walks it.
        raw = json.loads(data.decode("utf-8"))
    except RecursionError:
        raise CardError(f"{path}: unreadable model card (nested too deep)") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CardError(f"{path}: unreadable model card ({exc})") from exc
    depth = nesting_depth(raw)
    if depth > max_depth:
        raise CardError(
            f"{path}: unreadable model card (nested {depth} levels deep, more than {max_depth})"
        )
    multiclass = isinstance(raw, dict) and raw.get("task") == "multiclass"
    kind: type[BaseModel] = MulticlassCard if multiclass else ModelCard
    try:
        return kind.model_validate(raw)  # type: ignore[return-value]
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise CardError(
            f"{path}: malformed model card at {where}: {first['msg']}"
            + (f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else "")
        ) from exc


def verify_model_file(folder: Path, card: AnyCard, max_bytes: int = MAX_MODEL_BYTES) -> Path:
    """Return the model path after checking it is a regular file in ``folder``
    (:func:`read_folder_file`) that matches the card's sha256."""
    model_path = folder / card.onnx.file
    graph = read_folder_file(folder, card.onnx.file, max_bytes, "model file named by the card")
    actual = hashlib.sha256(graph).hexdigest()
    if actual != card.onnx.sha256:
        expected = card.onnx.sha256
        raise CardError(
            f"{model_path}: sha256 {actual[:12]}… does not match the card's {expected[:12]}…"
        )
    return model_path


def write_card(folder: Path, card: AnyCard) -> Path:
    path = folder / CARD_FILENAME
    path.write_text(json.dumps(card.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8")
    return path
