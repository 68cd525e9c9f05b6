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
from starlette.responses import Response

from costaware import figures
from costaware.core import ValueMatrix
from costaware.economics import CostMatrix, EconomicsError
from costaware.tabular import data_line_numbers
from service.codecs import (
    CSV,
    JSON,
    body_text,
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
from service.routes.common import DataPlaneDep, in_threadpool
from service.schemas import EvaluateRequest, translate_validation_error

router = APIRouter(tags=["economics"])

PNG = "image/png"


@dataclass(frozen=True)
class EvaluateOptions:
    """The query-string options: the plot, and the body's fields (for a CSV or empty body;
    beside a JSON body they override the body's)."""

    plot: Plot | None
    models: list[str] | None
    costs: dict[str, float | None]
    threshold: float | None
    margin: float | None
    prevalence: float | None = None
    curve: bool | None = None
    value_matrix: str | None = None  # JSON text, as the JSON body's cost_matrix


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


MATRIX_FIELD = "query.value_matrix"


def _query_value_matrix(query: EvaluateOptions) -> ValueMatrix:
    """``value_matrix`` from the query string: the JSON body's ``cost_matrix`` object, as
    JSON text; errors name ``query.value_matrix`` and the cell. The binary options do not
    go with it (the margin is in dollars for a value matrix: post it in a JSON body)."""
    binary = [key for key in ("tp", "fp", "tn", "fn") if query.costs[key] is not None]
    binary += [
        key
        for key in ("threshold", "margin", "prevalence", "curve")
        if getattr(query, key) is not None
    ]
    if binary:
        raise InvalidInputError(
            f"query.{binary[0]}: not with query.value_matrix (a multiclass value matrix takes "
            "no tp, fp, tn, fn, threshold, prevalence or curve; a margin, in dollars, goes in "
            "a JSON body)"
        )
    try:
        parsed = json.loads(query.value_matrix or "", parse_constant=float)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(
            f"query.value_matrix: not JSON (column {exc.colno}: {exc.msg}); expected "
            '{"classes": [...], "values": [[...], ...]}'
        ) from None
    except RecursionError:
        raise InvalidInputError("query.value_matrix: JSON nested too deeply") from None
    try:
        return ValueMatrix.from_mapping(parsed, prefix=MATRIX_FIELD)
    except EconomicsError as exc:
        raise InvalidInputError(str(exc)) from None


def _not_a_class(row: int, cell: str, classes: tuple[str, ...]) -> InvalidInputError:
    return InvalidInputError(
        f"body, row {row}, column 1 (label): {cell} is not a class name "
        f"({', '.join(classes)}) nor a class index 0..{len(classes) - 1}"
    )


def _class_labels_to_indices(body: bytes, classes: tuple[str, ...]) -> bytes:
    """A labelled CSV body with each first cell that is a class name replaced by the
    class's index, so that the numeric parser reads the rows (a label is a class name or
    an index 0..K-1; a name that looks like a number is a name)."""
    names = {name.encode(): str(index).encode() for index, name in enumerate(classes)}
    lines = body.split(b"\n")
    for number, line in enumerate(lines):
        cell, comma, rest = line.partition(b",")
        label = cell.strip()
        index = names.get(label)
        if index is not None:
            lines[number] = index + comma + rest
        elif label and not _is_number(label):
            shown = repr(label.decode("utf-8", "replace"))
            raise _not_a_class(number + 1, shown, classes)
    return b"\n".join(lines)


def _is_number(cell: bytes) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _multiclass_query_inputs(
    body: bytes | None, query: EvaluateOptions, dataplane: DataPlane
) -> MulticlassEvaluateInputs:
    """A text/csv body (label first: a class name or index) or no body (each card's
    held-out split), valued under ``query.value_matrix``."""
    matrix = _query_value_matrix(query)
    if body is None:
        return MulticlassEvaluateInputs(
            matrix=matrix,
            models=query.models,
            models_field="query.models",
            matrix_field=MATRIX_FIELD,
        )
    models = dataplane.multiclass_models(query.models, matrix, "query.models", MATRIX_FIELD)
    rows = decode_csv(
        _class_labels_to_indices(body, matrix.classes), ["label", *models[0].card.features]
    )
    labels = rows[:, 0]
    bad = (labels != np.round(labels)) | (labels < 0) | (labels >= matrix.k)
    if bad.any():
        row = _csv_row_number(body, int(np.argmax(bad)))
        raise _not_a_class(row, f"{labels[bad][0]:g}", matrix.classes)
    return MulticlassEvaluateInputs(
        matrix=matrix,
        models=[model.name for model in models],
        instances=rows[:, 1:],
        labels=labels.astype(np.int64).tolist(),
        models_field="query.models",
        matrix_field=MATRIX_FIELD,
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
    if query.value_matrix is not None and (media == CSV or not body.strip()):
        return _multiclass_query_inputs(body if media == CSV else None, query, dataplane)
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
    payload = _load_json(body)
    if not isinstance(payload, dict):
        raise InvalidInputError("body: expected a JSON object with a cost_matrix")
    return _json_inputs(_with_query_options(payload, query))


def _with_query_options(payload: dict[str, Any], query: EvaluateOptions) -> dict[str, Any]:
    """Query options beside a JSON body override the body's fields of the same name, as
    the SageMaker headers override a /invocations body; tp, fp, tn and fn override those
    entries of the body's binary cost matrix (a value matrix has none: refused), and
    ``value_matrix`` the body's cost_matrix (checked as beside a CSV body)."""
    merged = dict(payload)
    if query.value_matrix is not None:
        merged["cost_matrix"] = _query_value_matrix(query).to_dict()
    for key in ("models", "threshold", "margin", "prevalence", "curve"):
        value = getattr(query, key)
        if value is not None:
            merged[key] = value
    costs = {key: value for key, value in query.costs.items() if value is not None}
    if costs:
        matrix = payload.get("cost_matrix")
        if is_value_matrix(matrix):
            raise InvalidInputError(
                f"query.{next(iter(costs))}: tp, fp, tn and fn are a binary cost matrix's "
                "entries; the body's cost_matrix is a value matrix (classes, values)"
            )
        merged["cost_matrix"] = {**(matrix if isinstance(matrix, dict) else {}), **costs}
    return merged


def _load_json(body: bytes) -> Any:
    # NaN and Infinity are parsed rather than refused here, so that the economics checks
    # can name the field that holds them (``cost_matrix.tp``, ``scores[3]``).
    text = body_text(body, "body")  # the one rule for a body's text (UTF-8, BOM)
    try:
        return json.loads(text, parse_constant=float)
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
after) or an empty body takes the cost matrix and options from the query string: tp, fp,
tn and fn for binary models, or for multiclass models `value_matrix`, the JSON body's
value matrix as JSON text (`{"classes": [...], "values": [[...], ...]}`, URL-encoded),
with `models` and no other option; a CSV label is then a class name or index. Beside a
JSON body, a query option overrides the body's field of the same name (tp, fp, tn and fn
the entries of its binary cost matrix, `value_matrix` its cost_matrix), as the SageMaker
headers override an /invocations body.
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
    models: Annotated[list[str] | None, Query(description="models")] = None,
    tp: Annotated[float | None, Query(description="value of a TP")] = None,
    fp: Annotated[float | None, Query(description="value of a FP")] = None,
    tn: Annotated[float | None, Query(description="value of a TN")] = None,
    fn: Annotated[float | None, Query(description="value of a FN")] = None,
    threshold: Annotated[float | None, Query(description="threshold")] = None,
    margin: Annotated[float | None, Query(description="margin")] = None,
    prevalence: Annotated[
        float | None,
        Query(description="value the decisions at this share of positives"),
    ] = None,
    curve: Annotated[
        bool | None,
        Query(description="add each model's expected value by threshold"),
    ] = None,
    value_matrix: Annotated[
        str | None,
        Query(
            description="CSV/empty body, multiclass models: the value matrix as JSON, "
            '{"classes": [...], "values": [[...], ...]} (row = truth, column = decision)'
        ),
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
        value_matrix=value_matrix,
    )
    body = await request.body()
    return await in_threadpool(
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
    image = await in_threadpool(
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
    image = await in_threadpool(lambda: figures.calibration_png(calibration, title))
    return Response(image, media_type=PNG)
