"""The service's one ASGI layer: the body-size limit, request metrics, and a direct call of
the prediction endpoint.

One layer instead of a middleware each saves a coroutine frame, a ``send`` wrapper and a
header scan per request; on a one-instance prediction the framework around the endpoint
costs more than the pipeline itself, so these add up.

Body limit: a declared ``Content-Length`` over the limit is refused (413) before anything
else runs, and such a refusal is not timed (as when the limit was its own outer
middleware). A chunked body is counted as it streams and refused at the first chunk past
the limit. Whatever the app then tries to answer (FastAPI turns errors while reading a
body into its own 400), the client gets the 413 in the service's error shape.

Metrics: every other HTTP request is timed; the endpoint label is the matched route's path
template (bounded cardinality), the model label whatever the route put in the scope's
``state``.

Direct routes: ``POST /predict`` with no ``root_path`` goes straight to its endpoint
(``service.routes.predict.predict_direct``) instead of through Starlette's exception
middleware, FastAPI's router and a ``Request``. It answers exactly as the routed endpoint
does (same checks in the same order, same response, a ServiceError turned into the same
error body as the app's handler); anything else goes through the app as usual, and the
route stays registered for the OpenAPI document and for any request the direct path does
not take.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import PayloadTooLargeError, ServiceError, error_body
from service.metrics import UNMATCHED, Metrics
from service.routes.errors import service_error_response

# (method, path) -> endpoint taking the scope and receive and returning the response.
DirectEndpoint = Callable[[Scope, Receive], Awaitable[Response]]


class ServiceMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        metrics: Metrics,
        direct: Mapping[tuple[str, str], DirectEndpoint] | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics
        self.direct = dict(direct or {})

    def _error(self, what: str) -> PayloadTooLargeError:
        return PayloadTooLargeError(
            f"request body {what} exceeds the limit of {self.max_body_bytes} bytes "
            "(COSTAWARE_MAX_BODY_BYTES); split the batch"
        )

    async def _refuse(self, send: Send, error: PayloadTooLargeError) -> None:
        body = error_body(error.kind, error.detail)
        await send(
            {
                "type": "http.response.start",
                "status": error.status,
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
        declared = _content_length(scope)
        if declared is not None:
            if declared > self.max_body_bytes:
                await self._refuse(send, self._error(f"of {declared} bytes (Content-Length)"))
                return
            # The HTTP server holds a body to its declared length, so nothing needs
            # counting; the hot path (small, declared JSON bodies) skips both wrappers.
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
                    await self._refuse(send, overflow)
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
            await self._refuse(send, overflow)

    async def _timed(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = scope.setdefault("state", {})
        start = time.perf_counter()
        endpoint = None
        if not scope.get("root_path"):
            direct = self.direct.get((scope["method"], scope["path"]))
        else:
            direct = None  # mounted under a prefix: let the router resolve the path
        if direct is not None:
            # A direct response is sent in one place, so its status is known without
            # wrapping ``send``; an exception other than a ServiceError propagates to the
            # app's server-error handler and is counted as 500, as on the routed path.
            endpoint = scope["path"]
            status = 500
            try:
                try:
                    response = await direct(scope, receive)
                except ServiceError as exc:
                    response = service_error_response(exc)
                status = response.status_code
                await response(scope, receive, send)
            finally:
                self.metrics.observe_request(
                    endpoint, str(state.get("model", "")), status, time.perf_counter() - start
                )
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
            self.metrics.observe_request(
                endpoint, str(state.get("model", "")), status, time.perf_counter() - start
            )


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
