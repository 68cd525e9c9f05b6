"""The Open Inference Protocol's (KServe V2) core, shared by its REST and gRPC servers.

Plain Python and numpy, no HTTP and no protobuf: an adapter turns its wire format into an
:class:`InferRequest` (tensors with their JSON ``data`` or ``raw`` little-endian bytes),
and :func:`infer` decodes it into the data plane's
:class:`~service.dataplane.PredictInputs`, runs the data plane and turns its answer into
an :class:`InferResponse` of :class:`OutputTensor` (which give their values as JSON data
or as raw bytes). Model and server metadata are dicts in the protocol's field names.

Refusals are the data plane's :class:`~service.errors.ServiceError`; the message names the
tensor and the element, and :func:`protocol_status` is the status the protocol answers
with (400, 404, 503; 401, 403 and 413 as elsewhere in the service).

The tensors (docs/PROTOCOLS.md):

- input ``features``: ``[N, F]`` in the card's feature order, FP32 (FP16, FP64, INT* and
  UINT* accepted too; BOOL and BYTES refused); the values pass the same checks as
  ``/predict``'s instances (finite, within float32), errors naming row, column and feature.
- outputs (binary): ``score`` FP32 ``[N, 1]`` as the graph gives it, ``probability`` (a
  calibrated model), ``label`` and ``close_confusion`` BOOL ``[N]``, ``out_of_range``
  BYTES ``[N]`` (the features outside the training range, ``;``-joined, as in the CSV
  answer; a card with training ranges), and deciding under a cost matrix ``decision``
  INT64 ``[N]`` and ``expected_values`` FP64 ``[N, 2]``.
- outputs (multiclass): ``probabilities`` FP32 ``[N, K]`` (what the decision is taken on),
  ``scores`` (the raw output of a calibrated model), ``decision`` BYTES ``[N]`` (class
  names), ``expected_values`` FP64 ``[N, K]``, ``close_confusion``, ``out_of_range``.
- request parameters: ``threshold``, ``margin``, ``on_out_of_range`` and a binary cost
  matrix as ``cost_tp``, ``cost_fp``, ``cost_tn``, ``cost_fn``; answer parameters:
  ``version``, ``calibrated``, ``threshold``, ``margin`` (and ``cost_matrix``: where the
  matrix came from, when deciding by expected value).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import numpy as np

from service.codecs import margin_value, on_out_of_range, score_text, unit_interval
from service.dataplane import DataPlane, PredictInputs, Predictions
from service.errors import InvalidInputError, NotFoundError, ServiceError
from service.registry import LoadedModel
from service.schemas import describe
from service.valuation import ValuedPredictions

SERVER_NAME = "costaware"
PLATFORM = "onnxruntime_onnx"  # Triton's name for a model run by onnxruntime
INPUT_NAME = "features"

# The numeric datatypes a features tensor may have, as little-endian numpy types (the
# binary tensor data of the protocol is little-endian).
NUMERIC_DATATYPES: dict[str, np.dtype] = {
    name: np.dtype(code)
    for name, code in {
        "FP16": "<f2",
        "FP32": "<f4",
        "FP64": "<f8",
        "INT8": "i1",
        "INT16": "<i2",
        "INT32": "<i4",
        "INT64": "<i8",
        "UINT8": "u1",
        "UINT16": "<u2",
        "UINT32": "<u4",
        "UINT64": "<u8",
    }.items()
}
_REFUSED_DATATYPES = {
    "BOOL": "true/false is not a feature value",
    "BYTES": "strings are not feature values",
    "BF16": "bfloat16 is not supported",
}
_OUTPUT_DTYPES = {"FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"), "INT64": np.dtype("<i8")}

# Request parameters this service reads, and those of the protocol and its clients that
# it accepts and ignores (tritonclient sends binary_data_output; MLServer's content_type).
COST_PARAMETERS = {"cost_tp": "tp", "cost_fp": "fp", "cost_tn": "tn", "cost_fn": "fn"}
REQUEST_PARAMETERS = ("threshold", "margin", "on_out_of_range", *COST_PARAMETERS)
IGNORED_PARAMETERS = frozenset(
    {
        "binary_data_output",
        "content_type",
        "headers",
        "priority",
        "timeout",
        "sequence_id",
        "sequence_start",
        "sequence_end",
    }
)
_NO_PARAMETERS: Mapping[str, Any] = {}


@dataclass(frozen=True)
class InputTensor:
    """One request input: ``data`` (JSON: flat or nested, row-major) or ``raw`` bytes
    (the binary tensor data extension, gRPC's ``raw_input_contents``)."""

    name: str
    datatype: str
    shape: Sequence[int]
    data: Any = None
    raw: bytes | None = None


@dataclass(frozen=True)
class RequestedOutput:
    """An output the client asked for; ``binary`` is the REST binary extension's choice
    (None: the request's default), which the core does not read."""

    name: str
    binary: bool | None = None


@dataclass(frozen=True)
class InferRequest:
    inputs: Sequence[InputTensor]
    id: str | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)
    # None: every output of the answer.
    outputs: Sequence[RequestedOutput] | None = None


@dataclass(frozen=True)
class OutputTensor:
    """One answer output: ``values`` an array of ``datatype`` (BOOL a bool array), or for
    BYTES a list of strings."""

    name: str
    datatype: str
    shape: list[int]
    values: np.ndarray | list[str]

    def data(self) -> list[Any]:
        """The values as the JSON ``data`` (flat, row-major); a float32 value as the
        shortest decimal that converts back to it, as ``/predict`` shows scores."""
        values = self.values
        if isinstance(values, list):
            return values
        flat = values.reshape(-1)
        if self.datatype == "FP32":
            return [float(text) for text in score_text(flat)]
        return flat.tolist()

    def raw(self) -> bytes:
        """The values as the protocol's binary data: little-endian, BOOL one byte each,
        BYTES each element as a 4-byte little-endian length and its UTF-8 bytes."""
        values = self.values
        if isinstance(values, list):
            encoded = [text.encode() for text in values]
            return b"".join(struct.pack("<I", len(item)) + item for item in encoded)
        if self.datatype == "BOOL":
            return np.ascontiguousarray(values, dtype=np.bool_).tobytes()
        return np.ascontiguousarray(values, dtype=_OUTPUT_DTYPES[self.datatype]).tobytes()


@dataclass(frozen=True)
class InferResponse:
    model_name: str
    model_version: str
    id: str | None
    parameters: dict[str, Any]
    outputs: list[OutputTensor]


def protocol_status(error: ServiceError) -> int:
    """The status the protocol answers a refusal with: 404 (no such model or version),
    503 (not ready), the service's 401, 403 and 413, and 400 for any other bad request
    (the service's 422s: the protocol has no such status)."""
    return error.status if error.status in (401, 403, 404, 413, 503) else 400


# ---------------------------------------------------------------------------------------
# Metadata


def server_metadata(extensions: Sequence[str] = ()) -> dict[str, Any]:
    """``GET /v2`` (ServerMetadata): the server's name, version and protocol extensions."""
    try:
        version = metadata.version(SERVER_NAME)
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        version = "unknown"
    return {"name": SERVER_NAME, "version": version, "extensions": list(extensions)}


def served_model(dataplane: DataPlane, name: str, version: str | None = None) -> LoadedModel:
    """The served model ``name``, at ``version`` when one is asked for (the card's
    version: one version of a model is served at a time); NotFoundError otherwise."""
    model = dataplane.model(name)
    if version is not None and version != model.card.version:
        raise NotFoundError(
            f"model {name!r} has no version {version!r}: it serves version {model.card.version!r}"
        )
    return model


# The output holding each instance's prediction id (docs/REALIZED.md): generated per
# instance (UUIDv7), not derived from the request's ``id``, which V2 clients reuse freely
# ("1", "bench") and which would then collide in the decision log.
PREDICTION_ID = "prediction_id"


def _tensor(name: str, datatype: str, shape: list[int]) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape}


def output_metadata(model: LoadedModel) -> list[dict[str, Any]]:
    """Every output the model's answers can carry (some only with a cost matrix, or
    when calibrated, or when the card records training ranges; see the module)."""
    if model.multiclass:
        k = len(model.card.classes)
        outputs = [_tensor("probabilities", "FP32", [-1, k])]
        if model.calibrated:
            outputs.append(_tensor("scores", "FP32", [-1, k]))
        outputs += [
            _tensor("decision", "BYTES", [-1]),
            _tensor("expected_values", "FP64", [-1, k]),
        ]
    else:
        outputs = [_tensor("score", "FP32", [-1, 1])]
        if model.calibrated:
            outputs.append(_tensor("probability", "FP32", [-1, 1]))
        outputs += [
            _tensor("label", "BOOL", [-1]),
            _tensor("decision", "INT64", [-1]),
            _tensor("expected_values", "FP64", [-1, 2]),
        ]
    outputs.append(_tensor("close_confusion", "BOOL", [-1]))
    if model.card.feature_ranges is not None:
        outputs.append(_tensor("out_of_range", "BYTES", [-1]))
    outputs.append(_tensor(PREDICTION_ID, "BYTES", [-1]))
    return outputs


def model_metadata(model: LoadedModel) -> dict[str, Any]:
    """``GET /v2/models/{name}`` (ModelMetadata). ``parameters`` holds the card's feature
    names (the input's column order) and classes, which gRPC, whose parameters are
    scalars, has to carry as JSON text."""
    card = model.card
    parameters: dict[str, Any] = {
        "task": "multiclass" if model.multiclass else "binary",
        "features": list(card.features),
        "classes": list(getattr(card, "classes", ["0", "1"])),
        "calibrated": model.calibrated,
        "margin": card.margin,
    }
    if not model.multiclass:
        parameters["threshold"] = card.threshold
    return {
        "name": model.name,
        "versions": [card.version],
        "platform": PLATFORM,
        "inputs": [_tensor(INPUT_NAME, "FP32", [-1, model.n_features])],
        "outputs": output_metadata(model),
        "parameters": parameters,
    }


# ---------------------------------------------------------------------------------------
# Requests


async def infer(
    dataplane: DataPlane, name: str, version: str | None, request: InferRequest
) -> InferResponse:
    """Answer an infer request for model ``name`` (at ``version``) through the data plane
    (the scoring call shared with the other requests of this event-loop turn)."""
    model = served_model(dataplane, name, version)
    inputs = predict_inputs(request, model)
    return infer_response(await dataplane.predict(inputs), request)


def infer_now(
    dataplane: DataPlane, name: str, version: str | None, request: InferRequest
) -> InferResponse:
    """:func:`infer` with a scoring call of its own, for a caller off the event loop."""
    model = served_model(dataplane, name, version)
    inputs = predict_inputs(request, model)
    return infer_response(dataplane.predict_now(inputs), request)


def predict_inputs(request: InferRequest, model: LoadedModel) -> PredictInputs:
    """The data plane's inputs for ``request`` to ``model``: its parameters checked, its
    ``features`` tensor as rows, its requested outputs checked against what the answer
    will hold."""
    parameters = request.parameters or _NO_PARAMETERS
    if not isinstance(parameters, Mapping):
        raise InvalidInputError(f"parameters: expected an object, got {describe(parameters)}")
    read = (*REQUEST_PARAMETERS, *IGNORED_PARAMETERS)
    unknown = sorted(key for key in parameters if key not in read)
    if unknown:
        raise InvalidInputError(
            f"parameters: unknown parameter {unknown[0]!r}; this service reads "
            + ", ".join(REQUEST_PARAMETERS)
        )
    threshold = parameters.get("threshold")
    if isinstance(threshold, str):
        # unit_interval reads text (the SageMaker header's); a V2 parameter is a number.
        raise InvalidInputError(f"parameters.threshold: {describe(threshold)} is not a number")
    margin = parameters.get("margin")
    cost_matrix = _cost_matrix(parameters, model)
    valued = model.multiclass or cost_matrix is not None
    check_requested_outputs(request.outputs, model, valued)
    where, rows = feature_rows(request.inputs, model)
    return PredictInputs(
        instances=rows,
        model=model.name,
        threshold=None if threshold is None else unit_interval(threshold, "parameters.threshold"),
        margin=None if margin is None else margin_value(margin, "parameters.margin"),
        on_out_of_range=on_out_of_range(  # type: ignore[arg-type]
            parameters.get("on_out_of_range"), "parameters"
        ),
        cost_matrix=cost_matrix,
        source=where,
        fields="parameters.",
    )


def _cost_matrix(parameters: Mapping[str, Any], model: LoadedModel) -> dict[str, float] | None:
    given = [key for key in COST_PARAMETERS if key in parameters]
    if not given:
        return None
    if model.multiclass:
        raise InvalidInputError(
            f"parameters.{given[0]}: model {model.name!r} is multiclass; it decides under "
            "its card's value matrix (a binary cost matrix does not apply)"
        )
    missing = [key for key in COST_PARAMETERS if key not in parameters]
    if missing:
        raise InvalidInputError(
            f"parameters.{missing[0]}: missing; a cost matrix takes all four of "
            + ", ".join(COST_PARAMETERS)
        )
    matrix = {}
    for key, outcome in COST_PARAMETERS.items():
        value = parameters[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidInputError(f"parameters.{key}: {describe(value)} is not a number")
        if not math.isfinite(value):
            raise InvalidInputError(f"parameters.{key}: {value} is not a finite number")
        matrix[outcome] = float(value)
    return matrix


def feature_rows(inputs: Sequence[InputTensor], model: LoadedModel) -> tuple[str, list[Any]]:
    """The ``features`` tensor of ``inputs`` as rows of Python numbers (the data plane
    checks each value and names it), with how errors name the tensor."""
    if not inputs:
        raise InvalidInputError(
            f"inputs: empty; model {model.name!r} takes one input {INPUT_NAME!r} "
            f"FP32 [-1, {model.n_features}]"
        )
    found = None
    for index, tensor in enumerate(inputs):
        if tensor.name != INPUT_NAME:
            raise InvalidInputError(
                f"inputs[{index}] ({tensor.name!r}): model {model.name!r} has no such "
                f"input; it takes one input {INPUT_NAME!r} FP32 [-1, {model.n_features}]"
            )
        if found is not None:
            raise InvalidInputError(
                f"inputs[{index}] ({INPUT_NAME!r}): given twice (also inputs[{found}])"
            )
        found = index
    assert found is not None
    # Errors name an element as ``input 'features'[row][column] (feature)``.
    where = f"input {INPUT_NAME!r}"
    return where, _rows(inputs[found], where, model.n_features)


def _rows(tensor: InputTensor, where: str, width: int) -> list[Any]:
    datatype = tensor.datatype
    dtype = NUMERIC_DATATYPES.get(datatype) if isinstance(datatype, str) else None
    if dtype is None:
        why = _REFUSED_DATATYPES.get(datatype) if isinstance(datatype, str) else None
        raise InvalidInputError(
            f"{where}: datatype {describe(datatype)} is refused"
            + (f" ({why})" if why else "")
            + "; features are numbers: "
            + ", ".join(NUMERIC_DATATYPES)
        )
    n = _check_shape(tensor.shape, where, width)
    count = n * width
    if tensor.raw is not None:
        if tensor.data is not None:
            raise InvalidInputError(f"{where}: both data and binary data given; send one")
        expected = count * dtype.itemsize
        if len(tensor.raw) != expected:
            raise InvalidInputError(
                f"{where}: {len(tensor.raw)} bytes of binary data, but shape [{n}, {width}] "
                f"of {datatype} takes {expected} bytes"
            )
        return np.frombuffer(tensor.raw, dtype=dtype).reshape(n, width).tolist()
    rows = _data_rows(tensor.data, where, n, width)
    if dtype.kind in "iu":
        _check_integers(rows, where, datatype, dtype)
    return rows


def _check_shape(shape: Any, where: str, width: int) -> int:
    """The number of rows of a ``[N, width]`` shape, or an error saying what it is."""
    if (
        not isinstance(shape, Sequence)
        or isinstance(shape, str)
        or not all(type(dim) is int and dim >= 0 for dim in shape)
    ):
        raise InvalidInputError(
            f"{where}: shape {describe(shape)} is not a list of non-negative integers"
        )
    if len(shape) != 2 or shape[1] != width:
        raise InvalidInputError(
            f"{where}: shape {list(shape)}; the model takes [N, {width}] (N instances of "
            f"{width} features)"
        )
    return shape[0]


def _data_rows(data: Any, where: str, n: int, width: int) -> list[Any]:
    """Row-major ``data``, flat or nested, as ``n`` rows of ``width`` values; the number
    of elements must be the shape's."""
    if not isinstance(data, list):
        raise InvalidInputError(
            f"{where}: data must be a list of values (or binary data), got {describe(data)}"
        )
    # The usual forms first: nested [N][F], or flat [N * F] of values.
    if len(data) == n and all(type(row) is list and len(row) == width for row in data):
        return data
    if len(data) == n * width and not any(type(value) is list for value in data):
        return [data[r * width : (r + 1) * width] for r in range(n)]
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for value in stack[-1]:
            if type(value) is list:
                stack.append(iter(value))
                break
            flat.append(value)
        else:
            stack.pop()
    if len(flat) != n * width:
        raise InvalidInputError(
            f"{where}: data holds {len(flat)} elements, but shape [{n}, {width}] has {n * width}"
        )
    return [flat[r * width : (r + 1) * width] for r in range(n)]


def _check_integers(rows: list[Any], where: str, datatype: str, dtype: np.dtype) -> None:
    info = np.iinfo(dtype)
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            # JSON has one number type: 868.0 is an integer (as JSON Schema has it).
            integral = type(value) is int or (type(value) is float and value.is_integer())
            if not integral or not info.min <= value <= info.max:
                raise InvalidInputError(
                    f"{where}[{r}][{c}]: {describe(value)} is not a {datatype} value "
                    f"(an integer in [{info.min}, {info.max}])"
                )


# ---------------------------------------------------------------------------------------
# Answers


def available_outputs(
    multiclass: bool, calibrated: bool, has_ranges: bool, valued: bool
) -> list[str]:
    """The outputs an answer holds: for a multiclass model or not, calibrated or not, with
    a card that records training ranges or not, deciding by expected value or not."""
    if multiclass:
        names = ["probabilities", *(["scores"] if calibrated else []), "decision"]
        names.append("expected_values")
    else:
        names = ["score", *(["probability"] if calibrated else []), "label"]
        if valued:
            names += ["decision", "expected_values"]
    names.append("close_confusion")
    if has_ranges:
        names.append("out_of_range")
    names.append(PREDICTION_ID)
    return names


def _available(model: LoadedModel, valued: bool) -> list[str]:
    has_ranges = model.card.feature_ranges is not None
    return available_outputs(model.multiclass, model.calibrated, has_ranges, valued)


def check_requested_outputs(
    outputs: Sequence[RequestedOutput] | None, model: LoadedModel, valued: bool
) -> None:
    """Every requested output is one the answer will hold, each asked for once."""
    if outputs is None:
        return
    available = _available(model, valued)
    seen: set[str] = set()
    for index, output in enumerate(outputs):
        name = output.name
        if name not in available:
            known = {item["name"] for item in output_metadata(model)}
            why = (
                "it is given only when deciding under a cost matrix (parameters "
                + ", ".join(COST_PARAMETERS)
                + ")"
                if name in known
                else f"model {model.name!r} has no such output"
            )
            raise InvalidInputError(
                f"outputs[{index}] ({describe(name)}): {why}; this answer holds "
                + ", ".join(available)
            )
        if name in seen:
            raise InvalidInputError(f"outputs[{index}] ({name!r}): asked for twice")
        seen.add(name)


def _column(values: np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=np.float32).reshape(-1, 1)


def _out_of_range(found: Predictions | ValuedPredictions) -> list[str]:
    return [";".join(found.out_of_range_of(index) or []) for index in range(len(found))]


def _binary_outputs(
    built: dict[str, Callable[[], OutputTensor]],
    scores: np.ndarray,
    probability: np.ndarray | None,
    labels: list[bool],
) -> None:
    """A binary answer's ``score``, ``probability`` (calibrated) and ``label``."""
    n = len(labels)
    built["score"] = lambda: OutputTensor("score", "FP32", [n, 1], _column(scores))
    if probability is not None:
        built["probability"] = lambda: OutputTensor(
            "probability", "FP32", [n, 1], _column(probability)
        )
    built["label"] = lambda: OutputTensor("label", "BOOL", [n], np.array(labels, dtype=np.bool_))


def _outputs(found: Predictions | ValuedPredictions) -> dict[str, Callable[[], OutputTensor]]:
    """Each output of the answer by name, built only when asked for."""
    n = len(found)
    built: dict[str, Callable[[], OutputTensor]] = {}
    if isinstance(found, ValuedPredictions):
        k = len(found.classes)
        if found.multiclass:
            decided = found.outputs if found.calibrated is None else found.calibrated
            built["probabilities"] = lambda: OutputTensor(
                "probabilities", "FP32", [n, k], np.asarray(decided, dtype=np.float32)
            )
            if found.calibrated is not None:
                built["scores"] = lambda: OutputTensor(
                    "scores", "FP32", [n, k], np.asarray(found.outputs, dtype=np.float32)
                )
            built["decision"] = lambda: OutputTensor(
                "decision", "BYTES", [n], [found.classes[d] for d in found.decisions]
            )
        else:
            _binary_outputs(built, found.outputs, found.calibrated, found.labels)
            built["decision"] = lambda: OutputTensor(
                "decision", "INT64", [n], np.array(found.decisions, dtype=np.int64)
            )
        built["expected_values"] = lambda: OutputTensor(
            "expected_values", "FP64", [n, k], np.asarray(found.expected_values, np.float64)
        )
    else:
        _binary_outputs(built, found.scores, found.probability, found.labels)
    built["close_confusion"] = lambda: OutputTensor(
        "close_confusion", "BOOL", [n], np.array(found.close, dtype=np.bool_)
    )
    if found.out_of_range is not None:
        built["out_of_range"] = lambda: OutputTensor(
            "out_of_range", "BYTES", [n], _out_of_range(found)
        )
    # Each instance's prediction id (the decision log's key; POST /outcomes takes it back).
    built[PREDICTION_ID] = lambda: OutputTensor(PREDICTION_ID, "BYTES", [n], list(found.ids or ()))
    return built


def answer_parameters(found: Predictions | ValuedPredictions) -> dict[str, Any]:
    """The answer's parameters: the version that answered (a replaced model's new one),
    whether it is calibrated, and the threshold and margin decided with."""
    if isinstance(found, ValuedPredictions):
        parameters: dict[str, Any] = {
            "version": found.version,
            "calibrated": found.calibrated is not None,
            "cost_matrix": found.matrix_source,
        }
        # None: each instance has its own default margin (a per-instance cost matrix).
        if found.margin is not None:
            parameters["margin"] = found.margin
        return parameters
    return {
        "version": found.version,
        "calibrated": found.calibrated,
        "threshold": found.threshold,
        "margin": found.margin,
    }


def infer_response(found: Predictions | ValuedPredictions, request: InferRequest) -> InferResponse:
    """The data plane's answer as V2 outputs: every output, or those requested in the
    order requested (checked by :func:`check_requested_outputs` before scoring)."""
    built = _outputs(found)
    names = list(built) if request.outputs is None else [item.name for item in request.outputs]
    return InferResponse(
        model_name=found.model,
        model_version=found.version,
        id=request.id,
        parameters=answer_parameters(found),
        outputs=[built[name]() for name in names],
    )
