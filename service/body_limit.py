"""Refuse request bodies over ``max_body_bytes`` with a 413, before they are read into memory.

A declared ``Content-Length`` over the limit is refused before the app runs at all; a
chunked body is counted as it streams and refused at the first chunk past the limit.
Whatever the app then tries to answer (FastAPI turns errors while reading a body into its
own 400), the client gets the 413 in the service's error shape.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import PayloadTooLargeError, error_body


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

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
        if declared is not None and declared > self.max_body_bytes:
            await self._refuse(send, self._error(f"of {declared} bytes (Content-Length)"))
            return
        if declared is not None:
            # The HTTP server holds a body to its declared length, so nothing needs
            # counting; the hot path (small, declared JSON bodies) skips both wrappers.
            await self.app(scope, receive, send)
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
            await self.app(scope, counting_receive, guarded_send)
        except PayloadTooLargeError:
            if overflow is None or started:
                raise
            started = True
            await self._refuse(send, overflow)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
