"""``POST /predict``: JSON in, JSON out."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import Receive, Scope

from service.codecs import JSON, negotiate, parse_media_type
from service.errors import UnsupportedMediaTypeError
from service.routes.common import (
    DirectRoute,
    answer_predictions,
    dataplane_of,
    predictions_response,
)
from service.schemas import ERROR_RESPONSES, PredictResponse

router = APIRouter(tags=["predictions"], route_class=DirectRoute)


def check_media_types(content_type: str | None, accept: str | None) -> None:
    media, _ = parse_media_type(content_type)
    # A missing Content-Type is taken as JSON: curl -d sends form encoding otherwise.
    if media not in ("", JSON):
        raise UnsupportedMediaTypeError(f"Content-Type {content_type!r}: /predict takes {JSON}")
    negotiate(accept, [JSON])


@router.post(
    "/predict",
    # The request body and every response are stated by service.openapi.
    responses={200: {"model": PredictResponse}, **ERROR_RESPONSES},
)
async def predict(request: Request) -> Response:
    """Score instances: ``label = score >= threshold``,
    ``close_confusion = |score - threshold| < margin``."""
    check_media_types(request.headers.get("content-type"), request.headers.get("accept"))
    return await answer_predictions(request, JSON, JSON)


async def predict_direct(scope: Scope, receive: Receive) -> Response:
    """``predict`` called straight from service.middleware, without a Request: the same
    checks in the same order (media types, registry, body, pipeline) and the same answer."""
    content_type = accept = None
    # The first occurrence of each, as Starlette's Headers.get; ASGI names are lower case.
    for name, value in scope["headers"]:
        if name == b"content-type":
            if content_type is None:
                content_type = value.decode("latin-1")
        elif name == b"accept" and accept is None:
            accept = value.decode("latin-1")
    check_media_types(content_type, accept)
    dataplane = dataplane_of(scope["app"].state)
    body = await _read_body(receive)
    response, model = await predictions_response(dataplane, body, JSON, JSON)
    scope["state"]["model"] = model
    return response


async def _read_body(receive: Receive) -> bytes:
    # As Starlette's Request.body(): every chunk up to the last, ClientDisconnect if the
    # client goes away first.
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.request":
            chunk = message.get("body", b"")
            if chunk:
                chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
        elif message["type"] == "http.disconnect":
            raise ClientDisconnect()
