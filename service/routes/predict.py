"""``POST /predict``: JSON in, JSON out."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from service.codecs import JSON, negotiate, parse_media_type
from service.errors import UnsupportedMediaTypeError
from service.inference import REQUEST_ID_HEADER, Overrides
from service.routes.common import (
    DirectRoute,
    Formats,
    HeaderGetter,
    answer_predictions,
    direct_endpoint,
    register_direct,
)
from service.schemas import ERROR_RESPONSES, PredictResponse, ValuedPredictResponse

router = APIRouter(tags=["predictions"], route_class=DirectRoute)


def check_media_types(content_type: str | None, accept: str | None) -> None:
    media, _ = parse_media_type(content_type)
    # A missing Content-Type is taken as JSON: curl -d sends form encoding otherwise.
    if media not in ("", JSON):
        raise UnsupportedMediaTypeError(f"Content-Type {content_type!r}: /predict takes {JSON}")
    negotiate(accept, [JSON])


def predict_formats(header: HeaderGetter) -> Formats:
    """JSON in, JSON out; anything else is refused (415, 406)."""
    check_media_types(header("content-type"), header("accept"))
    request_id = header(REQUEST_ID_HEADER)
    return JSON, JSON, None if request_id is None else Overrides(request_id=request_id)


@router.post(
    "/predict",
    # The request body and every response are stated by service.openapi.
    responses={200: {"model": PredictResponse | ValuedPredictResponse}, **ERROR_RESPONSES},
)
async def predict(request: Request) -> Response:
    """Score instances: ``label = score >= threshold``,
    ``close_confusion = |score - threshold| < margin``. With ``cost_matrix`` (binary), or
    for a multiclass model: each instance's decision is the action with the highest
    expected value, with ``expected_values`` and a margin in dollars."""
    return await answer_predictions(request, predict_formats)


# ``predict`` as service.middleware calls it, without FastAPI's router.
predict_direct = register_direct(predict, direct_endpoint(predict_formats))
