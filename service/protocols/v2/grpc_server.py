"""The Open Inference Protocol (KServe V2) over gRPC: ``inference.GRPCInferenceService``.

gRPC only: a protobuf request becomes a :class:`~service.protocols.v2.tensors.InferRequest`,
the protocol-neutral core runs it through the data plane, and the answer goes back as a
``ModelInferResponse``. The messages and service stubs are Triton's published ones
(``tritonclient.grpc.service_pb2``, package ``inference``: a superset of the Open Inference
Protocol's ``grpc_predict_v2.proto``, the same messages on the wire), a pinned dependency of
the serving role, so that no generated code is kept here.

- Served by ``grpc.aio`` on the event loop of the ``serve`` process (each worker's), on
  ``COSTAWARE_GRPC_PORT`` (off unless set), started and stopped in the app's lifespan:
  the same registry, data plane, batch scoring and metrics as the REST paths. With several
  workers each binds the port with SO_REUSEPORT (gRPC's default on Linux) and the kernel
  spreads the connections.
- API keys: ``authorization: Bearer <key>`` metadata, under the same rules as REST: each
  method is checked as its REST twin's path (``ModelInfer`` as
  ``/v2/models/{name}/infer``), so ServerLive and ServerReady are open like
  ``/v2/health/*``.
- Refusals: the same message as REST's ``{"error": ...}``, with the gRPC status code of
  REST's status (400 INVALID_ARGUMENT, 401 UNAUTHENTICATED, 403 PERMISSION_DENIED, 404
  NOT_FOUND, 413 RESOURCE_EXHAUSTED, 503 UNAVAILABLE). A message larger than
  ``COSTAWARE_MAX_BODY_BYTES`` is refused by gRPC itself (RESOURCE_EXHAUSTED).
- Tensors: typed ``contents`` or ``raw_input_contents`` (what tritonclient sends); the
  answer holds its outputs in ``raw_output_contents`` when the request sent raw inputs,
  else in typed ``contents``.
- Metrics: each call is counted and timed as a request with endpoint the method's path
  (``/inference.GRPCInferenceService/ModelInfer``) and status REST's status for the same
  answer (200 when answered).

ModelMetadataResponse has no ``parameters`` field in the protocol's ``.proto``: the card's
feature names and classes are given by REST's ``GET /v2/models/{name}`` only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import grpc
from grpc import aio
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from service.errors import InvalidInputError, MalformedRequestError, NotFoundError, ServiceError
from service.protocols.v2 import tensors as v2
from service.routes.common import INLINE_BODY_BYTES, dataplane_of, in_threadpool
from service.settings import Settings

log = logging.getLogger(__name__)

SERVICE_NAME = "inference.GRPCInferenceService"
# The extensions this server implements (ServerMetadata): none of the protocol's named
# ones (binary_tensor_data is REST's; gRPC has raw contents in the protocol itself).
EXTENSIONS: tuple[str, ...] = ()

_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
}

# The typed contents field that holds each datatype's values.
_CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}

Reply = TypeVar("Reply")


def status_code(error: ServiceError) -> grpc.StatusCode:
    """The gRPC status of a refusal: the code of the status REST answers it with."""
    return _CODES.get(v2.protocol_status(error), grpc.StatusCode.INVALID_ARGUMENT)


# ---------------------------------------------------------------------------------------
# Messages <-> the core


def parameter_value(key: str, parameter: pb.InferParameter, where: str) -> Any:
    choice = parameter.WhichOneof("parameter_choice")
    if choice is None:
        raise InvalidInputError(f"{where}.{key}: no value set")
    return getattr(parameter, choice)


def set_parameter(parameter: pb.InferParameter, value: Any) -> None:
    # bool before int: a bool is an int in Python.
    if isinstance(value, bool):
        parameter.bool_param = value
    elif isinstance(value, int):
        parameter.int64_param = value
    elif isinstance(value, float):
        parameter.double_param = value
    else:
        parameter.string_param = str(value)


def infer_request(message: pb.ModelInferRequest) -> v2.InferRequest:
    """The core's request for ``message``: each input's typed contents or its raw bytes
    (``raw_input_contents``, in the inputs' order)."""
    raw = message.raw_input_contents
    if raw and len(raw) != len(message.inputs):
        raise MalformedRequestError(
            f"raw_input_contents: {len(raw)} entries for {len(message.inputs)} inputs; "
            "give one per input, in the inputs' order"
        )
    inputs = []
    for index, tensor in enumerate(message.inputs):
        where = f"inputs[{index}] ({tensor.name!r})"
        has_contents = tensor.HasField("contents")
        if raw and has_contents:
            raise MalformedRequestError(
                f"{where}: both contents and raw_input_contents given; send one"
            )
        data = None
        if not raw and tensor.datatype == "FP16":
            raise MalformedRequestError(
                f"{where}: FP16 has no typed contents in the protocol; send it as "
                "raw_input_contents"
            )
        if not raw:
            field = _CONTENTS.get(tensor.datatype)
            # An unknown or refused datatype is named by the core; its data is not read.
            data = list(getattr(tensor.contents, field)) if field else []
        inputs.append(
            v2.InputTensor(
                name=tensor.name,
                datatype=tensor.datatype,
                shape=list(tensor.shape),
                data=data,
                raw=raw[index] if raw else None,
            )
        )
    parameters = {
        key: parameter_value(key, value, "parameters") for key, value in message.parameters.items()
    }
    outputs = [v2.RequestedOutput(output.name) for output in message.outputs]
    return v2.InferRequest(
        inputs=inputs,
        id=message.id or None,
        parameters=parameters,
        outputs=outputs or None,
    )


def infer_response(response: v2.InferResponse, raw: bool) -> pb.ModelInferResponse:
    """The protobuf answer: outputs as raw bytes (``raw``) or typed contents."""
    message = pb.ModelInferResponse(
        model_name=response.model_name,
        model_version=response.model_version,
        id=response.id or "",
    )
    for key, value in response.parameters.items():
        if value is not None:
            set_parameter(message.parameters[key], value)
    for tensor in response.outputs:
        output = message.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
        if raw:
            message.raw_output_contents.append(tensor.raw())
            continue
        values = tensor.values
        items = (
            [text.encode() for text in values]
            if isinstance(values, list)
            else values.reshape(-1).tolist()
        )
        getattr(output.contents, _CONTENTS[tensor.datatype]).extend(items)
    return message


def model_metadata(metadata: Mapping[str, Any]) -> pb.ModelMetadataResponse:
    tensor = pb.ModelMetadataResponse.TensorMetadata
    return pb.ModelMetadataResponse(
        name=metadata["name"],
        versions=metadata["versions"],
        platform=metadata["platform"],
        inputs=[tensor(**item) for item in metadata["inputs"]],
        outputs=[tensor(**item) for item in metadata["outputs"]],
    )


# ---------------------------------------------------------------------------------------
# The service


class InferenceService(pb_grpc.GRPCInferenceServiceServicer):
    """The six RPCs over the app's state (registry, data plane, keys, metrics)."""

    def __init__(self, state: Any) -> None:
        self.state = state

    async def _call(
        self,
        method: str,
        rest_path: str,
        context: aio.ServicerContext,
        answer: Callable[[], Awaitable[tuple[Reply, str]]],
    ) -> Reply:
        """Check the key as REST checks ``rest_path``, answer, count the call; a refusal
        ends the call with its status code and message."""
        start = time.perf_counter()
        status, model = 200, ""
        try:
            headers = [
                (key.encode("latin-1"), value.encode("latin-1"))
                for key, value in context.invocation_metadata() or ()
                if isinstance(value, str)
            ]
            refusal = self.state.keys.refusal({"path": rest_path, "headers": headers})
            if refusal is not None:
                raise refusal
            reply, model = await answer()
            return reply
        except ServiceError as error:
            status = v2.protocol_status(error)
            await context.abort(status_code(error), error.detail)
        except Exception:
            status = 500
            log.exception("gRPC %s failed", method)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error (see the server log)")
        finally:
            self.state.metrics.observe_request(
                f"/{SERVICE_NAME}/{method}", model, status, time.perf_counter() - start
            )

    async def ServerLive(  # noqa: N802 - the protocol's method names
        self, request: pb.ServerLiveRequest, context: aio.ServicerContext
    ) -> pb.ServerLiveResponse:
        async def answer() -> tuple[pb.ServerLiveResponse, str]:
            return pb.ServerLiveResponse(live=True), ""

        return await self._call("ServerLive", "/v2/health/live", context, answer)

    async def ServerReady(  # noqa: N802
        self, request: pb.ServerReadyRequest, context: aio.ServicerContext
    ) -> pb.ServerReadyResponse:
        async def answer() -> tuple[pb.ServerReadyResponse, str]:
            registry = self.state.registry
            return pb.ServerReadyResponse(ready=registry is not None and registry.ready), ""

        return await self._call("ServerReady", "/v2/health/ready", context, answer)

    async def ServerMetadata(  # noqa: N802
        self, request: pb.ServerMetadataRequest, context: aio.ServicerContext
    ) -> pb.ServerMetadataResponse:
        async def answer() -> tuple[pb.ServerMetadataResponse, str]:
            return pb.ServerMetadataResponse(**v2.server_metadata(EXTENSIONS)), ""

        return await self._call("ServerMetadata", "/v2", context, answer)

    async def ModelReady(  # noqa: N802
        self, request: pb.ModelReadyRequest, context: aio.ServicerContext
    ) -> pb.ModelReadyResponse:
        """Ready for the served model (at its version); not ready for another name or
        version (REST answers 404, which tritonclient's HTTP client reads as not ready:
        a readiness probe answers yes or no)."""

        async def answer() -> tuple[pb.ModelReadyResponse, str]:
            dataplane = dataplane_of(self.state)
            try:
                model = v2.served_model(dataplane, request.name, request.version or None)
            except NotFoundError:
                return pb.ModelReadyResponse(ready=False), ""
            return pb.ModelReadyResponse(ready=True), model.name

        path = f"/v2/models/{request.name}/ready"
        return await self._call("ModelReady", path, context, answer)

    async def ModelMetadata(  # noqa: N802
        self, request: pb.ModelMetadataRequest, context: aio.ServicerContext
    ) -> pb.ModelMetadataResponse:
        async def answer() -> tuple[pb.ModelMetadataResponse, str]:
            dataplane = dataplane_of(self.state)
            model = v2.served_model(dataplane, request.name, request.version or None)
            return model_metadata(v2.model_metadata(model)), model.name

        return await self._call("ModelMetadata", f"/v2/models/{request.name}", context, answer)

    async def ModelInfer(  # noqa: N802
        self, request: pb.ModelInferRequest, context: aio.ServicerContext
    ) -> pb.ModelInferResponse:
        async def answer() -> tuple[pb.ModelInferResponse, str]:
            dataplane = dataplane_of(self.state)
            name, version = request.model_name, request.model_version or None
            # The model is checked first: an unknown model or version is NOT_FOUND
            # whatever the tensors hold (as REST's 404).
            v2.served_model(dataplane, name, version)
            raw = bool(request.raw_input_contents)
            if request.ByteSize() > INLINE_BODY_BYTES:  # a large request off the loop
                return await in_threadpool(_infer_now, dataplane, name, version, request, raw)
            found = await v2.infer(dataplane, name, version, infer_request(request))
            return infer_response(found, raw), found.model_name

        return await self._call(
            "ModelInfer", f"/v2/models/{request.model_name}/infer", context, answer
        )


def _infer_now(
    dataplane: Any, name: str, version: str | None, request: pb.ModelInferRequest, raw: bool
) -> tuple[pb.ModelInferResponse, str]:
    found = v2.infer_now(dataplane, name, version, infer_request(request))
    return infer_response(found, raw), found.model_name


# ---------------------------------------------------------------------------------------
# The server


def address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def start(state: Any, settings: Settings) -> aio.Server:
    """Serve the protocol on ``settings.grpc_port`` on the running event loop."""
    assert settings.grpc_port is not None
    limit = settings.max_body_bytes
    server = aio.server(
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", max(limit, 64 * 1024 * 1024)),
        ]
    )
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceService(state), server)
    where = address(settings.host, settings.grpc_port)
    try:
        server.add_insecure_port(where)
    except RuntimeError as exc:
        raise RuntimeError(f"COSTAWARE_GRPC_PORT: cannot listen on {where}: {exc}") from None
    await server.start()
    log.info("serving the Open Inference Protocol over gRPC on %s", where)
    return server


async def stop(server: aio.Server | None, grace_seconds: float) -> None:
    """Stop accepting calls and give those in flight ``grace_seconds`` to finish."""
    if server is not None:
        await server.stop(grace_seconds)
