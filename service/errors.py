"""One exception family, one error body: ``{"error": <kind>, "detail": <text>}``.

The data plane, codecs and routes raise :class:`ServiceError` subclasses, each carrying
the HTTP status and error kind it is answered with; no web framework here, so the data
plane and the registry can raise them. The one handler that turns them (and FastAPI's and
Starlette's own errors) into responses is :mod:`service.routes.errors`.
"""

from __future__ import annotations

import json


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


class NonFiniteScoreError(ServiceError):
    """The model gave a score that is not a finite number in [0, 1] (NaN, +-inf) for some
    instance; no decision is made on it. The body was valid, so the status is 422."""

    status = 422
    kind = "non_finite_score"


class OutOfRangeError(ServiceError):
    """An instance has features outside the model's training range and the request asked
    for such instances to be refused (``on_out_of_range: refuse``)."""

    status = 422
    kind = "out_of_range"


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
