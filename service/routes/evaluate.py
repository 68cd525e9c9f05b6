"""``POST /evaluate``, ``GET /models/{name}/distribution.png`` and
``GET /models/{name}/calibration.png``: the economics, served.

The caller states a cost matrix (dollar value of each outcome) and gets, per model, what
its decisions are worth, Elkan's threshold, the in-sample best threshold and the models
ranked. Data comes from the body (``instances`` scored here, or ``scores`` produced
elsewhere, with ``labels``), from a ``text/csv`` body (label first, as SageMaker training
data), or, with neither, from the held-out split stored in each model card.

The numbers come from :mod:`costaware.economics`; this module only decodes, picks the
data and encodes. The work runs in the thread pool so a 200,000-score body does not
block the event loop.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Query, Request
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from costaware import figures
from costaware.economics import CostMatrix, EconomicsError
from costaware.multiclass import ValueMatrix
from costaware.tabular import data_line_numbers
from service.codecs import (
    CSV,
    JSON,
    decode_csv,
    margin_value,
    negotiate,
    parse_media_type,
    unit_interval,
)
from service.dataplane import (
    DataPlane,
    EvaluateInputs,
    Evaluation,
    MulticlassEvaluateInputs,
    Plot,
    held_out_targets,
)
from service.errors import (
    ConflictError,
    InvalidInputError,
    MalformedRequestError,
    UnsupportedMediaTypeError,
)
from service.routes.common import DataPlaneDep
from service.schemas import EvaluateRequest, translate_validation_error

router = APIRouter(tags=["economics"])

PNG = "image/png"


@dataclass(frozen=True)
class EvaluateOptions:
    """The query-string options: the plot, and the body's fields for CSV or empty bodies."""

    plot: Plot | None
    models: list[str] | None
    costs: dict[str, float | None]
    threshold: float | None
    margin: float | None
    prevalence: float | None = None
    curve: bool | None = None

    def body_fields_given(self) -> list[str]:
        given = [key for key, value in self.costs.items() if value is not None]
        given += [
            key
            for key in ("models", "threshold", "margin", "prevalence", "curve")
            if getattr(self, key) is not None
        ]
        return given


def _option(value: Any, field: str) -> float | None:
    return None if value is None else unit_interval(value, field)


def _cost_matrix(raw: Any, field: str) -> CostMatrix:
    try:
        return CostMatrix.from_mapping(raw, prefix=field)
    except EconomicsError as exc:
        raise InvalidInputError(str(exc)) from None


def is_value_matrix(raw: Any) -> bool:
    """A multiclass value matrix ``{"classes", "values"}`` rather than tp/fp/tn/fn."""
    return isinstance(raw, dict) and bool({"classes", "values"} & set(raw))


def _multiclass_inputs(payload: dict[str, Any]) -> MulticlassEvaluateInputs:
    try:
        matrix = ValueMatrix.from_mapping(payload["cost_matrix"])
    except EconomicsError as exc:
        raise InvalidInputError(str(exc)) from None
    margin = payload.get("margin")
    return MulticlassEvaluateInputs(
        matrix=matrix,
        models=payload.get("models"),
        instances=payload.get("instances"),
        scores=payload.get("scores"),
        labels=payload.get("labels"),
        threshold=_option(payload.get("threshold"), "threshold"),
        margin=None if margin is None else margin_value(margin, "margin"),
    )


def _json_inputs(payload: dict[str, Any]) -> EvaluateInputs | MulticlassEvaluateInputs:
    try:
        request = EvaluateRequest.model_validate(payload)
    except ValidationError as exc:
        field, message = translate_validation_error(
            exc,
            "",
            list(EvaluateRequest.model_fields),
            {
                "cost_matrix": "missing (an object with tp, fp, tn and fn, or for multiclass "
                "models classes and values)"
            },
        )
        raise InvalidInputError(f"{field}: {message}") from None
    if is_value_matrix(payload["cost_matrix"]):
        # Both are binary options; refused rather than ignored, so that nobody reads an
        # unweighted evaluation as a reweighted one.
        if request.prevalence is not None:
            raise InvalidInputError(
                "prevalence: reweighting to a prevalence is for binary models (tp, fp, tn, "
                "fn); a value matrix values the decisions on the data as posted"
            )
        if request.curve:
            raise InvalidInputError(
                "curve: the expected value by threshold is for binary models; multiclass "
                "decisions take no threshold"
            )
        return _multiclass_inputs(payload)
    return EvaluateInputs(
        cost_matrix=_cost_matrix(request.cost_matrix, "cost_matrix"),
        threshold=request.threshold,
        margin=request.margin,
        models=request.models,
        instances=request.instances,
        scores=request.scores,
        labels=request.labels,
        prevalence=request.prevalence,
        curve=bool(request.curve),
    )


def _query_costs(query: EvaluateOptions) -> CostMatrix:
    missing = [key for key, value in query.costs.items() if value is None]
    if len(missing) == len(query.costs):
        raise InvalidInputError(
            "cost_matrix: missing; with a text/csv or empty body pass tp, fp, tn and fn "
            "as query parameters"
        )
    return _cost_matrix(query.costs, "query")


def _csv_inputs(body: bytes, query: EvaluateOptions, dataplane: DataPlane) -> EvaluateInputs:
    costs = _query_costs(query)
    models = dataplane.binary_models(query.models, "query.models")
    # The rows are decoded once, against the first model's features (the names only
    # matter in error messages); the data plane checks the width for each model.
    matrix = decode_csv(body, ["label", *models[0].card.features])
    labels = matrix[:, 0]
    bad = (labels != 0) & (labels != 1)
    if bad.any():
        row = _csv_row_number(body, int(np.argmax(bad)))
        raise InvalidInputError(
            f"body, row {row}, column 1 (label): {labels[bad][0]:g} is not 0 or 1"
        )
    return EvaluateInputs(
        cost_matrix=costs,
        models=[model.name for model in models],
        instances=matrix[:, 1:],
        labels=labels.astype(np.int8),
        threshold=query.threshold,
        margin=query.margin,
        prevalence=query.prevalence,
        curve=bool(query.curve),
        models_field="query.models",
        instances_source="csv",
        row_name=lambda index: f"body, row {_csv_row_number(body, index)}",
    )


def _csv_row_number(body: bytes, index: int) -> int:
    """The 1-based line of data row ``index`` (blank lines are skipped by the parser)."""
    return data_line_numbers(body.decode("utf-8"))[index]


def _decode(
    body: bytes, content_type: str | None, query: EvaluateOptions, dataplane: DataPlane
) -> EvaluateInputs | MulticlassEvaluateInputs:
    media, _ = parse_media_type(content_type)
    if media == CSV:
        return _csv_inputs(body, query, dataplane)
    if not body.strip():
        # No body at all: the options travel in the query string, the data is held out.
        return EvaluateInputs(
            cost_matrix=_query_costs(query),
            models=query.models,
            threshold=query.threshold,
            margin=query.margin,
            prevalence=query.prevalence,
            curve=bool(query.curve),
            models_field="query.models",
        )
    if media not in (JSON, ""):
        raise UnsupportedMediaTypeError(
            f"Content-Type {content_type!r} is not supported by /evaluate; send {JSON} or {CSV}"
        )
    given = query.body_fields_given()
    if given:
        raise InvalidInputError(
            f"query.{given[0]}: with a JSON body, put the options in the body "
            "(query parameters other than plot are for text/csv or empty bodies)"
        )
    payload = _load_json(body)
    if not isinstance(payload, dict):
        raise InvalidInputError("body: expected a JSON object with a cost_matrix")
    return _json_inputs(payload)


def _load_json(body: bytes) -> Any:
    # NaN and Infinity are parsed rather than refused here, so that the economics checks
    # can name the field that holds them (``cost_matrix.tp``, ``scores[3]``).
    try:
        return json.loads(body, parse_constant=float)
    except UnicodeDecodeError as exc:
        raise MalformedRequestError(f"body: not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise MalformedRequestError(
            f"body: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except RecursionError:
        raise MalformedRequestError("body: JSON nested too deeply") from None


def _respond(
    body: bytes,
    content_type: str | None,
    accept: str | None,
    query: EvaluateOptions,
    dataplane: DataPlane,
) -> Response:
    offered = (PNG, JSON) if query.plot else (JSON, PNG)
    media = negotiate(accept, offered)
    inputs = _decode(body, content_type, query, dataplane)
    if isinstance(inputs, MulticlassEvaluateInputs):
        if media == PNG:
            raise InvalidInputError(
                "Accept: image/png: figures are drawn for binary models; ask for "
                f"{JSON} with a multiclass value matrix"
            )
        summary = dataplane.evaluate_multiclass(inputs).summary()
        return Response(json.dumps(summary, allow_nan=False).encode(), media_type=JSON)
    evaluation: Evaluation = dataplane.evaluate(inputs)
    if media == PNG:
        return Response(evaluation.figure(query.plot or "distribution"), media_type=PNG)
    summary = evaluation.summary()
    return Response(json.dumps(summary, allow_nan=False).encode(), media_type=JSON)


def _split_names(models: list[str] | None) -> list[str] | None:
    if models is None:
        return None
    return [name.strip() for item in models for name in item.split(",") if name.strip()]


EVALUATE_DOC = """Evaluate models (or posted scores) under a cost matrix of outcome values.

Multiclass models: `cost_matrix` is a value matrix `{"classes": [...], "values": [[...]]}`
with `values[i][j]` = the value of deciding class j when the truth is class i (row =
truth, column = decision); `scores` are N x K class probabilities (each row summing to 1
within 1e-6) and `labels` class names or indices; `margin` is in dollars per instance; no
threshold. The answer per model: expected and total value of the minimum-expected-cost
decisions, the K x K confusion matrix (rows = truth), per-class rates, the value of
deciding the most probable class (`argmax_probability`) and of always deciding each class
(`always`), and the ranking.

JSON body: `{"models": [...], "cost_matrix": {"tp": .., "fp": .., "tn": .., "fn": ..},
"instances": [...], "labels": [...], "threshold": 0.5, "margin": 0.1}`; or `scores` with
`labels` instead of `instances`; or neither, for each card's held-out split. Each cost
entry may be a list with one value per instance. A `text/csv` body (label first, features
after) or an empty body takes the cost matrix and options from the query string.
`Accept: image/png` with one model returns the close-confusion figure, or with
`plot=value` the expected value by threshold. `prevalence` values the decisions at another
share of positives; `curve: true` adds each model's expected value by threshold."""


@router.post(
    "/evaluate",
    summary="Economic evaluation of models under a cost matrix",
    description=EVALUATE_DOC,
    responses={200: {"content": {JSON: {}, PNG: {}}}},
    openapi_extra={
        "requestBody": {
            "required": False,
            "content": {
                JSON: {"schema": EvaluateRequest.model_json_schema()},
                CSV: {"schema": {"type": "string", "description": "label first, then features"}},
            },
        }
    },
)
async def evaluate(
    request: Request,
    dataplane: DataPlaneDep,
    plot: Annotated[Plot | None, Query(description="figure to draw (Accept: image/png)")] = None,
    models: Annotated[list[str] | None, Query(description="CSV/empty body: models")] = None,
    tp: Annotated[float | None, Query(description="CSV/empty body: value of a TP")] = None,
    fp: Annotated[float | None, Query(description="CSV/empty body: value of a FP")] = None,
    tn: Annotated[float | None, Query(description="CSV/empty body: value of a TN")] = None,
    fn: Annotated[float | None, Query(description="CSV/empty body: value of a FN")] = None,
    threshold: Annotated[float | None, Query(description="CSV/empty body: threshold")] = None,
    margin: Annotated[float | None, Query(description="CSV/empty body: margin")] = None,
    prevalence: Annotated[
        float | None,
        Query(description="CSV/empty body: value the decisions at this share of positives"),
    ] = None,
    curve: Annotated[
        bool | None,
        Query(description="CSV/empty body: add each model's expected value by threshold"),
    ] = None,
) -> Response:
    query = EvaluateOptions(
        plot=plot,
        models=_split_names(models),
        costs={"tp": tp, "fp": fp, "tn": tn, "fn": fn},
        threshold=_option(threshold, "query.threshold"),
        margin=_option(margin, "query.margin"),
        prevalence=_option(prevalence, "query.prevalence"),
        curve=curve,
    )
    body = await request.body()
    return await run_in_threadpool(
        _respond,
        body,
        request.headers.get("content-type"),
        request.headers.get("accept"),
        query,
        dataplane,
    )


@router.get(
    "/models/{name}/distribution.png",
    summary="Close-confusion figure for a model's held-out split",
    response_class=Response,
    responses={200: {"content": {PNG: {}}}},
)
async def distribution(
    name: str,
    dataplane: DataPlaneDep,
    threshold: Annotated[float | None, Query(description="default: the card's")] = None,
    margin: Annotated[float | None, Query(description="default: the card's")] = None,
) -> Response:
    model = dataplane.model(name)
    if model.multiclass:
        raise InvalidInputError(
            f"name: model {name!r} is multiclass; the close-confusion figure shows a binary "
            "model's scores (POST /evaluate with its value matrix for the figures in JSON)"
        )
    (target,) = held_out_targets(
        [model], _option(threshold, "threshold"), _option(margin, "margin")
    )
    image = await run_in_threadpool(
        figures.distribution_png,
        target.labels,
        target.scores,
        target.threshold,
        target.margin,
        f"{model.name} {model.card.version}: held-out split",
    )
    return Response(image, media_type=PNG)


@router.get(
    "/models/{name}/calibration.png",
    summary="Reliability diagram of a calibrated model's held-out split, before and after",
    response_class=Response,
    responses={200: {"content": {PNG: {}}}},
)
async def calibration(name: str, dataplane: DataPlaneDep) -> Response:
    """Observed rate against mean probability per equal-mass bin (with the bin counts), for
    the raw score (before) and the calibrated probability (after), from the card's
    ``calibration`` section; 409 for a model without a calibration map."""
    model = dataplane.model(name)
    calibration = model.card.calibration
    if calibration is None:
        raise ConflictError(
            f"name: model {name!r} has no calibration map (its card has no calibration "
            "section), so there is no reliability diagram to draw; its answers say "
            '"calibrated": false'
        )
    title = f"{model.name} {model.card.version}"
    image = await run_in_threadpool(
        lambda: figures.to_png(figures.calibration_figure(calibration, title))
    )
    return Response(image, media_type=PNG)
