"""The service's one ASGI layer, outside all of Starlette's: API keys, the body-size
limit, request metrics, and a direct call of the prediction endpoints.

API keys (service.auth): checked first, for the direct paths and the router alike, so a
request without a valid key is answered 401 before its body is read. With no inference
key and no metrics guard configured the check is skipped (one attribute test).

It wraps the app's whole middleware stack (``service.app`` builds it that way), so a
prediction pays for no other layer: on a one-instance prediction the framework around
the endpoint costs as much as the pipeline itself.

Body limit: a declared ``Content-Length`` over the limit is refused (413) before anything
else runs, and such a refusal is not timed. A chunked body is counted as it streams and
refused at the first chunk past the limit. Whatever the app then tries to answer (FastAPI
turns errors while reading a body into its own 400), the client gets the 413 in the
service's error shape.

Metrics: every other HTTP request is timed; the endpoint label is the matched route's path
template (bounded cardinality), the model label whatever the route put in the scope's
``state``. Each request, the 413 refusals too, is also handed to the access log
(service.accesslog), which only queues it here.

Direct routes: the routes whose endpoint has a direct twin (``register_direct``:
``POST /predict``, ``POST /invocations``, the V2 infer paths), with no ``root_path``, go
straight to it (``service.routes.common.DirectLanes``, built from the app's routes: found
by exact path or by the route's path template, labelled in the metrics by the template)
instead of through
Starlette's error and exception middleware, FastAPI's router and a ``Request``. They answer
exactly as the routed endpoints do: the same checks in the same order, the same bytes and
headers, a ServiceError as the app's handler answers it, any other exception as the app's
500 (logged, then re-raised to the server, as Starlette's error middleware does), the same
metric samples (tests/service/test_direct_routes.py compares both paths for every format).
Everything else goes through the app; the routes stay registered for the OpenAPI document
and for any request the direct path does not take.

Error shapes: a protocol with its own error body (the Open Inference Protocol's
``{"error": ...}``) registers it for its path prefix; this layer's own refusals (401, 413)
and the direct endpoints' refusals on those paths take that shape.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable, Mapping

from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.accesslog import AccessLog
from service.auth import KeyRing
from service.errors import PayloadTooLargeError, ServiceError, error_body
from service.metrics import UNMATCHED, Metrics
from service.routes.common import DirectEndpoint, DirectLanes
from service.routes.errors import (
    ErrorShape,
    client_disconnected_response,
    service_error_response,
    unexpected_error_response,
)

_HTTP1 = frozenset({"1.0", "1.1"})


class ServiceMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        metrics: Metrics,
        direct: DirectLanes | None = None,
        keys: KeyRing | None = None,
        access_log: AccessLog | None = None,
        error_shapes: Mapping[str, ErrorShape] | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics
        self.access_log = access_log
        self.direct = direct or DirectLanes(())
        self.error_shapes = tuple((error_shapes or {}).items())
        self.keys = keys if keys is not None and keys.guards_requests else None

    def _error(self, what: str) -> PayloadTooLargeError:
        return PayloadTooLargeError(
            f"request body {what} exceeds the limit of {self.max_body_bytes} bytes "
            "(COSTAWARE_MAX_BODY_BYTES); split the batch"
        )

    def _shape(self, scope: Scope) -> ErrorShape | None:
        """The error shape of the protocol whose prefix the path is under, if any."""
        path = scope["path"]
        for prefix, shape in self.error_shapes:
            if path == prefix or path.startswith(prefix + "/"):
                return shape
        return None

    async def _refuse(self, scope: Scope, send: Send, error: PayloadTooLargeError) -> None:
        shape = self._shape(scope)
        status, body = (
            (error.status, error_body(error.kind, error.detail)) if shape is None else shape(error)
        )
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    # The rest of the body is never read, so the connection cannot be reused.
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.keys is not None:
            refusal = self.keys.refusal(scope)
            if refusal is not None:
                start = time.perf_counter()
                await service_error_response(refusal, self._shape(scope))(scope, receive, send)
                self._observe(scope, UNMATCHED, "", refusal.status, start)
                return
        declared, chunked = _body_framing(scope["headers"])
        if declared is not None and declared > self.max_body_bytes:
            start = time.perf_counter()
            await self._refuse(scope, send, self._error(f"of {declared} bytes (Content-Length)"))
            # Not in the request metrics (see above), but in the access log.
            if self.access_log is not None:
                self.access_log.record(scope, 413, time.perf_counter() - start, "")
            return
        if not chunked and (declared is not None or scope.get("http_version") in _HTTP1):
            # The HTTP server holds a body to its declared length, and an HTTP/1 request
            # with neither Content-Length nor chunked encoding has no body, so nothing
            # needs counting: the hot path skips both wrappers.
            await self._timed(scope, receive, send)
            return

        received = 0
        overflow: PayloadTooLargeError | None = None
        started = False

        async def counting_receive() -> Message:
            nonlocal received, overflow
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    overflow = self._error("streamed without Content-Length")
                    raise overflow
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if overflow is not None:
                # The app answered after the overflow (perhaps with its own 400); the
                # client gets our 413 instead, once.
                if not started:
                    started = True
                    await self._refuse(scope, send, overflow)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self._timed(scope, counting_receive, guarded_send)
        except PayloadTooLargeError:
            if overflow is None or started:
                raise
            started = True
            await self._refuse(scope, send, overflow)

    async def _timed(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        found = None if scope.get("root_path") else self.direct.find(scope["method"], scope["path"])
        if found is not None:
            template, direct, params = found
            if params:
                scope["path_params"] = params
            await self._direct(template, direct, scope, receive, send, start)
            return

        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or UNMATCHED
            model = str(scope.setdefault("state", {}).get("model", ""))
            self._observe(scope, endpoint, model, status, start)

    def _observe(self, scope: Scope, endpoint: str, model: str, status: int, start: float) -> None:
        """A finished request: its metric samples and its access-log line."""
        seconds = time.perf_counter() - start
        self.metrics.observe_request(endpoint, model, status, seconds)
        if self.access_log is not None:
            self.access_log.record(scope, status, seconds, model)

    async def _direct(
        self,
        template: str,
        endpoint: DirectEndpoint,
        scope: Scope,
        receive: Receive,
        send: Send,
        start: float,
    ) -> None:
        state = scope.setdefault("state", {})
        status = 500
        try:
            try:
                answer = await endpoint(scope, receive)
            except ServiceError as exc:
                response = service_error_response(exc, self._shape(scope))
            except ClientDisconnect:
                response = client_disconnected_response(scope["method"], scope["path"])
            except Exception as exc:
                # As Starlette's error middleware: the app's 500, then the exception goes
                # on to the server.
                await unexpected_error_response(scope["method"], scope["path"], exc)(
                    scope, receive, send
                )
                raise
            else:
                status = 200
                body, media_type = answer[0], answer[1]
                headers = [
                    (b"content-length", str(len(body)).encode("latin-1")),
                    _content_type(media_type),
                ]
                if len(answer) > 2:
                    headers += answer[2]  # type: ignore[misc]
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
            status = response.status_code
            await response(scope, receive, send)
        finally:
            # The route's template, never the raw path: one label per route, whatever the
            # path parameters a client sends.
            self._observe(scope, template, str(state.get("model", "")), status, start)


@functools.cache
def _content_type(media_type: str) -> tuple[bytes, bytes]:
    # Exactly the header Starlette's Response sends for this media type (a charset is
    # added to text/* types).
    return next(
        header
        for header in Response(b"", media_type=media_type).raw_headers
        if header[0] == b"content-type"
    )


def _body_framing(headers: Iterable[tuple[bytes, bytes]]) -> tuple[int | None, bool]:
    """The declared Content-Length (None when absent or unreadable) and whether the body
    must be counted as it arrives (any Transfer-Encoding, or an unreadable length)."""
    declared = None
    chunked = False
    for name, value in headers:
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                declared, chunked = None, True  # unreadable: count what actually comes
        elif name == b"transfer-encoding":
            chunked = True
    return declared, chunked
