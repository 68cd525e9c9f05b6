"""Pydantic shapes of the JSON the service speaks, for the OpenAPI document.

Request bodies are decoded by :mod:`service.codecs` (errors must name rows and columns,
and CSV shares the path), so these models document the wire format rather than parse it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field


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
    """The JSON body of ``POST /evaluate`` (``service.routes.evaluate`` decodes it)."""

    models: list[str] | None = Field(
        default=None, min_length=1, description="Models to evaluate; default every one."
    )
    cost_matrix: dict[Literal["tp", "fp", "tn", "fn"], float | list[float]] | ValueMatrixBody = (
        Field(
            description="Binary models: the dollar value of each outcome (negative for a "
            "loss), all four of tp, fp, tn, fn, each a number or one number per instance. "
            "Multiclass models: a value matrix {classes, values}, values[i][j] = value of "
            "deciding class j when the truth is class i (row = truth, column = decision)."
        )
    )
    instances: list[list[float] | dict[str, float]] | None = Field(
        default=None, min_length=1, description="Feature rows scored here by each model."
    )
    scores: (
        list[Annotated[float, Field(ge=0, le=1)]]
        | list[list[Annotated[float, Field(ge=0, le=1)]]]
        | None
    ) = Field(
        default=None,
        min_length=1,
        description="Scores produced elsewhere (no models); multiclass: N x K class "
        "probabilities, each row summing to 1 within 1e-6.",
    )
    labels: list[Literal[0, 1]] | list[str | int] | None = Field(
        default=None,
        description="One label per instance or score: 0/1, or for a value matrix a class "
        "name or index.",
    )
    threshold: float | None = Field(default=None, ge=0, le=1, description="Default: card's.")
    margin: float | None = Field(
        default=None,
        ge=0,
        description="Binary: a score margin in [0, 1] (default: card's). Value matrix: "
        "dollars per instance (default: 5% of the matrix's largest regret).",
    )
    prevalence: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Value the decisions as if positives were this share of the data "
        "(positives weigh prevalence/p, negatives (1-prevalence)/(1-p)); counts and rates "
        "stay those of the data. Default: the data's own prevalence.",
    )
    curve: bool = Field(
        default=False,
        description="Add to each result `curve`: the expected value by threshold on a grid "
        "dense near 0, sampled also at the result's thresholds and the card's.",
    )


class PredictRequest(BaseModel):
    model: str | None = Field(default=None, description="Model name; default from settings.")
    instances: list[list[float] | dict[str, float]] = Field(
        description="Raw feature rows in the card's feature order, or objects keyed by "
        "feature name.",
        min_length=1,
    )
    threshold: float | None = Field(
        default=None, ge=0, le=1, description="Default: card's. Not with a cost matrix."
    )
    margin: float | None = Field(
        default=None,
        ge=0,
        description="Threshold mode: a score margin in [0, 1] (default: card's). Deciding "
        "by expected value (cost_matrix, or a multiclass model): dollars per instance, "
        "close when the best two actions' expected values differ by less.",
    )
    cost_matrix: BinaryCostMatrix | ValueMatrixBody | None = Field(
        default=None,
        description="Decide by expected value: a binary model takes tp/fp/tn/fn (each "
        "instance gets the action with the higher expected value); a multiclass model takes "
        "a value matrix (default: its card's).",
    )


class Prediction(BaseModel):
    score: float
    label: int = Field(description="1 when score >= threshold")
    close_confusion: bool = Field(description="|score - threshold| < margin")


class ValuedPrediction(BaseModel):
    score: float | None = Field(default=None, description="binary: P(class 1)")
    probabilities: dict[str, float] | None = Field(
        default=None, description="multiclass: probability of each class"
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
    predictions: list[ValuedPrediction]


class PredictResponse(BaseModel):
    model: str
    version: str
    threshold: float
    margin: float
    predictions: list[Prediction]


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


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in {
        400: "Malformed body",
        404: "Unknown model",
        406: "Unsatisfiable Accept",
        413: "Body over the size limit",
        415: "Unsupported Content-Type",
        422: "Invalid input (the detail names the row, column or field)",
        503: "No model loaded",
    }.items()
}


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON schema with its ``$defs`` inlined: in an OpenAPI document a
    ``#/$defs/...`` reference would resolve from the document's root, where nothing is."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    return resolve(schema)


def json_request_body(description: str) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {"application/json": {"schema": inline_schema(PredictRequest)}},
        }
    }
