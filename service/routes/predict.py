"""``POST /predict``: JSON in, JSON out."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from service.codecs import JSON, negotiate, parse_media_type
from service.errors import UnsupportedMediaTypeError
from service.routes.common import DirectRoute, answer_predictions
from service.schemas import ERROR_RESPONSES, PredictResponse, json_request_body

router = APIRouter(tags=["predictions"], route_class=DirectRoute)


@router.post(
    "/predict",
    responses={200: {"model": PredictResponse}, **ERROR_RESPONSES},
    openapi_extra=json_request_body("Instances to score, plus optional model/threshold/margin."),
)
async def predict(request: Request) -> Response:
    """Score instances: ``label = score >= threshold``,
    ``close_confusion = |score - threshold| < margin``."""
    content_type = request.headers.get("content-type")
    media, _ = parse_media_type(content_type)
    # A missing Content-Type is taken as JSON: curl -d sends form encoding otherwise.
    if media not in ("", JSON):
        raise UnsupportedMediaTypeError(f"Content-Type {content_type!r}: /predict takes {JSON}")
    negotiate(request.headers.get("accept"), [JSON])
    return await answer_predictions(request, JSON, JSON)
