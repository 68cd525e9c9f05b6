"""What several routes share: dependencies for settings and metrics, and the one way a
prediction request is run and answered."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from service.batching import BatchScorer
from service.codecs import Predictions
from service.inference import Overrides, answer, decode_request
from service.metrics import Metrics
from service.registry import ModelRegistry, registry_of
from service.settings import Settings

# Below this size decoding and scoring take less time than a hop to the thread pool; above
# it they run there, so a multi-MB CSV does not stall /ping on the event loop.
INLINE_BODY_BYTES = 64 * 1024


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]


class DirectRoute(APIRoute):
    """An APIRoute that calls an ``async def endpoint(request: Request) -> Response``
    directly.

    FastAPI's generic handler solves dependencies and validates and serialises the
    response even for an endpoint that takes nothing but the request; on a one-instance
    prediction that machinery costs more than parsing, scoring and encoding together. The
    route stays an APIRoute, so the OpenAPI document still describes it. Endpoints with
    any other parameter get the generic handler.
    """

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        dependant = self.dependant
        takes_only_request = dependant.request_param_name is not None and not (
            dependant.path_params
            or dependant.query_params
            or dependant.header_params
            or dependant.cookie_params
            or dependant.body_params
            or dependant.dependencies
        )
        if not (takes_only_request and inspect.iscoroutinefunction(dependant.call)):
            return super().get_route_handler()
        endpoint = dependant.call
        parameter = dependant.request_param_name

        async def handle(request: Request) -> Response:
            return await endpoint(**{parameter: request})

        return handle


async def answer_predictions(
    request: Request,
    request_format: str,
    response_format: str,
    overrides: Overrides | None = None,
) -> Response:
    # The hot path skips dependency injection, which costs more per request than the
    # whole single-instance pipeline; it reads the app's state as the dependencies do.
    state = request.app.state
    registry = registry_of(state)
    # The body size limit is enforced while this reads (service.middleware).
    body = await request.body()
    response, model = await predictions_response(
        registry,
        state.batch_scorer,
        state.metrics,
        body,
        request_format,
        response_format,
        overrides,
    )
    request.state.model = model
    return response


async def predictions_response(
    registry: ModelRegistry,
    scorer: BatchScorer,
    metrics: Metrics,
    body: bytes,
    request_format: str,
    response_format: str,
    overrides: Overrides | None = None,
) -> tuple[Response, str]:
    """Run the pipeline on ``body`` and count the predictions; the response and the model
    that answered (for the request metrics)."""
    if len(body) > INLINE_BODY_BYTES:
        encoded, predictions = await run_in_threadpool(
            _pipeline_now, registry, scorer, body, request_format, response_format, overrides
        )
    else:
        job = decode_request(registry, body, request_format, overrides)
        scores = await scorer.score(job.model, job.x)
        encoded, predictions = answer(job, scores, response_format)
    metrics.observe_predictions(predictions.model, predictions.labels, predictions.close)
    return Response(encoded, media_type=response_format), predictions.model


def _pipeline_now(
    registry: ModelRegistry,
    scorer: BatchScorer,
    body: bytes,
    request_format: str,
    response_format: str,
    overrides: Overrides | None,
) -> tuple[bytes, Predictions]:
    # service.inference.run_pipeline, with the session call made (and counted) by the scorer.
    job = decode_request(registry, body, request_format, overrides)
    return answer(job, scorer.score_now(job.model, job.x), response_format)
