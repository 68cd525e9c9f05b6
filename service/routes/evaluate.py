"""``POST /evaluate`` and ``GET /models/{name}/distribution.png``: the economics, served.

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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from costaware import economics, figures
from costaware.economics import CostMatrix, EconomicsError
from costaware.tabular import data_line_numbers
from service.codecs import (
    CSV,
    JSON,
    decode_csv,
    instances_to_matrix,
    negotiate,
    parse_media_type,
    unit_interval,
)
from service.errors import (
    InvalidInputError,
    MalformedRequestError,
    NotFoundError,
    NotReadyError,
    UnsupportedMediaTypeError,
)
from service.registry import LoadedModel, ModelRegistry, RegistryDep
from service.schemas import EvaluateRequest

router = APIRouter(tags=["economics"])

PNG = "image/png"
BODY_KEYS = (
    "models",
    "cost_matrix",
    "instances",
    "scores",
    "labels",
    "threshold",
    "margin",
    "prevalence",
    "curve",
)
# Without a card (posted scores) these are the defaults, as for a card without its own.
DEFAULT_THRESHOLD = 0.5
DEFAULT_MARGIN = 0.1
NOTES = {
    "held_out": "no data posted: each model is evaluated on the held-out split stored in "
    "its card (data it was not trained on)",
    "instances": "posted instances, scored here by each model",
    "scores": "posted scores produced elsewhere; no model is involved",
    "csv": "posted text/csv instances (label in the first column), scored here by each model",
}
TITLES = {
    "held_out": "held-out split",
    "instances": "posted instances",
    "scores": "posted scores",
    "csv": "posted CSV",
}

Plot = Literal["distribution", "value"]


@dataclass(frozen=True)
class Target:
    """One thing to evaluate: a model's (or nobody's) scores against labels."""

    model: LoadedModel | None
    labels: np.ndarray
    scores: np.ndarray
    threshold: float
    margin: float

    @property
    def name(self) -> str | None:
        return None if self.model is None else self.model.name


@dataclass(frozen=True)
class ValueOptions:
    """How the values are reported: at another prevalence, with the curve by threshold."""

    prevalence: float | None = None
    curve: bool = False


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

    def value_options(self) -> ValueOptions:
        return ValueOptions(prevalence=self.prevalence, curve=bool(self.curve))


def _invalid(exc: EconomicsError) -> InvalidInputError:
    return InvalidInputError(str(exc))


def _select_models(registry: ModelRegistry, names: Any, field: str) -> list[LoadedModel]:
    if names is None:
        if not registry.ready:
            raise NotReadyError(f"no model is loaded from {registry.model_dir}")
        return [registry.models[name] for name in registry.names()]
    if not isinstance(names, list) or not names:
        raise InvalidInputError(f"{field}: expected a non-empty list of model names")
    chosen: list[LoadedModel] = []
    for index, name in enumerate(names):
        where = f"{field}[{index}]"
        if not isinstance(name, str):
            raise InvalidInputError(f"{where}: {json.dumps(name)} is not a model name")
        if any(model.name == name for model in chosen):
            raise InvalidInputError(f"{where}: {name!r} is listed twice")
        try:
            chosen.append(registry.get(name))
        except NotFoundError as exc:
            raise NotFoundError(f"{where}: {exc.detail}") from None
    return chosen


def _option(value: Any, field: str) -> float | None:
    return None if value is None else unit_interval(value, field)


def _flag(value: Any, field: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidInputError(f"{field}: expected true or false, got {json.dumps(value)}")
    return value


def _cost_matrix(raw: Any, field: str) -> CostMatrix:
    try:
        return CostMatrix.from_mapping(raw, prefix=field)
    except EconomicsError as exc:
        raise _invalid(exc) from None


def _check_cost_length(costs: CostMatrix, target: Target) -> None:
    if costs.n is not None and costs.n != len(target.labels):
        whose = f"the held-out split of model {target.name!r}" if target.model else "the data"
        field = next(k for k in economics.OUTCOMES if isinstance(getattr(costs, k), np.ndarray))
        raise InvalidInputError(
            f"cost_matrix.{field}: has {costs.n} per-instance values but {whose} "
            f"has {len(target.labels)} instances"
        )


def _checked_list(
    raw: Any, field: str, expected: str, convert: Callable[[Any], np.ndarray]
) -> np.ndarray:
    if not isinstance(raw, list):
        raise InvalidInputError(f"{field}: expected {expected}")
    try:
        return convert(raw)
    except EconomicsError as exc:
        raise _invalid(exc) from None


def _labels(raw: Any, n: int, what: str) -> np.ndarray:
    if raw is None:
        raise InvalidInputError(f"labels: required with {what}")
    labels = _checked_list(raw, "labels", "a list of 0/1", economics.as_labels)
    if len(labels) != n:
        raise InvalidInputError(f"labels: has {len(labels)} labels but there are {n} {what}")
    return labels


def _score(model: LoadedModel, matrix: np.ndarray) -> np.ndarray:
    # A graph fed float32-range but extreme inputs may still return a NaN; say so plainly.
    scores = np.clip(model.score(matrix), 0.0, 1.0)
    if not np.isfinite(scores).all():
        row = int(np.argmin(np.isfinite(scores)))
        raise InvalidInputError(f"instances[{row}]: model {model.name!r} gives no finite score")
    return scores


def _json_targets(
    payload: dict[str, Any], registry: ModelRegistry
) -> tuple[str, list[Target], CostMatrix, ValueOptions]:
    unknown = sorted(set(payload) - set(BODY_KEYS))
    if unknown:
        raise InvalidInputError(f"{unknown[0]}: unknown field; allowed: {', '.join(BODY_KEYS)}")
    if "cost_matrix" not in payload:
        raise InvalidInputError("cost_matrix: missing (an object with tp, fp, tn and fn)")
    costs = _cost_matrix(payload["cost_matrix"], "cost_matrix")
    threshold = _option(payload.get("threshold"), "threshold")
    margin = _option(payload.get("margin"), "margin")
    options = ValueOptions(
        prevalence=_option(payload.get("prevalence"), "prevalence"),
        curve=_flag(payload.get("curve"), "curve"),
    )
    instances, scores, labels = (payload.get(k) for k in ("instances", "scores", "labels"))
    if instances is not None and scores is not None:
        raise InvalidInputError("scores: send either instances or scores, not both")
    if scores is not None:
        if payload.get("models") is not None:
            raise InvalidInputError(
                "models: posted scores were produced elsewhere; leave models out "
                "or post instances instead"
            )
        values = _checked_list(
            scores, "scores", "a list of probabilities in [0, 1]", economics.as_scores
        )
        target = Target(
            model=None,
            labels=_labels(labels, len(values), "scores"),
            scores=values,
            threshold=DEFAULT_THRESHOLD if threshold is None else threshold,
            margin=DEFAULT_MARGIN if margin is None else margin,
        )
        return "scores", [target], costs, options
    models = _select_models(registry, payload.get("models"), "models")
    if instances is None:
        if labels is not None:
            raise InvalidInputError("labels: given without instances or scores to go with them")
        return "held_out", _held_out_targets(models, threshold, margin), costs, options
    if not isinstance(instances, list) or not instances:
        raise InvalidInputError("instances: expected a non-empty list of instances")
    y = _labels(labels, len(instances), "instances")
    matrices: dict[tuple[str, ...], np.ndarray] = {}
    targets = []
    for model in models:
        features = tuple(model.card.features)
        if features not in matrices:
            matrices[features] = instances_to_matrix(instances, features, "instances")
        targets.append(_target(model, y, _score(model, matrices[features]), threshold, margin))
    return "instances", targets, costs, options


def _target(
    model: LoadedModel,
    labels: np.ndarray,
    scores: np.ndarray,
    threshold: float | None,
    margin: float | None,
) -> Target:
    return Target(
        model=model,
        labels=labels,
        scores=scores,
        threshold=model.card.threshold if threshold is None else threshold,
        margin=model.card.margin if margin is None else margin,
    )


def _held_out_targets(
    models: list[LoadedModel], threshold: float | None, margin: float | None
) -> list[Target]:
    return [
        _target(
            model,
            np.asarray(model.card.held_out.labels, dtype=np.int8),
            np.asarray(model.card.held_out.scores, dtype=np.float64),
            threshold,
            margin,
        )
        for model in models
    ]


def _query_costs(query: EvaluateOptions) -> CostMatrix:
    missing = [key for key, value in query.costs.items() if value is None]
    if len(missing) == len(query.costs):
        raise InvalidInputError(
            "cost_matrix: missing; with a text/csv or empty body pass tp, fp, tn and fn "
            "as query parameters"
        )
    return _cost_matrix(query.costs, "query")


def _csv_targets(
    body: bytes, query: EvaluateOptions, registry: ModelRegistry
) -> tuple[str, list[Target], CostMatrix, ValueOptions]:
    costs = _query_costs(query)
    models = _select_models(registry, query.models, "query.models")
    parsed: dict[tuple[str, ...], tuple[np.ndarray, np.ndarray]] = {}
    targets = []
    for model in models:
        features = tuple(model.card.features)
        if features not in parsed:
            matrix = decode_csv(body, ["label", *features])
            labels = matrix[:, 0]
            bad = (labels != 0) & (labels != 1)
            if bad.any():
                row = _csv_row_number(body, int(np.argmax(bad)))
                raise InvalidInputError(
                    f"body, row {row}, column 1 (label): {labels[bad][0]:g} is not 0 or 1"
                )
            parsed[features] = (labels.astype(np.int8), matrix[:, 1:])
        labels, x = parsed[features]
        targets.append(_target(model, labels, _score(model, x), query.threshold, query.margin))
    return "csv", targets, costs, query.value_options()


def _csv_row_number(body: bytes, index: int) -> int:
    """The 1-based line of data row ``index`` (blank lines are skipped by the parser)."""
    return data_line_numbers(body.decode("utf-8"))[index]


def _decode(
    body: bytes, content_type: str | None, query: EvaluateOptions, registry: ModelRegistry
) -> tuple[str, list[Target], CostMatrix, ValueOptions]:
    media, _ = parse_media_type(content_type)
    if media == CSV:
        return _csv_targets(body, query, registry)
    if not body.strip():
        # No body at all: the options travel in the query string, the data is held out.
        costs = _query_costs(query)
        models = _select_models(registry, query.models, "query.models")
        targets = _held_out_targets(models, query.threshold, query.margin)
        return "held_out", targets, costs, query.value_options()
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
    return _json_targets(payload, registry)


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


def _entry(target: Target, costs: CostMatrix, options: ValueOptions) -> dict[str, Any]:
    # The card's threshold is marked on the curve even when the request chose another.
    marks = [] if target.model is None else [target.model.card.threshold]
    try:
        result = economics.evaluate(
            target.labels,
            target.scores,
            costs,
            target.threshold,
            target.margin,
            prevalence=options.prevalence,
            curve=options.curve,
            curve_marks=marks,
        )
    except EconomicsError as exc:
        raise _invalid(exc) from None
    result.pop("warnings")
    head: dict[str, Any] = {"model": target.name}
    if target.model is not None:
        head["version"] = target.model.card.version
    return head | result


def _summary(source: str, entries: list[dict[str, Any]], costs: CostMatrix) -> dict[str, Any]:
    ranking = sorted(entries, key=lambda entry: -entry["expected_value"])
    best = max(entries, key=lambda entry: entry["best_threshold"]["expected_value"])
    return {
        "data": source,
        "note": NOTES[source],
        "cost_matrix": costs.to_dict() if not costs.per_instance else "per_instance",
        "warnings": costs.warnings(),
        "results": entries,
        "ranking": [
            {
                "rank": rank,
                "model": entry["model"],
                "threshold": entry["threshold"],
                "expected_value": entry["expected_value"],
                "total_value": entry["total_value"],
                "per_1000_decisions": entry["per_1000_decisions"],
            }
            for rank, entry in enumerate(ranking, start=1)
        ],
        "best_model": ranking[0]["model"],
        "best_decision": {
            "model": best["model"],
            **best["best_threshold"],
        },
    }


def _figure(
    target: Target, costs: CostMatrix, plot: Plot, source: str, options: ValueOptions
) -> bytes:
    title = f"{target.name or 'posted scores'}: {TITLES[source]}"
    if plot == "distribution":
        return figures.distribution_png(
            target.labels, target.scores, target.threshold, target.margin, title=title
        )
    try:
        sweep = economics.threshold_sweep(
            target.labels, target.scores, costs, prevalence=options.prevalence
        )
        best = economics.best_threshold(target.labels, target.scores, costs, options.prevalence)
    except EconomicsError as exc:
        raise _invalid(exc) from None
    elkan = None if costs.per_instance else economics.elkan_threshold(costs)
    return figures.value_curve_png(
        sweep,
        None if elkan is None else elkan.value,
        best.threshold,
        title=f"Expected value by threshold: {title}",
        best_value=best.expected_value,
    )


def _respond(
    body: bytes,
    content_type: str | None,
    accept: str | None,
    query: EvaluateOptions,
    registry: ModelRegistry,
) -> Response:
    offered = (PNG, JSON) if query.plot else (JSON, PNG)
    media = negotiate(accept, offered)
    source, targets, costs, options = _decode(body, content_type, query, registry)
    for target in targets:
        _check_cost_length(costs, target)
    if media == PNG:
        if len(targets) != 1:
            raise InvalidInputError(
                f"models: a figure shows one model, this request has {len(targets)} "
                f"({', '.join(str(t.name) for t in targets)}); name one"
            )
        image = _figure(targets[0], costs, query.plot or "distribution", source, options)
        return Response(image, media_type=PNG)
    entries = [_entry(target, costs, options) for target in targets]
    summary = _summary(source, entries, costs)
    return Response(json.dumps(summary, allow_nan=False).encode(), media_type=JSON)


def _split_names(models: list[str] | None) -> list[str] | None:
    if models is None:
        return None
    return [name.strip() for item in models for name in item.split(",") if name.strip()]


EVALUATE_DOC = """Evaluate models (or posted scores) under a cost matrix of outcome values.

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
    registry: RegistryDep,
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
        registry,
    )


@router.get(
    "/models/{name}/distribution.png",
    summary="Close-confusion figure for a model's held-out split",
    response_class=Response,
    responses={200: {"content": {PNG: {}}}},
)
async def distribution(
    name: str,
    registry: RegistryDep,
    threshold: Annotated[float | None, Query(description="default: the card's")] = None,
    margin: Annotated[float | None, Query(description="default: the card's")] = None,
) -> Response:
    model = registry.get(name)
    (target,) = _held_out_targets(
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
