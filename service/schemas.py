"""Pydantic shapes of the JSON the service speaks, for the OpenAPI document.

Request bodies are decoded by :mod:`service.codecs` (errors must name rows and columns,
and CSV shares the path), so these models document the wire format rather than parse it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field


class EvaluateRequest(BaseModel):
    """The JSON body of ``POST /evaluate`` (``service.routes.evaluate`` decodes it)."""

    models: list[str] | None = Field(
        default=None, min_length=1, description="Models to evaluate; default every one."
    )
    cost_matrix: dict[Literal["tp", "fp", "tn", "fn"], float | list[float]] = Field(
        description="Dollar value of each outcome (negative for a loss): all four of tp, "
        "fp, tn, fn; each a number or one number per instance."
    )
    instances: list[list[float] | dict[str, float]] | None = Field(
        default=None, min_length=1, description="Feature rows scored here by each model."
    )
    scores: list[Annotated[float, Field(ge=0, le=1)]] | None = Field(
        default=None, min_length=1, description="Scores produced elsewhere (no models)."
    )
    labels: list[Literal[0, 1]] | None = Field(
        default=None, description="One 0/1 label per instance or score."
    )
    threshold: float | None = Field(default=None, ge=0, le=1, description="Default: card's.")
    margin: float | None = Field(default=None, ge=0, le=1, description="Default: card's.")
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
    threshold: float | None = Field(default=None, ge=0, le=1, description="Default: card's.")
    margin: float | None = Field(default=None, ge=0, le=1, description="Default: card's.")


class Prediction(BaseModel):
    score: float
    label: int = Field(description="1 when score >= threshold")
    close_confusion: bool = Field(description="|score - threshold| < margin")


class PredictResponse(BaseModel):
    model: str
    version: str
    threshold: float
    margin: float
    predictions: list[Prediction]


class ErrorBody(BaseModel):
    error: str = Field(description="The kind of error, e.g. invalid_input, not_found.")
    detail: str = Field(description="What was wrong and where (row, column, field).")


class ModelSummary(BaseModel):
    name: str
    version: str
    loss: dict[str, Any]
    threshold: float
    margin: float
    features: list[str]


class ModelList(BaseModel):
    default: str
    models: list[ModelSummary]


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


def json_request_body(description: str) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {"application/json": {"schema": PredictRequest.model_json_schema()}},
        }
    }
