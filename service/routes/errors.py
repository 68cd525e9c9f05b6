"""The one handler: every refusal answered with ``{"error": <kind>, "detail": <text>}``.

:class:`~service.errors.ServiceError` carries its status and kind; FastAPI's validation
errors and Starlette's own HTTP errors (unknown route, wrong method) are translated into
the same shape, so clients parse one body whatever went wrong.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from service.errors import ServiceError, error_body

log = logging.getLogger(__name__)


def error_response(status: int, kind: str, detail: str) -> Response:
    return Response(error_body(kind, detail), status_code=status, media_type="application/json")


# A protocol's own error answer (status and JSON body) for a refusal, for the paths under
# its prefix (service.middleware, a protocol's routes); the service's is the default.
ErrorShape = Callable[[ServiceError], tuple[int, bytes]]


def service_error_response(exc: ServiceError, shape: ErrorShape | None = None) -> Response:
    """The answer to a refused request; the app's handler and the direct routes
    (service.middleware) both answer with this; ``shape``: a protocol's error answer."""
    if shape is None:
        response = error_response(exc.status, exc.kind, exc.detail)
    else:
        status, body = shape(exc)
        response = Response(body, status_code=status, media_type="application/json")
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
    return unexpected_error_response(request.method, request.url.path, exc)


def unexpected_error_response(method: str, path: str, exc: Exception) -> Response:
    """The 500 for an exception that is not a ServiceError, logged with its traceback;
    the app's handler and the direct routes (service.middleware) both answer with this."""
    # Only a bug in the service lands here; bad input is always a ServiceError.
    log.error("unhandled error on %s %s", method, path, exc_info=exc)
    return error_response(500, "internal_error", f"{type(exc).__name__} (see the server log)")


# nginx's "client closed request": what the request metrics count such a request as.
CLIENT_CLOSED_REQUEST = 499


def client_disconnected_response(method: str, path: str) -> Response:
    """The client went away before its whole body arrived: nobody to answer and nothing
    wrong with the service, so one debug line (it was two tracebacks at error level); the
    app's handler and the direct routes (service.middleware) both answer with this."""
    log.debug("client disconnected before its whole request body arrived: %s %s", method, path)
    return Response(status_code=CLIENT_CLOSED_REQUEST)


async def _client_disconnect(request: Request, _exc: Exception) -> Response:
    return client_disconnected_response(request.method, request.url.path)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(ClientDisconnect, _client_disconnect)
    app.add_exception_handler(Exception, _unexpected)
