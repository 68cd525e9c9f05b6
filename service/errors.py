"""One exception family, one handler, one error body: ``{"error": <kind>, "detail": <text>}``.

Routes and codecs raise :class:`ServiceError` subclasses; the handlers installed by
:func:`install_error_handlers` also translate FastAPI's validation errors and Starlette's
own HTTP errors (unknown route, wrong method) into the same shape, so clients parse one
body whatever went wrong.
"""

from __future__ import annotations

import json
import logging
import re
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

log = logging.getLogger(__name__)


class ServiceError(Exception):
    """A request the service refuses; ``status`` and ``kind`` say how, ``detail`` says why."""

    status: int = 400
    kind: str = "bad_request"
    headers: dict[str, str] | None = None

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class MalformedRequestError(ServiceError):
    """The body could not be parsed at all (broken JSON, JSON lines, text encoding)."""

    status = 400
    kind = "malformed_request"


class InvalidInputError(ServiceError):
    """The body parsed but its content is wrong (feature count, non-numeric, NaN, range)."""

    status = 422
    kind = "invalid_input"


class UnauthorizedError(ServiceError):
    """No API key, or not a valid one (the key itself is never echoed or logged)."""

    status = 401
    kind = "unauthorized"

    def __init__(self, detail: str, invalid_key: bool = False) -> None:
        super().__init__(detail)
        challenge = 'Bearer realm="costaware"'
        if invalid_key:
            challenge += ', error="invalid_token"'
        self.headers = {"WWW-Authenticate": challenge}


class ForbiddenError(ServiceError):
    """A valid key that may not do this (an inference key on load/unload), or an admin
    endpoint with no admin keys configured."""

    status = 403
    kind = "forbidden"


class ConflictError(ServiceError):
    """The request conflicts with what is served (unloading the default model, a version
    string reused for a different graph)."""

    status = 409
    kind = "conflict"


class ModelLoadError(ServiceError):
    """A model folder that failed validation or warm-up on load; the old version, if any,
    is still served."""

    status = 422
    kind = "model_refused"


class NotFoundError(ServiceError):
    status = 404
    kind = "not_found"


class NotAcceptableError(ServiceError):
    status = 406
    kind = "not_acceptable"


class PayloadTooLargeError(ServiceError):
    status = 413
    kind = "payload_too_large"


class UnsupportedMediaTypeError(ServiceError):
    status = 415
    kind = "unsupported_media_type"


class NotReadyError(ServiceError):
    status = 503
    kind = "not_ready"


def error_body(kind: str, detail: str) -> bytes:
    return json.dumps({"error": kind, "detail": detail}).encode()


def error_response(status: int, kind: str, detail: str) -> Response:
    return Response(error_body(kind, detail), status_code=status, media_type="application/json")


def service_error_response(exc: ServiceError) -> Response:
    """The answer to a refused request; the app's handler and the direct routes
    (service.middleware) both answer with this."""
    response = error_response(exc.status, exc.kind, exc.detail)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


def _kind_for_status(status: int) -> str:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        return "http_error"
    return re.sub(r"[^a-z0-9]+", "_", phrase.lower()).strip("_")


def describe_validation_error(exc: RequestValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return "invalid request"
    first = errors[0]
    where = ".".join(str(part) for part in first.get("loc", ())) or "request"
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return f"{where}: {first.get('msg', 'invalid')}{more}"


async def _service_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)
    return service_error_response(exc)


async def _validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return error_response(422, "invalid_request", describe_validation_error(exc))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no route {request.method} {request.url.path}"
    elif exc.status_code == 405:
        detail = f"{request.method} is not allowed on {request.url.path}"
    response = error_response(exc.status_code, _kind_for_status(exc.status_code), detail)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def _unexpected(request: Request, exc: Exception) -> Response:
    # Only a bug in the service lands here; bad input is always a ServiceError.
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", f"{type(exc).__name__} (see the server log)")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
