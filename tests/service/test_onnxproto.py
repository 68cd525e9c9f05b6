"""service.onnxproto finds every tensor with external data wherever ONNX allows one, in
graphs built with the ``onnx`` package; its field numbers are onnx.proto's."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from _servicekit import SHIPPED, LogisticSpec, logistic_graph
from onnx import TensorProto, helper, numpy_helper

from service import onnxproto


def external(tensor: TensorProto, location: str = "README.md") -> TensorProto:
    """``tensor`` with its bytes moved to ``location`` (as onnx's external-data format
    records them); nothing is written."""
    size = len(tensor.raw_data) or numpy_helper.to_array(tensor).nbytes
    for name in ("raw_data", "float_data", "int64_data"):
        tensor.ClearField(name)
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(size))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return tensor


def test_field_numbers_are_onnx_protos():
    fields = {
        onnxproto.MODEL: onnx.ModelProto,
        onnxproto.TRAINING: onnx.TrainingInfoProto,
        onnxproto.GRAPH: onnx.GraphProto,
        onnxproto.NODE: onnx.NodeProto,
        onnxproto.FUNCTION: onnx.FunctionProto,
        onnxproto.ATTRIBUTE: onnx.AttributeProto,
        onnxproto.SPARSE: onnx.SparseTensorProto,
    }
    kinds = {v: k for k, v in fields.items()} | {onnx.TensorProto: onnxproto.TENSOR}
    for kind, proto in fields.items():
        holding = {
            field.number: kinds[field.message_type._concrete_class]
            for field in proto.DESCRIPTOR.fields
            if field.message_type is not None and field.message_type._concrete_class in kinds
        }
        assert onnxproto.CHILDREN[kind] == holding, proto.DESCRIPTOR.name
    tensor = onnx.TensorProto.DESCRIPTOR.fields_by_name
    assert tensor["name"].number == onnxproto.TENSOR_NAME
    assert tensor["external_data"].number == onnxproto.TENSOR_EXTERNAL_DATA
    assert tensor["data_location"].number == onnxproto.TENSOR_DATA_LOCATION
    assert TensorProto.EXTERNAL == onnxproto.EXTERNAL


def test_self_contained_graphs_have_none():
    for path in sorted(SHIPPED.glob("*/model.onnx")):
        assert onnxproto.external_tensors(path.read_bytes()) == [], path
    fixture = logistic_graph(LogisticSpec.random(1)).SerializeToString()
    assert onnxproto.external_tensors(fixture) == []


def test_an_external_initializer_is_found():
    model = logistic_graph(LogisticSpec.random(1))
    external(next(t for t in model.graph.initializer if t.name == "w"))
    assert onnxproto.external_tensors(model.SerializeToString()) == ["w"]


def _graph(nodes, initializers=(), name="g"):
    return helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 2])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N", 2])],
        list(initializers),
    )


def _model(graph, **kwargs):
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], **kwargs)


def test_external_data_in_attributes_and_subgraphs_is_found():
    weights = numpy_helper.from_array(np.ones((1, 2), dtype=np.float32), "c")
    constant = helper.make_node("Constant", [], ["c"], value=external(weights))
    branch = helper.make_graph(
        [constant, helper.make_node("Add", ["features", "c"], ["score"])],
        "branch",
        [],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N", 2])],
    )
    node = helper.make_node("If", ["flag"], ["score"], then_branch=branch, else_branch=branch)
    flag = numpy_helper.from_array(np.array(True), "flag")
    found = onnxproto.external_tensors(_model(_graph([node], [flag])).SerializeToString())
    assert found == ["c", "c"]


def test_external_sparse_values_and_data_location_alone_are_found():
    values = external(numpy_helper.from_array(np.ones(2, dtype=np.float32), "values"))
    indices = numpy_helper.from_array(np.array([0, 1], dtype=np.int64), "indices")
    sparse = helper.make_sparse_tensor(values, indices, [2])
    graph = _graph([helper.make_node("Identity", ["features"], ["score"])])
    graph.sparse_initializer.append(sparse)
    located = numpy_helper.from_array(np.ones(2, dtype=np.float32), "located")
    located.data_location = TensorProto.EXTERNAL  # no entries: still not in the graph
    graph.initializer.append(located)
    assert sorted(onnxproto.external_tensors(_model(graph).SerializeToString())) == [
        "located",
        "values",
    ]


@pytest.mark.parametrize("data", [b"this is not a protobuf", b"\x3a\xff\xff", b"\x08"])
def test_bytes_that_are_no_protobuf_are_malformed(data):
    with pytest.raises(onnxproto.MalformedGraphError):
        onnxproto.external_tensors(data)
