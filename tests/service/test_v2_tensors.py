"""The V2 core (service.protocols.v2.tensors) on the shipped binary and multiclass models:
tensors in, the data plane's answer as V2 outputs, against onnxruntime's own outputs and
the data plane's result object; bad tensors refused naming tensor and element."""

from __future__ import annotations

import struct

import numpy as np
import onnxruntime as ort
import pytest
from _servicekit import SHIPPED

from service.dataplane import DataPlane, PredictInputs
from service.errors import ServiceError
from service.protocols.v2 import tensors as v2
from service.registry import ModelRegistry, session_options


@pytest.fixture(scope="module")
def dataplane() -> DataPlane:
    return DataPlane(ModelRegistry.load(SHIPPED, "builtin", session_options(1, 1)))


def _rows(dataplane: DataPlane, name: str, n: int = 3) -> np.ndarray:
    card = dataplane.model(name).card
    low = np.array([item.min for item in card.feature_ranges])
    high = np.array([item.max for item in card.feature_ranges])
    rng = np.random.default_rng(3)
    return (low + rng.random((n, len(low))) * (high - low)).astype(np.float32)


def _session(name: str) -> ort.InferenceSession:
    return ort.InferenceSession(str(SHIPPED / name / "model.onnx"))


def _request(x: np.ndarray, **kwargs) -> v2.InferRequest:
    tensor = v2.InputTensor("features", "FP32", list(x.shape), raw=x.tobytes())
    return v2.InferRequest(inputs=[tensor], **kwargs)


def test_binary_outputs_equal_onnxruntime_and_the_data_plane(dataplane: DataPlane) -> None:
    x = _rows(dataplane, "builtin")
    answer = v2.infer_now(dataplane, "builtin", None, _request(x, id="r-1"))
    outputs = {tensor.name: tensor for tensor in answer.outputs}
    score, probability = _session("builtin").run(["score", "probability"], {"features": x})
    np.testing.assert_allclose(outputs["score"].values, score, atol=1e-6)
    np.testing.assert_allclose(np.array(outputs["score"].data()).reshape(-1, 1), score, atol=1e-6)
    np.testing.assert_allclose(outputs["probability"].values, probability, atol=1e-6)
    expected = dataplane.predict_now(PredictInputs(instances=x.astype(np.float64).tolist()))
    assert outputs["label"].data() == expected.labels
    assert outputs["close_confusion"].data() == expected.close
    assert answer.id == "r-1"
    assert answer.model_version == dataplane.model("builtin").card.version
    assert answer.parameters["threshold"] == expected.threshold
    # Binary data: BOOL one byte each, FP32 little-endian.
    assert outputs["label"].raw() == bytes(expected.labels)
    assert np.array_equal(np.frombuffer(outputs["score"].raw(), "<f4"), score.reshape(-1))


def test_multiclass_outputs_and_bytes(dataplane: DataPlane) -> None:
    x = _rows(dataplane, "wine")
    request = v2.InferRequest(
        inputs=[v2.InputTensor("features", "FP64", list(x.shape), data=x.tolist())],
        outputs=[v2.RequestedOutput("decision"), v2.RequestedOutput("probabilities")],
    )
    answer = v2.infer_now(dataplane, "wine", None, request)
    assert [tensor.name for tensor in answer.outputs] == ["decision", "probabilities"]
    decision, probabilities = answer.outputs
    session = _session("wine")
    wanted = "probabilities" if dataplane.model("wine").calibrated else "scores"
    (graph,) = session.run([wanted], {"features": x})
    np.testing.assert_allclose(probabilities.values, graph, atol=1e-6)
    classes = dataplane.model("wine").card.classes
    assert set(decision.data()) <= set(classes)
    first = decision.data()[0].encode()
    assert decision.raw().startswith(struct.pack("<I", len(first)) + first)


def test_binary_cost_matrix_parameters(dataplane: DataPlane) -> None:
    x = _rows(dataplane, "builtin")
    costs = {"cost_tp": 10, "cost_fp": -2, "cost_tn": 0, "cost_fn": -50}
    answer = v2.infer_now(dataplane, "builtin", None, _request(x, parameters=costs))
    outputs = {tensor.name: tensor for tensor in answer.outputs}
    expected = dataplane.predict_now(
        PredictInputs(
            instances=x.astype(np.float64).tolist(),
            cost_matrix={"tp": 10.0, "fp": -2.0, "tn": 0.0, "fn": -50.0},
        )
    )
    assert outputs["decision"].data() == expected.decisions
    np.testing.assert_array_equal(outputs["expected_values"].values, expected.expected_values)
    assert answer.parameters["cost_matrix"] == "request"


@pytest.mark.parametrize(
    ("tensor", "parameters", "status", "says"),
    [
        (dict(datatype="BYTES"), {}, 400, 'datatype "BYTES" is refused'),
        (dict(datatype="BOOL"), {}, 400, 'datatype "BOOL" is refused'),
        (dict(shape=[2, 29]), {}, 400, "shape [2, 29]"),
        (dict(data=[0.5] * 59), {}, 400, "data holds 59 elements, but shape [2, 30] has 60"),
        (dict(data=[[1.0] * 30, ["x"] * 30]), {}, 400, "input 'features'[1][0] (mean radius)"),
        (dict(data=[[float("inf")] * 30] * 2), {}, 400, "not a finite number"),
        (dict(datatype="INT32", data=[1.5] * 60), {}, 400, "input 'features'[0][0]: 1.5"),
        (dict(raw=b"\0" * 7, data=None), {}, 400, "7 bytes of binary data"),
        (dict(name="x"), {}, 400, "inputs[0] ('x'): model 'builtin' has no such input"),
        ({}, {"treshold": 0.3}, 400, "unknown parameter 'treshold'"),
        ({}, {"threshold": 2}, 400, "parameters.threshold: 2 is outside [0, 1]"),
        ({}, {"cost_tp": 1}, 400, "parameters.cost_fp: missing"),
        ({}, {"threshold": "0.5"}, 400, 'parameters.threshold: "0.5" is not a number'),
        ({}, {"on_out_of_range": "drop"}, 400, "parameters.on_out_of_range"),
    ],
)
def test_bad_tensors_name_tensor_and_element(dataplane, tensor, parameters, status, says) -> None:
    fields = dict(name="features", datatype="FP32", shape=[2, 30], data=[[1.0] * 30] * 2)
    fields.update(tensor)
    request = v2.InferRequest(inputs=[v2.InputTensor(**fields)], parameters=parameters)
    with pytest.raises(ServiceError) as raised:
        v2.infer_now(dataplane, "builtin", None, request)
    assert v2.protocol_status(raised.value) == status
    assert says in raised.value.detail


def test_unknown_model_version_and_outputs(dataplane: DataPlane) -> None:
    x = _rows(dataplane, "builtin")
    for name, version, outputs, status, says in [
        ("nope", None, None, 404, "nope"),
        ("builtin", "0", None, 404, "has no version '0'"),
        ("builtin", None, [v2.RequestedOutput("decision")], 400, "only when deciding"),
        ("builtin", None, [v2.RequestedOutput("x")], 400, "has no such output"),
    ]:
        with pytest.raises(ServiceError) as raised:
            v2.infer_now(dataplane, name, version, _request(x, outputs=outputs))
        assert v2.protocol_status(raised.value) == status
        assert says in raised.value.detail
