"""The Open Inference Protocol (KServe V2) over REST: ``/v2/...``.

HTTP only: the body (JSON, or JSON followed by binary tensor data when the
``Inference-Header-Content-Length`` header says where the JSON ends) becomes a
:class:`~service.protocols.v2.tensors.InferRequest`, the protocol-neutral core runs it
through the data plane, and the answer goes back as JSON or, for the outputs asked for in
binary (``binary_data`` per output, ``binary_data_output`` for all; tritonclient asks for
binary by default), JSON followed by their bytes. Refusals are the protocol's
``{"error": "<message>"}`` with 400, 404 or 503 (and the service's 401 and 413), on every
``/v2`` path: this module registers that shape for the prefix (service.middleware).

``POST .../infer`` is answered directly by service.middleware (``register_direct``), like
``/predict``; the routed endpoints give the same answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import Receive, Scope

from service.codecs import JSON, parse_media_type
from service.dataplane import DataPlane
from service.errors import MalformedRequestError, NotFoundError, NotReadyError, ServiceError
from service.protocols.v2 import tensors as v2
from service.registry import LoadedModel
from service.routes.common import (
    INLINE_BODY_BYTES,
    DataPlaneDep,
    DirectAnswer,
    HeaderGetter,
    RegistryDep,
    dataplane_of,
    in_threadpool,
    read_body,
    register_direct,
    scope_headers,
)
from service.routes.errors import service_error_response
from service.schemas import describe

PREFIX = "/v2"
HEADER_LENGTH = "Inference-Header-Content-Length"
OCTET_STREAM = "application/octet-stream"
# The extensions this server implements (GET /v2).
EXTENSIONS = ("binary_tensor_data",)
# Content types an infer body may have: none (tritonclient sends none) is JSON.
_BODY_TYPES = ("", JSON, OCTET_STREAM)
_REQUEST_FIELDS = ("id", "parameters", "inputs", "outputs")
_TENSOR_FIELDS = ("name", "datatype", "shape", "parameters", "data")


def error_shape(error: ServiceError) -> tuple[int, bytes]:
    """The protocol's error answer: its status and ``{"error": <message>}``."""
    return v2.protocol_status(error), orjson.dumps({"error": error.detail})


class V2Route(APIRoute):
    """A route whose refusals take the protocol's error shape when it is answered through
    FastAPI's router (the direct path gets it from service.middleware)."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except ServiceError as error:
                return service_error_response(error, error_shape)

        return handle


router = APIRouter(tags=["open inference protocol (v2)"], route_class=V2Route)


def _json(content: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type=JSON)


# ---------------------------------------------------------------------------------------
# Health and metadata


@router.get(f"{PREFIX}/health/live")
async def server_live() -> Response:
    """The process is up (open to anyone, like ``/health/live``)."""
    return _json({"live": True})


@router.get(f"{PREFIX}/health/ready")
async def server_ready(registry: RegistryDep) -> Response:
    """At least one model is loaded (503 otherwise; open to anyone)."""
    if not registry.ready:
        raise NotReadyError("no model loaded")
    return _json({"ready": True})


@router.get(PREFIX)
async def server_metadata() -> Response:
    """The server's name, version and protocol extensions."""
    return _json(v2.server_metadata(EXTENSIONS))


def _ready_answer(model: LoadedModel) -> dict[str, Any]:
    return {"name": model.name, "ready": True}


def _model_routes(suffix: str, answer: Callable[[LoadedModel], dict[str, Any]], doc: str) -> None:
    """``GET /v2/models/{name}<suffix>`` and its ``/versions/{version}`` twin, answering
    with ``answer(model)`` for the served model (404 for another name or version)."""

    async def respond(
        dataplane: DataPlane, request: Request, name: str, version: str | None
    ) -> Response:
        model = v2.served_model(dataplane, name, version)
        request.state.model = model.name
        return _json(answer(model))

    async def unversioned(name: str, dataplane: DataPlaneDep, request: Request) -> Response:
        return await respond(dataplane, request, name, None)

    async def versioned(
        name: str, version: str, dataplane: DataPlaneDep, request: Request
    ) -> Response:
        return await respond(dataplane, request, name, version)

    unversioned.__doc__ = doc
    versioned.__doc__ = f"{doc} At the version served (the card's; 404 for another)."
    route = "model" + suffix.replace("/", "_")
    router.add_api_route(f"{PREFIX}/models/{{name}}{suffix}", unversioned, name=route)
    router.add_api_route(
        f"{PREFIX}/models/{{name}}/versions/{{version}}{suffix}",
        versioned,
        name=f"{route}_version",
    )


_model_routes("", v2.model_metadata, "The model's input and outputs, versions, features, classes.")
_model_routes("/ready", _ready_answer, "200 when the model is served, 404 when it is not.")


# ---------------------------------------------------------------------------------------
# Inference


def decode_infer(body: bytes, header_length: str | None) -> tuple[v2.InferRequest, bool]:
    """The request in ``body`` and whether its outputs default to binary data
    (``binary_data_output``). With ``Inference-Header-Content-Length`` the JSON is that
    many bytes, and each input with ``binary_data_size`` takes its bytes, in order, from
    what follows."""
    if header_length is None:
        head, binary = body, b""
    else:
        try:
            length = int(header_length)
        except ValueError:
            length = -1
        if not 0 <= length <= len(body):
            raise MalformedRequestError(
                f"{HEADER_LENGTH}: {header_length[:40]!r} is not a length within the "
                f"body's {len(body)} bytes"
            )
        head, binary = body[:length], body[length:]
    try:
        payload = orjson.loads(head)
    except orjson.JSONDecodeError as exc:
        raise MalformedRequestError(f"body: malformed JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise MalformedRequestError(f"body: expected a JSON object, got {describe(payload)}")
    _only(payload, _REQUEST_FIELDS, "body")
    request_id = payload.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise MalformedRequestError(f"id: expected a string, got {describe(request_id)}")
    parameters = _mapping(payload.get("parameters"), "parameters")
    binary_output = parameters.get("binary_data_output", False)
    if not isinstance(binary_output, bool):
        raise MalformedRequestError(
            f"parameters.binary_data_output: expected true or false, got {describe(binary_output)}"
        )
    inputs = _list(payload.get("inputs"), "inputs")
    if inputs is None:
        raise MalformedRequestError("inputs: missing; the request takes a list of tensors")
    tensors, used = [], 0
    for index, item in enumerate(inputs):
        tensor, used = _input(item, f"inputs[{index}]", binary, used)
        tensors.append(tensor)
    if used != len(binary):
        raise MalformedRequestError(
            f"body: {len(binary) - used} bytes of binary data after the inputs' "
            "binary_data_size" + ("" if header_length is not None else f" (no {HEADER_LENGTH})")
        )
    outputs = _list(payload.get("outputs"), "outputs")
    return (
        v2.InferRequest(
            inputs=tensors,
            id=request_id,
            parameters=parameters,
            outputs=None if outputs is None else [_output(o, i) for i, o in enumerate(outputs)],
        ),
        binary_output,
    )


def _only(item: dict[str, Any], fields: Sequence[str], where: str) -> None:
    unknown = [key for key in item if key not in fields]
    if unknown:
        raise MalformedRequestError(
            f"{where}: unknown field {unknown[0]!r}; the fields are {', '.join(fields)}"
        )


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MalformedRequestError(f"{where}: expected an object, got {describe(value)}")
    return value


def _list(value: Any, where: str) -> list[Any] | None:
    if value is not None and not isinstance(value, list):
        raise MalformedRequestError(f"{where}: expected a list, got {describe(value)}")
    return value


def _input(item: Any, where: str, binary: bytes, used: int) -> tuple[v2.InputTensor, int]:
    if not isinstance(item, dict):
        raise MalformedRequestError(f"{where}: expected a tensor object, got {describe(item)}")
    _only(item, _TENSOR_FIELDS, where)
    for key in ("name", "datatype"):
        if not isinstance(item.get(key), str):
            raise MalformedRequestError(
                f"{where}.{key}: expected a string, got {describe(item.get(key))}"
            )
    if "shape" not in item:
        raise MalformedRequestError(f"{where}.shape: missing")
    size = _mapping(item.get("parameters"), f"{where}.parameters").get("binary_data_size")
    raw = None
    if size is not None:
        if type(size) is not int or size < 0:
            raise MalformedRequestError(
                f"{where}.parameters.binary_data_size: {describe(size)} is not a byte count"
            )
        if used + size > len(binary):
            raise MalformedRequestError(
                f"{where}.parameters.binary_data_size: {size} bytes, but only "
                f"{len(binary) - used} bytes of binary data are left in the body"
            )
        raw, used = binary[used : used + size], used + size
    elif "data" not in item:
        raise MalformedRequestError(f"{where}: no data and no parameters.binary_data_size")
    tensor = v2.InputTensor(
        name=item["name"],
        datatype=item["datatype"],
        shape=item["shape"],
        data=item.get("data"),
        raw=raw,
    )
    return tensor, used


def _output(item: Any, index: int) -> v2.RequestedOutput:
    where = f"outputs[{index}]"
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise MalformedRequestError(
            f"{where}: expected an object with a name, got {describe(item)}"
        )
    _only(item, ("name", "parameters"), where)
    parameters = _mapping(item.get("parameters"), f"{where}.parameters")
    _only(parameters, ("binary_data",), f"{where}.parameters")
    binary = parameters.get("binary_data")
    if binary is not None and not isinstance(binary, bool):
        raise MalformedRequestError(
            f"{where}.parameters.binary_data: expected true or false, got {describe(binary)}"
        )
    return v2.RequestedOutput(item["name"], binary)


def encode_infer(
    response: v2.InferResponse, request: v2.InferRequest, binary_default: bool
) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """The answer's JSON, followed by the bytes of the outputs sent as binary data (with
    the header that says where the JSON ends)."""
    binary_of = {item.name: item.binary for item in request.outputs or ()}
    outputs, blobs = [], []
    for tensor in response.outputs:
        entry: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": tensor.shape,
        }
        binary = binary_of.get(tensor.name)
        if binary if binary is not None else binary_default:
            raw = tensor.raw()
            entry["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            entry["data"] = tensor.data()
        outputs.append(entry)
    head: dict[str, Any] = {
        "model_name": response.model_name,
        "model_version": response.model_version,
    }
    if response.id is not None:
        head["id"] = response.id
    head["parameters"] = response.parameters
    head["outputs"] = outputs
    encoded = orjson.dumps(head)
    if not blobs:
        return encoded, []
    return encoded + b"".join(blobs), [(HEADER_LENGTH.lower().encode(), str(len(encoded)).encode())]


def _check_content_type(header: HeaderGetter) -> None:
    content_type = header("content-type")
    if parse_media_type(content_type)[0] not in _BODY_TYPES:
        raise MalformedRequestError(
            f"Content-Type {content_type!r}: an infer request is JSON ({JSON}, or none), "
            f"or JSON and binary data ({OCTET_STREAM}) with {HEADER_LENGTH}"
        )


async def answered(
    dataplane: DataPlane, name: str, version: str | None, body: bytes, header: HeaderGetter
) -> tuple[bytes, str, list[tuple[bytes, bytes]], str]:
    """The encoded answer to an infer body, its media type and extra headers, and the
    model that answered (for the request metrics). The path is checked before the body:
    an unknown model or version is a 404 whatever the body holds."""
    v2.served_model(dataplane, name, version)
    if len(body) > INLINE_BODY_BYTES:
        return await in_threadpool(_answer_now, dataplane, name, version, body, header)
    request, binary = decode_infer(body, header(HEADER_LENGTH))
    response = await v2.infer(dataplane, name, version, request)
    return _encoded(response, request, binary)


def _answer_now(
    dataplane: DataPlane, name: str, version: str | None, body: bytes, header: HeaderGetter
) -> tuple[bytes, str, list[tuple[bytes, bytes]], str]:
    request, binary = decode_infer(body, header(HEADER_LENGTH))
    return _encoded(v2.infer_now(dataplane, name, version, request), request, binary)


def _encoded(
    response: v2.InferResponse, request: v2.InferRequest, binary: bool
) -> tuple[bytes, str, list[tuple[bytes, bytes]], str]:
    encoded, headers = encode_infer(response, request, binary)
    return encoded, OCTET_STREAM if headers else JSON, headers, response.model_name


async def _routed(request: Request, name: str, version: str | None) -> Response:
    _check_content_type(request.headers.get)
    dataplane = dataplane_of(request.app.state)
    body = await request.body()
    encoded, media_type, headers, model = await answered(
        dataplane, name, version, body, request.headers.get
    )
    request.state.model = model
    response = Response(encoded, media_type=media_type)
    for key, value in headers:
        response.headers[key.decode()] = value.decode()
    return response


@router.post(PREFIX + "/models/{name}/infer")
async def infer(name: str, request: Request) -> Response:
    """Score the ``features`` tensor and answer with the outputs (see the module)."""
    return await _routed(request, name, None)


@router.post(PREFIX + "/models/{name}/versions/{version}/infer")
async def infer_version(name: str, version: str, request: Request) -> Response:
    """As ``/v2/models/{name}/infer``, for the version served (404 for another)."""
    return await _routed(request, name, version)


async def _infer_direct(scope: Scope, receive: Receive) -> DirectAnswer:
    """``infer`` as service.middleware calls it: the same checks in the same order."""
    header = scope_headers(scope)
    _check_content_type(header)
    dataplane = dataplane_of(scope["app"].state)
    body = await read_body(receive)
    params = scope["path_params"]
    encoded, media_type, headers, model = await answered(
        dataplane, params["name"], params.get("version"), body, header
    )
    scope["state"]["model"] = model
    return encoded, media_type, headers


register_direct(infer, _infer_direct)
register_direct(infer_version, _infer_direct)


@router.api_route(
    PREFIX + "/{rest:path}",
    methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
    include_in_schema=False,
)
async def unknown(rest: str, request: Request) -> Response:
    """Any other ``/v2`` path: the protocol's 404 (tritonclient's model repository and
    statistics calls, say), not the service's; a ``/v2`` path with another method is the
    router's 405, as everywhere."""
    path = f"{PREFIX}/{rest}"
    allowed = sorted(
        method
        for route in router.routes
        if isinstance(route, APIRoute) and route.endpoint is not unknown
        if route.path_regex.match(path)
        for method in route.methods
    )
    if allowed:
        raise HTTPException(405, headers={"Allow": ", ".join(allowed)})
    raise NotFoundError(f"no route {request.method} {path}")
