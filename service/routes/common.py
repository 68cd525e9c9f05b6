"""What several routes share: the dependencies (settings, metrics, registry, data plane),
and the one way a prediction request is decoded, run through the data plane and answered."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Annotated, Any, ParamSpec, TypeVar

from fastapi import Depends, Request
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import Receive, Scope

from service.dataplane import DataPlane
from service.errors import NotReadyError, ServiceError
from service.inference import Overrides, decode_inputs, encoder, run_pipeline
from service.metrics import Metrics
from service.registry import ModelRegistry, registry_of
from service.settings import Settings

P = ParamSpec("P")
T = TypeVar("T")

# Below this size decoding and scoring take less time than a hop to the thread pool; above
# it they run there, so a multi-MB CSV does not stall /ping on the event loop.
INLINE_BODY_BYTES = 64 * 1024


async def in_threadpool(func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``run_in_threadpool``, with a refusal raised here without its thread-side traceback.

    A ServiceError comes back through anyio's future, and the frame awaiting that future
    is in the error's traceback while the future holds the error: a reference cycle that
    keeps every frame of the refused call (the body, every line a decoder parsed) until a
    full collection, which a busy process may not run before the next such request. A
    refusal's traceback is never shown (it is answered, not logged), so it is dropped and
    the frames go as soon as the answer is sent. Any other exception keeps its traceback
    for the 500's log line.
    """
    try:
        return await run_in_threadpool(func, *args, **kwargs)
    except ServiceError as refusal:
        raise refusal.with_traceback(None)  # noqa: B904 - the same exception, re-raised


def dataplane_of(state: Any) -> DataPlane:
    """The app's data plane (``app.state.dataplane``), or NotReadyError while it starts."""
    dataplane = getattr(state, "dataplane", None)
    if dataplane is None:
        raise NotReadyError("the model registry has not been built (the app is still starting)")
    return dataplane


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


async def get_registry(request: Request) -> ModelRegistry:
    return registry_of(request.app.state)


async def get_dataplane(request: Request) -> DataPlane:
    return dataplane_of(request.app.state)


SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
DataPlaneDep = Annotated[DataPlane, Depends(get_dataplane)]


class DirectRoute(APIRoute):
    """An APIRoute that calls an ``async def endpoint(request: Request) -> Response``
    directly.

    FastAPI's generic handler solves dependencies and validates and serialises the
    response even for an endpoint that takes nothing but the request; on a one-instance
    prediction that machinery costs more than parsing, scoring and encoding together. The
    route stays an APIRoute, so the OpenAPI document still describes it. Endpoints with
    any other parameter get the generic handler.
    """

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        dependant = self.dependant
        takes_only_request = dependant.request_param_name is not None and not (
            dependant.path_params
            or dependant.query_params
            or dependant.header_params
            or dependant.cookie_params
            or dependant.body_params
            or dependant.dependencies
        )
        if not (takes_only_request and inspect.iscoroutinefunction(dependant.call)):
            return super().get_route_handler()
        endpoint = dependant.call
        parameter = dependant.request_param_name

        async def handle(request: Request) -> Response:
            return await endpoint(**{parameter: request})

        return handle


# A request header by name (case-insensitive; the first occurrence), or None.
HeaderGetter = Callable[[str], str | None]
# What a prediction endpoint reads from the headers: request format, response format and
# the overrides of the body's choices.
Formats = tuple[str, str, Overrides | None]
# A prediction endpoint called by service.middleware without a Request: the encoded answer
# and its media type (200), and optionally more response headers, or a ServiceError. The
# route's path parameters are in ``scope["path_params"]``.
DirectAnswer = tuple[bytes, str] | tuple[bytes, str, list[tuple[bytes, bytes]]]
DirectEndpoint = Callable[[Scope, Receive], Awaitable[DirectAnswer]]

# Each routed endpoint's direct twin (register_direct). service.middleware's table is built
# from the app's routes (DirectLanes), so a direct path's methods and template are stated
# once, in its route's decorator, and its metrics are labelled by that template.
_DIRECT: dict[Callable[..., Any], DirectEndpoint] = {}
_NO_PARAMS: dict[str, Any] = {}


def register_direct(routed: Callable[..., Any], direct: DirectEndpoint) -> DirectEndpoint:
    """Declare ``direct`` the twin of the route endpoint ``routed``: service.middleware
    calls it for the route's methods and path (template), the router answers otherwise
    (a ``root_path``, ``create_app(direct_routes=False)``)."""
    _DIRECT[routed] = direct
    return direct


class DirectLanes:
    """The direct endpoints of an app's routes, found by method and path: an exact path
    by one dict lookup (the hot ``/predict``), a path template by its route's pattern."""

    def __init__(self, routes: Iterable[BaseRoute]) -> None:
        self.exact: dict[tuple[str, str], tuple[str, DirectEndpoint]] = {}
        self.templated: list[tuple[str, Any, DirectEndpoint]] = []
        # Each route as the app matches it (FastAPI resolves included routers lazily).
        for route in iter_route_contexts(list(routes)):
            direct = _DIRECT.get(route.endpoint)  # type: ignore[arg-type]
            if direct is None or not isinstance(route.original_route, APIRoute):
                continue
            for method in sorted(route.methods or ()):
                if route.param_convertors:
                    self.templated.append((method, route, direct))
                else:
                    self.exact[(method, route.path)] = (route.path, direct)

    def find(self, method: str, path: str) -> tuple[str, DirectEndpoint, Mapping[str, Any]] | None:
        """The route's path template, its direct endpoint and the path parameters."""
        found = self.exact.get((method, path))
        if found is not None:
            return found[0], found[1], _NO_PARAMS
        for route_method, route, direct in self.templated:
            if route_method != method:
                continue
            match = route.path_regex.match(path)
            if match is not None:
                convertors = route.param_convertors
                params = {
                    key: convertors[key].convert(value) for key, value in match.groupdict().items()
                }
                return route.path, direct, params
        return None


async def answer_predictions(
    request: Request, formats: Callable[[HeaderGetter], Formats]
) -> Response:
    """A prediction endpoint's answer through FastAPI's router: ``formats`` reads the
    headers, then the body is read and predicted."""
    request_format, response_format, overrides = formats(request.headers.get)
    # The hot path skips dependency injection, which costs more per request than the
    # whole single-instance pipeline; it reads the app's state as the dependencies do.
    dataplane = dataplane_of(request.app.state)
    # The body size limit is enforced while this reads (service.middleware).
    body = await request.body()
    encoded, model = await predicted(dataplane, body, request_format, response_format, overrides)
    request.state.model = model
    return Response(encoded, media_type=response_format)


def direct_endpoint(formats: Callable[[HeaderGetter], Formats]) -> DirectEndpoint:
    """The same endpoint for service.middleware's direct call: the same checks in the same
    order (headers, data plane, body, prediction) and the same answer, without a Request
    or FastAPI's router."""

    async def endpoint(scope: Scope, receive: Receive) -> tuple[bytes, str]:
        request_format, response_format, overrides = formats(scope_headers(scope))
        dataplane = dataplane_of(scope["app"].state)
        body = await read_body(receive)
        encoded, model = await predicted(
            dataplane, body, request_format, response_format, overrides
        )
        scope["state"]["model"] = model
        return encoded, response_format

    return endpoint


def scope_headers(scope: Scope) -> HeaderGetter:
    """``Request.headers.get`` for an ASGI scope: the first occurrence of a name, decoded
    as latin-1 (ASGI header names are lower case)."""
    first: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        first.setdefault(name, value)

    def get(name: str) -> str | None:
        value = first.get(name.lower().encode("latin-1"))
        return None if value is None else value.decode("latin-1")

    return get


async def read_body(receive: Receive) -> bytes:
    """As Starlette's ``Request.body()``: every chunk up to the last, ClientDisconnect if
    the client goes away first."""
    message = await receive()
    if message["type"] == "http.request" and not message.get("more_body", False):
        return message.get("body", b"")  # the whole body in one message: the usual case
    chunks: list[bytes] = []
    while True:
        if message["type"] == "http.request":
            chunk = message.get("body", b"")
            if chunk:
                chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
        elif message["type"] == "http.disconnect":
            raise ClientDisconnect()
        message = await receive()


async def predicted(
    dataplane: DataPlane,
    body: bytes,
    request_format: str,
    response_format: str,
    overrides: Overrides | None = None,
) -> tuple[bytes, str]:
    """Decode ``body``, run it through the data plane and encode the answer; the encoded
    answer and the model that answered (for the request metrics)."""
    if len(body) > INLINE_BODY_BYTES:
        encoded, predictions = await in_threadpool(
            run_pipeline, dataplane, body, request_format, response_format, overrides
        )
    else:
        inputs = decode_inputs(dataplane, body, request_format, overrides)
        predictions = await dataplane.predict(inputs)
        encoded = encoder(response_format, overrides)(predictions)
    return encoded, predictions.model
