"""``POST /outcomes`` and ``GET /models/{name}/value``: outcomes joined to the decision
log by prediction id, and what the decisions earned against what was expected.

Both read and write the store in the thread pool (a 100,000-outcome body, a report over
a million decisions never block the event loop). With the log off they answer 503.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from pydantic import ValidationError
from starlette.responses import Response

from service.codecs import CSV, JSON, body_text, parse_media_type
from service.codecs import _load_json as load_json
from service.decisionlog.outcomes import BINARY_CLASSES, Posted, parse_csv, store_outcomes
from service.decisionlog.report import value_report
from service.decisionlog.store import DecisionStore
from service.errors import (
    InvalidInputError,
    NotFoundError,
    NotReadyError,
    UnsupportedMediaTypeError,
)
from service.routes.common import in_threadpool
from service.schemas import (
    ERROR_RESPONSES,
    OutcomesRequest,
    OutcomesResponse,
    ValueReport,
    translate_validation_error,
)

router = APIRouter(tags=["realized value"])


def _store(request: Request) -> DecisionStore:
    log = request.app.state.decision_log
    if log is None:
        if request.app.state.registry is None:
            raise NotReadyError("the service is starting")
        raise NotReadyError("the decision log is off (COSTAWARE_DECISION_LOG=off)")
    return log.store


def decode_outcomes(body: bytes, content_type: str | None) -> tuple[list[Posted], bool]:
    media, _ = parse_media_type(content_type)
    if media == CSV:
        return parse_csv(body_text(body, "body")), False
    if media not in ("", JSON):
        raise UnsupportedMediaTypeError(
            f"Content-Type {content_type!r}: /outcomes takes {JSON} or {CSV}"
        )
    payload = load_json(body, "body")
    try:
        request = OutcomesRequest.model_validate(payload)
    except ValidationError as exc:
        field, message = translate_validation_error(
            exc, "body.", sorted(OutcomesRequest.model_fields), {"outcomes": "field required"}
        )
        raise InvalidInputError(f"{field}: {message}") from None
    posted = [
        Posted(item.id, item.label, f"body.outcomes[{i}]")
        for i, item in enumerate(request.outcomes)
    ]
    return posted, request.replace


def _classes_of(request: Request) -> Any:
    registry = request.app.state.registry

    def classes(model: str, k: int) -> Sequence[str]:
        loaded = registry.models.get(model) if registry is not None else None
        if loaded is not None and loaded.multiclass and len(loaded.card.classes) == k:
            return tuple(loaded.card.classes)
        return BINARY_CLASSES if k == 2 else tuple(str(i) for i in range(k))

    return classes


@router.post(
    "/outcomes",
    responses={200: {"model": OutcomesResponse}, **ERROR_RESPONSES},
)
async def outcomes(request: Request) -> Response:
    """Post the true labels of served predictions by id: JSON ``{"outcomes": [{"id",
    "label"}, ...], "replace": false}`` or ``text/csv`` rows ``id,label``; at most 100,000.
    The same pair again changes nothing; a different label for an id that has one is a 409
    naming the id unless ``replace`` is true; unknown ids are listed, never stored."""
    store = _store(request)
    body = await request.body()
    classes = _classes_of(request)

    def run() -> dict[str, Any]:
        posted, replace = decode_outcomes(body, request.headers.get("content-type"))
        return store_outcomes(store, posted, replace, classes)

    return Response(orjson.dumps(await in_threadpool(run)), media_type=JSON)


@router.get(
    "/models/{name}/value",
    responses={200: {"model": ValueReport}, **ERROR_RESPONSES},
)
async def value(
    request: Request,
    name: str,
    from_: Annotated[str | None, Query(alias="from", description="ISO 8601 time")] = None,
    to: Annotated[str | None, Query(description="ISO 8601 time; default now")] = None,
    window: Annotated[str | None, Query(description="ISO 8601 duration, e.g. PT1H")] = None,
) -> Response:
    """Per window and version: decisions, decisions with an outcome, realized value, the
    expected value stated for those same decisions, the gap and its standard error, the
    estimated value of the decisions still without an outcome, and the alert."""
    store = _store(request)
    registry = request.app.state.registry
    metrics = request.app.state.metrics

    def run() -> dict[str, Any]:
        report = value_report(store, name, from_, to, window)
        if not report["windows"] and name not in registry.models:
            raise NotFoundError(f"model {name!r}: not loaded and nothing logged in from..to")
        if report["windows"]:
            last = report["windows"][-1]["versions"]
            metrics.realized_value.labels(name).set(sum(v["realized_value"] for v in last))
            metrics.expected_value.labels(name).set(sum(v["expected_value"] for v in last))
        return report

    return Response(orjson.dumps(await in_threadpool(run)), media_type=JSON)
