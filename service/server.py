"""The HTTP protocols uvicorn runs for the service: uvicorn's own, with limits on what one
connection may hold.

- The request line and headers of one request: at most ``COSTAWARE_MAX_HEADER_BYTES``
  in all, else 431 and the connection is closed. httptools has no limit of its own and
  buffers a header value whole (a 100 MB header took the event loop half a minute); h11's
  limit is set to the same bound, and its refusal is answered 431 too.
- Time: a connection with no request in progress is closed after
  ``COSTAWARE_KEEP_ALIVE_TIMEOUT_SECONDS`` (uvicorn's keep-alive timer, which uvicorn arms
  only after a response: a connection that never sent a request was kept forever); a
  request head must arrive within ``COSTAWARE_HEADER_TIMEOUT_SECONDS`` of its first byte
  and a body within ``COSTAWARE_BODY_TIMEOUT_SECONDS`` of the end of its head, else 408
  and the connection is closed (bytes trickled at 1 byte/s held a connection forever).

Both are answered here, below the app, in the service's error body; the app never sees
such a request. ``serve`` passes these classes to uvicorn as its ``http`` protocol.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Literal

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from service.errors import error_body
from service.settings import Settings

log = logging.getLogger(__name__)

# What a connection is waiting for: a request head, a request body, or nothing (idle, or
# a request being answered).
Reading = Literal["head", "body"] | None


@dataclass(frozen=True)
class ConnectionLimits:
    max_header_bytes: int
    header_timeout_seconds: float
    body_timeout_seconds: float

    @classmethod
    def of(cls, settings: Settings) -> ConnectionLimits:
        return cls(
            max_header_bytes=settings.max_header_bytes,
            header_timeout_seconds=settings.header_timeout_seconds,
            body_timeout_seconds=settings.body_timeout_seconds,
        )


@functools.cache
def connection_limits() -> ConnectionLimits:
    """The limits of this process, from its environment (read once: every worker process
    reads the same ``COSTAWARE_*`` variables that ``serve`` validated at start-up)."""
    return ConnectionLimits.of(Settings())


def _answer(
    status: int, kind: str, detail: str, default_headers: list[tuple[bytes, bytes]]
) -> bytes:
    body = error_body(kind, detail)
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}".encode("latin-1")]
    lines += [name + b": " + value for name, value in default_headers]
    lines += [
        b"content-type: application/json",
        b"content-length: " + str(len(body)).encode("latin-1"),
        b"connection: close",
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


class _Limited:
    """What both protocols add to uvicorn's: the deadlines and the refusals. Mixed in
    before uvicorn's class, whose attributes (loop, transport, cycle, server_state, the
    keep-alive timer) it uses."""

    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    cycle: Any
    server_state: Any
    client: tuple[str, int] | None
    timeout_keep_alive: float
    timeout_keep_alive_task: asyncio.TimerHandle | None

    def _start_limits(self) -> None:
        self.limits = connection_limits()
        self._deadline: asyncio.TimerHandle | None = None
        self._deadline_for: Reading = None
        # uvicorn arms its keep-alive timer after each response only; a connection that
        # never sends a request is idle from the start (the first bytes cancel it).
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive,
            self.timeout_keep_alive_handler,  # type: ignore[attr-defined]
        )

    def _follow(self, reading: Reading) -> None:
        """Arm the deadline of what the connection now waits for (once per head or body:
        it runs from the first byte of a head, from the end of the head for a body)."""
        if reading == self._deadline_for:
            return
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._deadline_for = reading
        if reading is not None and not self.transport.is_closing():
            self._deadline = self.loop.call_later(self._seconds(reading), self._expired, reading)

    def _seconds(self, reading: Literal["head", "body"]) -> float:
        if reading == "head":
            return self.limits.header_timeout_seconds
        return self.limits.body_timeout_seconds

    def _expired(self, reading: Literal["head", "body"]) -> None:
        self._deadline = None
        if reading == "head":
            what, variable = "request line and headers", "COSTAWARE_HEADER_TIMEOUT_SECONDS"
        else:
            what, variable = "request body", "COSTAWARE_BODY_TIMEOUT_SECONDS"
        detail = f"{what} not received within {self._seconds(reading):g} s ({variable})"
        self._close_with(HTTPStatus.REQUEST_TIMEOUT, "request_timeout", detail)

    def _refuse_head(self) -> None:
        detail = (
            f"request line and headers exceed {self.limits.max_header_bytes} bytes "
            "(COSTAWARE_MAX_HEADER_BYTES)"
        )
        self._close_with(
            HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "request_header_fields_too_large", detail
        )

    def _close_with(self, status: HTTPStatus, kind: str, detail: str) -> None:
        """Answer ``status`` (unless a response is under way on this connection) and close."""
        if self.transport.is_closing():
            return
        log.info("%s from %s: %s", status.value, _peer(self.client), detail)
        if self.cycle is None or not self.cycle.response_started:
            headers = self.server_state.default_headers
            self.transport.write(_answer(status.value, kind, detail, headers))
        self.transport.close()

    def _stop_limits(self) -> None:
        self._follow(None)


def _peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "a client"


try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - uvicorn[standard] is installed with the service
    LimitedHttpToolsProtocol = None
else:

    class LimitedHttpToolsProtocol(_Limited, HttpToolsProtocol):  # type: ignore[no-redef]
        """uvicorn's httptools protocol with the limits.

        Head bytes are counted twice over: whole reads while a head is incomplete (a
        header that never ends is refused after at most one read past the bound, before
        httptools has buffered more), and exactly when a head completes (it may have
        come in one read with its body).
        """

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)  # type: ignore[arg-type]
            self._reading: Reading = None
            self._head_read = 0  # bytes of the reads since the last head or body ended
            self._head_refused = False
            self._start_limits()

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_limits()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._head_refused:
                return
            if self._reading != "body":
                self._head_read += len(data)
            super().data_received(data)
            if self._head_refused or (
                self._reading == "head" and self._head_read > self.limits.max_header_bytes
            ):
                self._head_refused = True
                self._refuse_head()
                return
            if not self.transport.is_closing():
                self._follow(self._reading)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._reading = "head"

        def on_headers_complete(self) -> None:
            # The URL and the headers uvicorn has gathered (": " and CRLF per header).
            size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
            if size > self.limits.max_header_bytes:
                # Refused once the parser returns (data_received); no request starts.
                self._head_refused = True
                return
            self._reading = "body"
            self._head_read = 0
            super().on_headers_complete()

        def on_body(self, body: bytes) -> None:
            if not self._head_refused:
                super().on_body(body)

        def on_message_complete(self) -> None:
            if self._head_refused:
                return
            self._reading = None
            self._head_read = 0
            super().on_message_complete()


class LimitedH11Protocol(_Limited, H11Protocol):
    """uvicorn's h11 protocol with the limits. h11 bounds a head that is still arriving
    (``h11_max_incomplete_event_size``, set to the same bound by ``serve``); a head that
    arrives whole in one read is measured as h11 hands it over. Both are answered 431
    like httptools'."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_refused = False
        next_event = self.conn.next_event

        def measured_next_event() -> Any:
            event = next_event()
            if isinstance(event, h11.Request) and _head_size(event) > self.limits.max_header_bytes:
                self._head_refused = True
                # uvicorn answers h11's protocol errors through send_400_response.
                raise h11.RemoteProtocolError("request head too large", error_status_hint=431)
            return event

        self.conn.next_event = measured_next_event  # type: ignore[method-assign]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._start_limits()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_limits()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.transport.is_closing():
            return
        state = self.conn.their_state
        # Still IDLE after bytes arrived: a head is incomplete.
        self._follow("head" if state is h11.IDLE else "body" if state is h11.SEND_BODY else None)

    def send_400_response(self, msg: str) -> None:
        if self._head_refused or (
            self.conn.their_state is h11.ERROR
            and len(self.conn.trailing_data[0]) > self.limits.max_header_bytes
        ):
            self._refuse_head()  # measured above, or h11's "Receive buffer too long"
            return
        super().send_400_response(msg)


def _head_size(request: h11.Request) -> int:
    return (
        len(request.method)
        + len(request.target)
        + sum(len(name) + len(value) + 4 for name, value in request.headers.raw_items())
    )


def protocol_class(http: str) -> str:
    """The protocol class for ``httptools`` or ``h11`` (as ``server_stack`` resolved it),
    as the import string uvicorn loads in each worker: a worker imports it after it has
    started answering its supervisor's health checks (passed as a class, it would be
    imported while the worker unpickles its configuration, which on a loaded machine took
    longer than the supervisor waits)."""
    name = "LimitedHttpToolsProtocol" if http == "httptools" else "LimitedH11Protocol"
    return f"{__name__}:{name}"
