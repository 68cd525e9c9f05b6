"""The Open Inference Protocol (KServe V2) over gRPC on the real ``serve`` process
(``COSTAWARE_GRPC_PORT``), with tritonclient.grpc as the independent client (and its own
protobuf stubs for what tritonclient does not send: typed contents, bad raw data): health,
server and model metadata, request ids, requested outputs, a cost matrix, errors as gRPC
status codes with REST's messages, API keys in ``authorization`` metadata, the message
size limit, metrics; for a binary model (builtin) and the multiclass one (wine). Answers
equal onnxruntime's own outputs (1e-6) and the ``/predict`` answer field by field."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton
from _servicekit import SHIPPED, free_port, running_serve

# The REST test's instances, graph outputs and card reading: both protocols see the same.
from test_v2_rest_process import _card, _graph, _rows, _text
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc
from tritonclient.utils import InferenceServerException

KEY = "v2-grpc-process-key-0123456789"
MAX_BODY = 64 * 1024


def auth() -> dict[str, str]:
    return {"authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[tuple[str, str]]:
    cwd = tmp_path_factory.mktemp("cwd")
    port = free_port()
    with running_serve(
        SHIPPED,
        cwd,
        COSTAWARE_API_KEYS=KEY,
        COSTAWARE_ACCESS_LOG="false",
        COSTAWARE_MAX_BODY_BYTES=str(MAX_BODY),
        COSTAWARE_GRPC_PORT=str(port),
    ) as (base, _process):
        yield base, f"127.0.0.1:{port}"


@pytest.fixture(scope="module")
def client(served) -> Iterator[triton.InferenceServerClient]:
    with triton.InferenceServerClient(served[1]) as tc:
        yield tc


@pytest.fixture(scope="module")
def stub(served) -> Iterator[pb_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(served[1]) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


def _predict(base: str, body: dict) -> dict:
    answer = httpx.post(
        f"{base}/predict", json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=30
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def _input(x: np.ndarray, datatype: str = "FP32") -> triton.InferInput:
    tensor = triton.InferInput("features", list(x.shape), datatype)
    tensor.set_data_from_numpy(x)
    return tensor


def _refused(call) -> tuple[grpc.StatusCode | str, str]:
    with pytest.raises(InferenceServerException) as refused:
        call()
    return refused.value.status(), refused.value.message()


def _parameters(response) -> dict:
    return {key: getattr(value, value.WhichOneof("parameter_choice")) for key, value in
            response.parameters.items()}  # fmt: skip


def test_health_is_open_and_metadata_needs_a_key(client) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    status, message = _refused(client.get_server_metadata)
    assert status == "StatusCode.UNAUTHENTICATED"
    assert "needs an API key" in message
    status, message = _refused(
        lambda: client.get_server_metadata(headers={"authorization": "Bearer not-a-key"})
    )
    assert status == "StatusCode.UNAUTHENTICATED" and message == "the API key is not valid"
    metadata = client.get_server_metadata(headers=auth())
    assert metadata.name == "costaware"
    assert client.is_model_ready("wine", headers=auth())
    assert client.is_model_ready("wine", _card("wine").version, headers=auth())
    assert not client.is_model_ready("nope", headers=auth())
    assert not client.is_model_ready("wine", "0", headers=auth())
    status, _ = _refused(lambda: client.is_model_ready("wine"))
    assert status == "StatusCode.UNAUTHENTICATED"


def test_model_metadata_binary_and_multiclass(client) -> None:
    card = _card("builtin")
    metadata = client.get_model_metadata("builtin", headers=auth(), as_json=True)
    assert metadata["versions"] == [card.version]
    assert metadata["platform"] == "onnxruntime_onnx"
    assert metadata["inputs"] == [
        {"name": "features", "datatype": "FP32", "shape": ["-1", str(len(card.features))]}
    ]
    outputs = {item["name"]: item for item in metadata["outputs"]}
    assert outputs["score"]["shape"] == ["-1", "1"]
    assert {"label", "close_confusion", "decision", "expected_values"} <= set(outputs)
    wine = _card("wine")
    metadata = client.get_model_metadata("wine", wine.version, headers=auth(), as_json=True)
    outputs = {item["name"]: item for item in metadata["outputs"]}
    assert outputs["probabilities"]["shape"] == ["-1", str(len(wine.classes))]
    assert outputs["decision"]["datatype"] == "BYTES"
    status, message = _refused(lambda: client.get_model_metadata("wine", "0", headers=auth()))
    assert status == "StatusCode.NOT_FOUND" and "has no version '0'" in message


def test_binary_model_equals_onnxruntime_and_predict(served, client) -> None:
    x = _rows("builtin")
    result = client.infer("builtin", [_input(x)], request_id="req-7", headers=auth())
    response = result.get_response()
    assert response.id == "req-7"
    assert response.model_version == _card("builtin").version
    graph = _graph("builtin", x)
    np.testing.assert_allclose(result.as_numpy("score"), graph["score"], atol=1e-6)
    np.testing.assert_allclose(result.as_numpy("probability"), graph["probability"], atol=1e-6)
    expected = _predict(served[0], {"model": "builtin", "instances": x.tolist()})
    parameters = _parameters(response)
    assert parameters["threshold"] == expected["threshold"]
    assert parameters["margin"] == expected["margin"]
    assert parameters["calibrated"] == expected["calibrated"]
    assert parameters["version"] == expected["version"]
    flagged = _text(result.as_numpy("out_of_range"))
    for i, record in enumerate(expected["predictions"]):
        assert np.float32(record["score"]) == result.as_numpy("score")[i, 0]
        assert np.float32(record["probability"]) == result.as_numpy("probability")[i, 0]
        assert bool(record["label"]) == result.as_numpy("label")[i]
        assert record["close_confusion"] == result.as_numpy("close_confusion")[i]
        assert record["out_of_range"] == (flagged[i].split(";") if flagged[i] else [])
    assert flagged[-1]  # the instance made to be outside is flagged


def test_multiclass_model_equals_onnxruntime_and_predict(served, client) -> None:
    x = _rows("wine")
    result = client.infer("wine", [_input(x)], headers=auth())
    graph = _graph("wine", x)
    decided = graph["probabilities"] if "probabilities" in graph else graph["scores"]
    np.testing.assert_allclose(result.as_numpy("probabilities"), decided, atol=1e-6)
    expected = _predict(served[0], {"model": "wine", "instances": x.tolist()})
    classes = _card("wine").classes
    evs = result.as_numpy("expected_values")
    decisions = _text(result.as_numpy("decision"))
    for i, record in enumerate(expected["predictions"]):
        assert decisions[i] == record["decision"]
        assert [np.float32(record["probabilities"][c]) for c in classes] == list(
            result.as_numpy("probabilities")[i]
        )
        assert [record["expected_values"][c] for c in classes] == list(evs[i])
        assert record["close_confusion"] == result.as_numpy("close_confusion")[i]
    assert _parameters(result.get_response())["cost_matrix"] == "card"


def test_cost_matrix_parameters_and_requested_outputs(served, client) -> None:
    x = _rows("builtin")
    costs = {"cost_tp": 100.0, "cost_fp": -20.0, "cost_tn": 0.0, "cost_fn": -500.0}
    outputs = [
        triton.InferRequestedOutput("expected_values"),
        triton.InferRequestedOutput("decision"),
    ]
    result = client.infer("builtin", [_input(x)], outputs=outputs, parameters=costs, headers=auth())
    response = result.get_response()
    # Only what was asked for, in the order asked.
    assert [item.name for item in response.outputs] == ["expected_values", "decision"]
    matrix = {key.removeprefix("cost_"): value for key, value in costs.items()}
    expected = _predict(
        served[0], {"model": "builtin", "instances": x.tolist(), "cost_matrix": matrix}
    )
    for i, record in enumerate(expected["predictions"]):
        assert record["decision"] == result.as_numpy("decision")[i]
        assert [record["expected_values"]["0"], record["expected_values"]["1"]] == list(
            result.as_numpy("expected_values")[i]
        )
    assert _parameters(response)["cost_matrix"] == "request"


def test_typed_contents_in_and_out(client, stub) -> None:
    """A request with typed contents (no raw bytes) gets typed contents back, equal to
    the raw answer tritonclient gets."""
    x = _rows("builtin")
    request = pb.ModelInferRequest(model_name="builtin", id="typed")
    tensor = request.inputs.add(name="features", datatype="FP64", shape=list(x.shape))
    tensor.contents.fp64_contents.extend(x.astype(np.float64).reshape(-1).tolist())
    request.outputs.add(name="score")
    request.outputs.add(name="label")
    response = stub.ModelInfer(request, metadata=list(auth().items()))
    assert response.id == "typed" and not response.raw_output_contents
    score, label = response.outputs
    raw = client.infer("builtin", [_input(x)], headers=auth())
    assert list(score.shape) == [len(x), 1]
    assert np.array(score.contents.fp32_contents, np.float32).tolist() == (
        raw.as_numpy("score").reshape(-1).tolist()
    )
    assert list(label.contents.bool_contents) == raw.as_numpy("label").tolist()


def _stub_refusal(stub, request) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as refused:
        stub.ModelInfer(request, metadata=list(auth().items()))
    return refused.value.code(), refused.value.details()


def test_errors_are_status_codes_with_the_rest_messages(client, stub) -> None:
    x = _rows("builtin")
    status, message = _refused(lambda: client.infer("nope", [_input(x)], headers=auth()))
    assert status == "StatusCode.NOT_FOUND" and "nope" in message
    status, message = _refused(
        lambda: client.infer("builtin", [_input(x)], model_version="0", headers=auth())
    )
    assert status == "StatusCode.NOT_FOUND" and "has no version '0'" in message
    status, message = _refused(lambda: client.infer("builtin", [_input(x)]))
    assert status == "StatusCode.UNAUTHENTICATED" and "needs an API key" in message
    bad = x.astype(np.float64)
    bad[1, 3] = np.nan
    status, message = _refused(
        lambda: client.infer("builtin", [_input(bad, "FP64")], headers=auth())
    )
    feature = _card("builtin").features[3]
    assert status == "StatusCode.INVALID_ARGUMENT"
    assert f"input 'features'[1][3] ({feature})" in message and "not a finite number" in message
    status, message = _refused(
        lambda: client.infer("builtin", [_input(x > 0, "BOOL")], headers=auth())
    )
    assert status == "StatusCode.INVALID_ARGUMENT" and 'datatype "BOOL" is refused' in message
    status, message = _refused(lambda: client.infer("wine", [_input(x)], headers=auth()))
    assert status == "StatusCode.INVALID_ARGUMENT" and "shape [4, 30]" in message
    status, message = _refused(
        lambda: client.infer(
            "builtin",
            [_input(x)],
            outputs=[triton.InferRequestedOutput("probabilities")],
            headers=auth(),
        )
    )
    assert status == "StatusCode.INVALID_ARGUMENT" and "no such output" in message

    short = pb.ModelInferRequest(model_name="builtin")
    short.inputs.add(name="features", datatype="FP32", shape=[2, 30])
    short.raw_input_contents.append(b"\0" * 100)
    code, message = _stub_refusal(stub, short)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "100 bytes of binary data, but shape [2, 30] of FP32 takes 240 bytes" in message
    unmatched = pb.ModelInferRequest(model_name="builtin")
    unmatched.inputs.add(name="features", datatype="FP32", shape=[1, 30])
    unmatched.raw_input_contents.extend([b"\0" * 120, b"\0" * 120])
    code, message = _stub_refusal(stub, unmatched)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "2 entries for 1 inputs" in message
    half = pb.ModelInferRequest(model_name="builtin")
    half.inputs.add(name="features", datatype="FP16", shape=[1, 30])
    code, message = _stub_refusal(stub, half)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "send it as raw_input_contents" in message
    missing = pb.ModelInferRequest(model_name="builtin")
    code, message = _stub_refusal(stub, missing)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "inputs: empty" in message
    unknown = pb.ModelInferRequest(model_name="builtin")
    unknown.inputs.add(name="features", datatype="FP32", shape=[1, 30])
    unknown.inputs[0].contents.fp32_contents.extend([0.0] * 30)
    unknown.parameters["colour"].string_param = "red"
    code, message = _stub_refusal(stub, unknown)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "unknown parameter 'colour'" in message
    # Larger than the body limit: refused by gRPC before it is read.
    huge = np.zeros((MAX_BODY // 120 + 10, 30), np.float32)
    status, _ = _refused(lambda: client.infer("builtin", [_input(huge)], headers=auth()))
    assert status == "StatusCode.RESOURCE_EXHAUSTED"
    assert client.is_server_ready()
    assert client.infer("builtin", [_input(x)], headers=auth()).as_numpy("score") is not None


def test_calls_are_counted_by_method(served, client) -> None:
    x = _rows("builtin")
    for name in ("random-a", "random-b"):
        _refused(lambda name=name: client.infer(name, [_input(x)], headers=auth()))
    client.infer("builtin", [_input(x)], headers=auth())
    metrics = httpx.get(f"{served[0]}/metrics").text
    method = 'endpoint="/inference.GRPCInferenceService/ModelInfer"'
    assert f'costaware_requests_total{{{method},model="builtin",status="200"}}' in metrics
    assert f'costaware_requests_total{{{method},model="",status="404"}}' in metrics
    assert "random-a" not in metrics and "random-b" not in metrics


def test_grpc_port_must_differ_from_the_http_port() -> None:
    from pydantic import ValidationError

    from service.settings import Settings

    assert Settings(port=8080).grpc_port is None  # off unless set
    assert Settings(port=8080, grpc_port=8081).grpc_port == 8081
    with pytest.raises(ValidationError, match="must differ from the HTTP port"):
        Settings(port=8080, grpc_port=8080)
