"""The wire contract: pydantic models that parse the JSON request bodies and describe the
answers, and the JSON Schemas the OpenAPI document shows for what pydantic cannot state
alone (an instance's length and feature names come from the loaded models).

Parsing: :func:`service.codecs.decode_json_request` and the ``/evaluate`` route validate
a parsed body with :class:`PredictRequest` or :class:`EvaluateRequest`; their validation
errors are translated in one place (:func:`translate_validation_error`) into the messages
that name the field. An instance's values are checked by the decoder that turns them into
the model's input matrix (it names the row, column and feature); :func:`instance_schema`
states the same rules for the document, from the same constants, and the schemathesis run
in the test suite checks that the two agree (every generated body the schema accepts is
answered, every one it rejects gets a 4xx).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
)

from costaware.decision import MODEL_NAME_PATTERN
from costaware.economics import MAX_OUTCOME_VALUE, EconomicsError, as_number
from service.decisionlog.ids import ID_PATTERN

# The model's input is float32: a finite number within float32's range, or it is refused.
FLOAT32_MAX = float(np.finfo(np.float32).max)
ON_OUT_OF_RANGE = ("flag", "refuse")

# A number from the body in [0, 1]: strict, so not a numeric string and not true/false.
UnitInterval = Annotated[float, Field(ge=0, le=1, strict=True)]
# A margin: a score margin in [0, 1], or dollars >= 0 when deciding by expected value (the
# data plane refuses a score margin above 1).
Margin = Annotated[float, Field(ge=0, strict=True, allow_inf_nan=False)]


class PredictRequest(BaseModel):
    """The JSON body of ``/predict`` (and of ``/invocations`` with JSON)."""

    model_config = ConfigDict(extra="forbid", title="PredictRequest")

    instances: list[Any] = Field(
        min_length=1,
        description="Raw feature rows: each an array of the model's features in the card's "
        "order, or an object keyed by feature name. Every value a finite number within "
        "float32's range.",
    )
    model: str | None = Field(
        default=None,
        description="Model name; default: the service's default model.",
        json_schema_extra={"pattern": MODEL_NAME_PATTERN},
    )
    threshold: UnitInterval | None = Field(
        default=None, description="label = score >= threshold; default: the card's."
    )
    margin: Margin | None = Field(
        default=None,
        description="close_confusion = |score - threshold| < margin, a score margin in "
        "[0, 1]; deciding by expected value (a cost_matrix, or a multiclass model) a margin "
        "in dollars >= 0. Default: the card's.",
    )
    cost_matrix: Any = Field(
        default=None,
        description="Decide by expected value instead of a threshold: for a binary model "
        "tp, fp, tn, fn (each a number or one per instance); for a multiclass model a value "
        "matrix {classes, values}. No threshold with it.",
    )
    on_out_of_range: Literal["flag", "refuse"] | None = Field(
        default=None,
        description="Instances with features outside the model's training range: flag them "
        "in out_of_range (default), or refuse the request with 422 out_of_range.",
    )
    ids: list[Any] | None = Field(
        default=None,
        description="The instances' own prediction ids, one per instance, distinct (1 to 200 "
        "printable ASCII characters without spaces, quotes, commas or backslashes); "
        "default: the X-Request-ID header suffixed by -<index>, else a generated UUIDv7. "
        "Outcomes are posted to /outcomes by these ids.",
    )


class BinaryCostMatrix(BaseModel):
    """Dollar value of each outcome of a binary decision (negative = loss)."""

    tp: float | list[float] = Field(description="a number, or one value per instance")
    fp: float | list[float] = Field(description="a number, or one value per instance")
    tn: float | list[float] = Field(description="a number, or one value per instance")
    fn: float | list[float] = Field(description="a number, or one value per instance")


class ValueMatrixBody(BaseModel):
    """A multiclass value matrix: values[i][j] = value of deciding class j when the truth
    is class i (row = truth, column = decision), dollars per instance."""

    classes: list[str] = Field(min_length=2, description="the model's classes, in its order")
    values: list[list[float]] = Field(
        description="K x K; values[i][j] = value of deciding class j when the truth is "
        "class i (row = truth, column = decision)"
    )


class EvaluateRequest(BaseModel):
    """The JSON body of ``/evaluate``. Which data is evaluated, and the rules that tie the
    fields together (labels as long as the data, per-instance costs as long as the data,
    no models with posted scores), are checked by the data plane with messages that name
    the field; the OpenAPI document states them as three variants of this body."""

    model_config = ConfigDict(extra="forbid", title="EvaluateRequest")

    models: Any = Field(default=None, description="Model names; default: every loaded model.")
    cost_matrix: Any = Field(
        description="Dollar value of each outcome (negative for a loss): tp, fp, tn, fn, each "
        f"a number or one number per instance, at most {MAX_OUTCOME_VALUE:g} in magnitude."
    )
    instances: Any = Field(default=None, description="Instances scored here by each model.")
    scores: Any = Field(default=None, description="Scores produced elsewhere, in [0, 1].")
    labels: Any = Field(default=None, description="0/1 labels, one per instance or score.")
    threshold: UnitInterval | None = Field(default=None, description="Default: the card's.")
    margin: Margin | None = Field(
        default=None,
        description="Binary: a score margin in [0, 1] (default: card's). Value matrix: "
        "dollars >= 0.",
    )
    prevalence: UnitInterval | None = Field(
        default=None,
        description="Value the decisions as if positives were this share of the data "
        "(positives weigh prevalence/p, negatives (1-prevalence)/(1-p)); counts and rates "
        "stay those of the data. Default: the data's own prevalence.",
    )
    curve: bool | None = Field(
        default=None,
        strict=True,
        description="Add to each result `curve`: the expected value by threshold on a grid "
        "dense near 0, sampled also at the result's thresholds and the card's.",
    )


# ---------------------------------------------------------------------------------------
# Answers


class Prediction(BaseModel):
    id: str = Field(
        description="The prediction's id: the posted ids, else X-Request-ID (or "
        "X-Amzn-SageMaker-Inference-Id) + '-' + the instance's index, else a generated UUIDv7; "
        "outcomes are posted to /outcomes by it."
    )
    score: float = Field(
        ge=0, le=1, description="The graph's raw score (what the threshold applies to)."
    )
    probability: float | None = Field(
        ge=0,
        le=1,
        description="The graph's calibrated probability of the positive class (card "
        "`calibration`); null for a model without a calibration map.",
    )
    label: Literal[0, 1] = Field(description="1 when score >= threshold")
    close_confusion: bool = Field(description="|score - threshold| < margin")
    out_of_range: list[str] | None = Field(
        description="Features outside the training [min, max]; null when the card records "
        "no training ranges."
    )


class ValuedPrediction(BaseModel):
    id: str = Field(
        description="The prediction's id: the posted ids, else X-Request-ID (or "
        "X-Amzn-SageMaker-Inference-Id) + '-' + the instance's index, else a generated UUIDv7; "
        "outcomes are posted to /outcomes by it."
    )
    score: float | None = Field(default=None, description="binary: the graph's raw score")
    probability: float | None = Field(
        default=None,
        description="binary: the calibrated P(class 1) the decision was taken on; null "
        "without a calibration map (the decision then took the score as it is)",
    )
    probabilities: dict[str, float] | None = Field(
        default=None,
        description="multiclass: probability of each class, the ones the decision was taken "
        "on (calibrated when the model has a map, else the graph's raw output)",
    )
    scores: dict[str, float] | None = Field(
        default=None, description="multiclass, calibrated models only: the raw class scores"
    )
    label: int | None = Field(default=None, description="binary: equal to decision")
    decision: int | str = Field(description="binary: 1 = treat; multiclass: a class name")
    expected_values: dict[str, float] = Field(description="expected value of each decision")
    close_confusion: bool = Field(description="best two expected values closer than margin")


class ValuedPredictResponse(BaseModel):
    model: str
    version: str
    classes: list[str]
    decision_rule: str
    cost_matrix: str = Field(description="'request' or 'card'")
    margin: float | None = Field(description="dollars; null when per instance")
    margin_unit: str
    margin_note: str
    calibrated: bool = Field(
        description="Decided on the graph's calibrated probabilities; false: the model has "
        "no calibration map and its raw scores were taken as probabilities"
    )
    predictions: list[ValuedPrediction]


class PredictResponse(BaseModel):
    model: str
    version: str
    threshold: float
    margin: float
    calibrated: bool = Field(description="The model has a calibration map (`probability`).")
    predictions: list[Prediction]


class RankingEntry(BaseModel):
    model_config = ConfigDict(extra="allow")
    rank: int
    model: str | None
    threshold: float
    expected_value: float
    total_value: float


class EvaluateResponse(BaseModel):
    model_config = ConfigDict(extra="allow")
    data: Literal["held_out", "instances", "scores", "csv"]
    note: str
    cost_matrix: dict[str, Any] | Literal["per_instance"]
    warnings: list[str]
    results: list[dict[str, Any]]
    ranking: list[RankingEntry]
    best_model: str | None
    best_decision: dict[str, Any]


class MulticlassRankingEntry(BaseModel):
    model_config = ConfigDict(extra="allow")
    rank: int
    model: str | None
    expected_value: float
    total_value: float
    argmax_probability_expected_value: float = Field(
        description="the expected value of deciding the most probable class instead"
    )


class MulticlassEvaluateResponse(BaseModel):
    """The evaluation under a multiclass value matrix (no threshold, no best threshold)."""

    model_config = ConfigDict(extra="allow")
    data: Literal["held_out", "instances", "scores", "csv"]
    note: str
    cost_matrix: dict[str, Any] = Field(description="classes, values and their orientation")
    margin: float = Field(description="dollars per instance")
    margin_unit: str
    warnings: list[str]
    results: list[dict[str, Any]]
    ranking: list[MulticlassRankingEntry]
    best_model: str | None


class ErrorBody(BaseModel):
    error: str = Field(description="The kind of error, e.g. invalid_input, not_found.")
    detail: str = Field(description="What was wrong and where (row, column, field).")


class LoadError(BaseModel):
    at: str = Field(description="When the load failed (UTC, ISO 8601).")
    reason: str


class ModelSummary(BaseModel):
    name: str
    version: str
    state: Literal["ready", "loading"] = Field(
        description="ready; loading: a new version is being checked while this one serves."
    )
    sha256: str = Field(description="The served graph's sha256.")
    loaded_at: str = Field(description="When this version began serving (UTC, ISO 8601).")
    last_error: LoadError | None = Field(
        description="Why the last load of this name failed, until one succeeds."
    )
    task: str = Field(description="binary or multiclass")
    classes: list[str] = Field(description="class names; a binary model's are 0 and 1")
    loss: dict[str, Any]
    threshold: float | None = Field(description="binary: the card's; multiclass: none")
    margin: float = Field(
        description="binary: score margin; multiclass: dollars per instance (close when the "
        "best two actions' expected values differ by less)"
    )
    features: list[str]
    calibrated: bool = Field(
        description="The graph outputs a calibrated probability (card `calibration`); false: "
        "the scores are not probabilities the model has earned, and every answer says so."
    )


class WorkerState(BaseModel):
    pid: int = Field(description="The worker process that answered.")
    generation: int = Field(description="Changes (loads, unloads) this worker has applied.")


class ModelList(BaseModel):
    default: str
    models: list[ModelSummary]
    loading: list[str] = Field(description="Names being loaded that are not served yet.")
    refused: dict[str, str] = Field(description="Model folders not served, and why.")
    worker: WorkerState


class LoadResult(BaseModel):
    name: str
    version: str = Field(description="The version served from now on.")
    previous_version: str | None = Field(description="The version it replaced, if any.")
    changed: bool = Field(description="False when the folder held what was already served.")
    sha256: str
    generation: int
    seconds: float = Field(description="Time taken to read, check, warm up and swap.")


class UnloadResult(BaseModel):
    name: str
    version: str = Field(description="The version that was unloaded.")
    generation: int


class ExecutionParameters(BaseModel):
    MaxConcurrentTransforms: int  # SageMaker's field names
    BatchStrategy: str
    MaxPayloadInMB: int


ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "Malformed body (broken JSON, JSON lines or text encoding)",
    404: "Unknown model",
    406: "Unsatisfiable Accept",
    413: "Body over the size limit",
    415: "Unsupported Content-Type",
    422: "Invalid input (the detail names the row, column, feature or field)",
    503: "No model loaded",
}


# ---------------------------------------------------------------------------------------
# JSON Schemas for the document, from the loaded models


def number_schema() -> dict[str, Any]:
    """One feature value: what the instance decoder accepts."""
    return {"type": "number", "minimum": -FLOAT32_MAX, "maximum": FLOAT32_MAX}


def instance_schema(features: Sequence[str] | None) -> dict[str, Any]:
    """One instance for models with these ``features`` (all loaded models agree), or, with
    None, for models that disagree (the length and names then depend on the model)."""
    if features is None:
        return {
            "description": "An array of the chosen model's features in its card's order, or "
            "an object keyed by its feature names (see GET /models/{name}).",
            "anyOf": [
                {"type": "array", "items": number_schema(), "minItems": 1},
                {"type": "object", "additionalProperties": number_schema(), "minProperties": 1},
            ],
        }
    n = len(features)
    return {
        "anyOf": [
            {"type": "array", "items": number_schema(), "minItems": n, "maxItems": n},
            {
                "type": "object",
                "properties": {name: number_schema() for name in features},
                "required": list(features),
                "additionalProperties": False,
            },
        ]
    }


def model_name_schema(names: Sequence[str] | None) -> dict[str, Any]:
    if names:
        return {"type": "string", "enum": list(names)}
    return {"type": "string", "pattern": MODEL_NAME_PATTERN}


# ---------------------------------------------------------------------------------------
# Validation errors, translated in one place


def describe(value: Any) -> str:
    """A value as a message shows it: JSON, cut at 40 characters."""
    try:
        text = json.dumps(value) if not isinstance(value, float) else repr(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def translate_validation_error(
    exc: ValidationError, prefix: str, allowed: Sequence[str], required: dict[str, str]
) -> tuple[str, str]:
    """The field and message for the first problem pydantic found in a request body.

    ``prefix`` goes before field names (``body.`` or nothing), ``allowed`` lists the
    fields for an unknown one, ``required`` holds the message for each missing field.
    Returns ``(field, message)``; the caller raises the service's error.
    """
    errors = exc.errors()
    # An unknown field is reported first (alphabetically), as the body's first problem.
    extra = sorted(
        (error for error in errors if error["type"] == "extra_forbidden"),
        key=lambda error: str(error["loc"][0]),
    )
    error = extra[0] if extra else errors[0]
    loc = error["loc"]
    name = str(loc[0]) if loc else ""
    field = f"{prefix}{name}"
    kind = error["type"]
    value = error.get("input")
    if kind == "extra_forbidden":
        return field, f"unknown field; allowed: {', '.join(allowed)}"
    if kind == "missing":
        return field, required.get(name, "field required")
    if kind == "literal_error":
        options = " or ".join(repr(option) for option in ON_OUT_OF_RANGE)
        return field, f"expected {options}, got {describe(value)}"
    if kind in ("greater_than_equal", "less_than_equal", "finite_number") and name == "margin":
        return field, (
            f"{value} is outside [0, 1] (a score margin) and is not a dollar margin >= 0 either"
        )
    if kind in ("greater_than_equal", "less_than_equal"):
        return field, f"{value} is outside [0, 1]"
    if kind == "float_type" and name in ("threshold", "margin", "prevalence"):
        try:
            as_number(value, field)
        except EconomicsError as exc:
            return field, exc.message  # not a number, or an integer beyond float range
        return field, f"{describe(value)} is not a number"
    if kind == "bool_type":
        return field, f"expected true or false, got {describe(value)}"
    if kind == "string_type" and name == "model":
        return field, f"expected a model name, got {describe(value)}"
    return field, f"{error['msg']} (got {describe(value)})"


# For route decorators; the OpenAPI document's responses are set per operation by
# service.openapi from the same descriptions.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in ERROR_DESCRIPTIONS.items()
}


# ---------------------------------------------------------------------------------------
# Outcomes and the value report (service.decisionlog, docs/REALIZED.md)


class Outcome(BaseModel):
    """The truth about one served prediction."""

    model_config = ConfigDict(extra="forbid")

    id: StrictStr = Field(
        description="the prediction's id, as its answer gave it",
        json_schema_extra={"pattern": ID_PATTERN},
    )
    label: StrictStr | StrictInt = Field(
        description="the true class: a class name of the model, or its index (binary: 0 or 1)"
    )


class OutcomesRequest(BaseModel):
    """The JSON body of ``POST /outcomes``."""

    model_config = ConfigDict(extra="forbid", title="OutcomesRequest")

    outcomes: list[Outcome] = Field(min_length=1, max_length=100_000)
    replace: StrictBool = Field(
        default=False,
        description="true: a different label for an id that has one replaces it (else 409)",
    )


class OutcomesResponse(BaseModel):
    stored: int = Field(description="outcomes stored now")
    replaced: int = Field(description="outcomes that replaced a different label (replace)")
    unchanged: int = Field(description="outcomes already stored with the same label")
    unknown: list[str] = Field(description="ids not in the decision log, not stored")


class VersionValue(BaseModel):
    version: str
    decisions: int
    with_outcome: int
    realized_value: float = Field(description="sum of M[truth, decision], dollars")
    expected_value: float = Field(description="sum of the stated expected values, same decisions")
    gap: float = Field(description="realized_value - expected_value")
    gap_standard_error: float
    estimated_value_without_outcome: float
    alert: bool
    without_matrix: int = Field(description="decisions logged under no value matrix (unvalued)")


class ValueWindow(BaseModel):
    from_: str = Field(alias="from")
    to: str
    versions: list[VersionValue]


class ValueReport(BaseModel):
    model: str
    from_: str = Field(alias="from")
    to: str
    window: str
    window_ms: int
    alert_rule: str
    windows: list[ValueWindow]
