"""The SageMaker hosting and Batch Transform contract: /ping, /invocations,
/execution-parameters."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from service.codecs import CSV, JSONLINES, RESPONSE_TYPES, negotiate, request_format
from service.inference import (
    CUSTOM_ATTRIBUTES_HEADER,
    INFERENCE_ID_HEADER,
    REQUEST_ID_HEADER,
    TARGET_MODEL_HEADER,
    Overrides,
    parse_custom_attributes,
    target_model_name,
)
from service.routes.common import (
    DirectRoute,
    Formats,
    HeaderGetter,
    RegistryDep,
    SettingsDep,
    answer_predictions,
    direct_endpoint,
    register_direct,
)
from service.routes.errors import error_response
from service.schemas import ERROR_RESPONSES, ExecutionParameters

router = APIRouter(tags=["sagemaker"], route_class=DirectRoute)


@router.get("/ping", responses={503: {"description": "No model loaded"}})
async def ping(registry: RegistryDep) -> Response:
    """200 with an empty body once a model is loaded, else 503 (open to anyone, so it names
    no path; ``/health/ready`` and ``GET /models`` say why, to a caller with a key)."""
    if registry.ready:
        return Response(status_code=200)
    return error_response(503, "not_ready", "no model loaded")


@router.get("/execution-parameters", response_model=ExecutionParameters)
async def execution_parameters(settings: SettingsDep) -> dict[str, int | str]:
    """What Batch Transform should send: concurrency, MultiRecord batches, payload size."""
    return {
        "MaxConcurrentTransforms": settings.effective_max_concurrent_transforms(),
        "BatchStrategy": "MULTI_RECORD",
        "MaxPayloadInMB": settings.max_payload_mb(),
    }


@router.post(
    "/invocations",
    responses={
        200: {
            "content": {CSV: {}, JSONLINES: {}},
            "description": "One prediction per instance, in the Accept-ed format.",
        },
        **ERROR_RESPONSES,
    },
)
async def invocations(request: Request) -> Response:
    """Score a CSV, JSON or JSON-lines batch; answer as JSON, CSV or JSON lines (Accept)."""
    return await answer_predictions(request, invocations_formats)


def invocations_formats(header: HeaderGetter) -> Formats:
    """Content-Type and Accept choose the formats (415, 406); the SageMaker headers may
    choose the model, threshold, margin and what to do out of range."""
    in_format = request_format(header("content-type"))
    out_format = negotiate(header("accept"), RESPONSE_TYPES)
    attributes = parse_custom_attributes(header(CUSTOM_ATTRIBUTES_HEADER))
    target = target_model_name(header(TARGET_MODEL_HEADER))
    overrides = Overrides(
        model=target or attributes.model,
        threshold=attributes.threshold,
        margin=attributes.margin,
        on_out_of_range=attributes.on_out_of_range,
        request_id=header(INFERENCE_ID_HEADER) or header(REQUEST_ID_HEADER),
        csv_ids=attributes.csv_ids,
    )
    return in_format, out_format, overrides


# ``invocations`` as service.middleware calls it, without FastAPI's router.
invocations_direct = register_direct(invocations, direct_endpoint(invocations_formats))
