"""The one thing the service reads in an ONNX graph's protobuf itself: which tensors keep
their data in an external file.

onnxruntime resolves a tensor's external ``location`` against the model's path, and a
graph given as bytes (as the registry gives it, so that the checked bytes are the bytes
loaded) has none: it then reads the file relative to the server's working directory
(onnxruntime 1.31 does so unless a graph optimizer touches the tensor first). A served
graph is one checked file, so such graphs are refused before onnxruntime sees them. The
``onnx`` package is a training dependency, not a serving one; the protobuf wire format is
walked here instead, following only the fields that can hold a tensor (field numbers from
onnx.proto, checked against the ``onnx`` package in tests/service/test_onnxproto.py).
"""

from __future__ import annotations

from collections.abc import Iterator

# Message kinds, and for each the fields that hold (messages holding) tensors.
MODEL, GRAPH, NODE, ATTRIBUTE, FUNCTION, TRAINING, SPARSE, TENSOR = range(8)
CHILDREN: dict[int, dict[int, int]] = {
    MODEL: {7: GRAPH, 20: TRAINING, 25: FUNCTION},  # graph, training_info, functions
    TRAINING: {1: GRAPH, 2: GRAPH},  # initialization, algorithm
    GRAPH: {1: NODE, 5: TENSOR, 15: SPARSE},  # node, initializer, sparse_initializer
    NODE: {5: ATTRIBUTE},
    FUNCTION: {7: NODE, 11: ATTRIBUTE},  # node, attribute_proto
    # t, g, tensors, graphs, sparse_tensor, sparse_tensors
    ATTRIBUTE: {5: TENSOR, 6: GRAPH, 10: TENSOR, 11: GRAPH, 22: SPARSE, 23: SPARSE},
    SPARSE: {1: TENSOR, 2: TENSOR},  # values, indices
    TENSOR: {},
}
TENSOR_NAME, TENSOR_EXTERNAL_DATA, TENSOR_DATA_LOCATION = 8, 13, 14
EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL


class MalformedGraphError(ValueError):
    """Bytes that are not a protobuf message (onnxruntime would refuse them too)."""


def external_tensors(graph: bytes) -> list[str]:
    """The names of the tensors in ``graph`` (a serialized ModelProto) whose data is
    external: ``data_location: EXTERNAL`` or any ``external_data`` entry, wherever a
    tensor can be (initializers, sparse initializers, node attributes, subgraphs,
    functions, training graphs). Walked with an explicit stack: no recursion, whatever
    the nesting."""
    found: list[str] = []
    data = memoryview(graph)
    pending = [(MODEL, 0, len(data))]
    while pending:
        kind, start, end = pending.pop()
        children = CHILDREN[kind]
        name, external = "", False
        for number, wire, value in _fields(data, start, end):
            if kind == TENSOR:
                if number == TENSOR_NAME and wire == 2:
                    name = bytes(data[value[0] : value[1]]).decode("utf-8", "replace")
                elif number == TENSOR_EXTERNAL_DATA or (
                    number == TENSOR_DATA_LOCATION and wire == 0 and value == EXTERNAL
                ):
                    external = True
            elif wire == 2 and number in children:
                pending.append((children[number], *value))
        if external:
            found.append(name or "(unnamed)")
    return found


def _fields(data: memoryview, start: int, end: int) -> Iterator[tuple[int, int, object]]:
    """(field number, wire type, value): a varint's int, or a length-delimited field's
    (start, end); fixed-size fields are skipped."""
    position = start
    while position < end:
        key, position = _varint(data, position, end)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, position = _varint(data, position, end)
            yield number, wire, value
        elif wire == 2:
            length, position = _varint(data, position, end)
            if position + length > end:
                raise MalformedGraphError("a field runs past the end of its message")
            yield number, wire, (position, position + length)
            position += length
        elif wire in (1, 5):
            position += 8 if wire == 1 else 4
        else:
            raise MalformedGraphError(f"wire type {wire} at byte {position}")
    if position != end:
        raise MalformedGraphError("a field runs past the end of its message")


def _varint(data: memoryview, position: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if position >= end or shift > 63:
            raise MalformedGraphError(f"a truncated number at byte {position}")
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, position
        shift += 7
