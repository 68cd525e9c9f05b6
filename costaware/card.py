"""The model card: the JSON written beside every exported ``model.onnx``.

Training writes it, the service reads it. It is the one contract between the two
roles, so it lives here, in the package both install, and imports no TensorFlow
and no FastAPI.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from costaware.decision import DEFAULT_MARGIN, DEFAULT_THRESHOLD, MODEL_NAME_PATTERN

CARD_FILENAME = "model-card.json"
MODEL_FILENAME = "model.onnx"
CARD_SCHEMA_VERSION = 1


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


class DataSpec(_Strict):
    source: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    n_rows: int
    n_train: int
    n_test: int
    test_size: float
    split_seed: int
    positive_label: str | None = "1"  # None for a multiclass model


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

    @model_validator(mode="after")
    def _same_length(self) -> HeldOut:
        if len(self.scores) != len(self.labels):
            raise ValueError(
                f"held_out has {len(self.scores)} scores but {len(self.labels)} labels"
            )
        return self


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

    @model_validator(mode="after")
    def _ranges_match_features(self) -> ModelCard:
        if self.feature_ranges is not None:
            names = [item.name for item in self.feature_ranges]
            if names != self.features:
                raise ValueError("feature_ranges must name the card's features, in order")
        return self

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
    probabilities: list[list[float]]
    labels: list[int]  # class indices

    @model_validator(mode="after")
    def _same_length(self) -> MulticlassHeldOut:
        if len(self.probabilities) != len(self.labels):
            raise ValueError(
                f"held_out has {len(self.probabilities)} rows but {len(self.labels)} labels"
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

    @model_validator(mode="after")
    def _consistent(self) -> MulticlassCard:
        ranges = self.feature_ranges
        if ranges is not None and [item.name for item in ranges] != self.features:
            raise ValueError("feature_ranges must name the card's features, in order")
        k = len(self.classes)
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


def read_any_card(folder: Path) -> AnyCard:
    """Read and validate ``folder/model-card.json``, binary or multiclass (``task``)."""
    path = folder / CARD_FILENAME
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise CardError(f"{path}: no model card") from exc
    except OSError as exc:
        raise CardError(f"{path}: unreadable model card ({exc})") from exc
    return parse_card(data, path)


def parse_card(data: bytes, path: Path) -> AnyCard:
    """Validate a card's bytes (as read from ``path``, which error messages name); the
    service reads a card's bytes once and keeps them with the model they describe."""
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CardError(f"{path}: unreadable model card ({exc})") from exc
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


def verify_model_file(folder: Path, card: AnyCard) -> Path:
    """Return the model path after checking it exists and matches the card's sha256."""
    model_path = folder / card.onnx.file
    if not model_path.is_file():
        raise CardError(f"{model_path}: model file named by the card does not exist")
    actual = sha256_file(model_path)
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
