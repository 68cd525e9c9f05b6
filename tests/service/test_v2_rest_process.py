"""The Open Inference Protocol (KServe V2) over REST on the real ``serve`` process, with
tritonclient.http as the independent client: health, server and model metadata, JSON and
binary tensors, request ids, requested outputs, a posted cost matrix, errors and API keys,
for a binary model (builtin) and the multiclass one (wine). Its answers equal
onnxruntime's own outputs (1e-6) and the ``/predict`` answer for the same instances, field
by field. Bad input gets the protocol's 4xx ``{"error": ...}``, never a 500, and the
server keeps answering; the metrics are labelled by route template, not by the names
clients send."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton
from _servicekit import SHIPPED, running_serve
from tritonclient.utils import InferenceServerException

from costaware.card import read_any_card

KEY = "v2-rest-process-key-0123456789"


def auth() -> dict[str, str]:
    # A new dict each call: tritonclient adds its own headers to the dict it is given.
    return {"Authorization": f"Bearer {KEY}"}


MAX_BODY = 64 * 1024


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[str]:
    cwd = tmp_path_factory.mktemp("cwd")
    with running_serve(
        SHIPPED,
        cwd,
        COSTAWARE_API_KEYS=KEY,
        COSTAWARE_ACCESS_LOG="false",
        COSTAWARE_MAX_BODY_BYTES=str(MAX_BODY),
    ) as (base, _process):
        yield base


@pytest.fixture(scope="module")
def client(served: str) -> Iterator[triton.InferenceServerClient]:
    with triton.InferenceServerClient(served.removeprefix("http://")) as tc:
        yield tc


def _card(name: str):
    return read_any_card(SHIPPED / name)


def _rows(name: str, n: int = 4) -> np.ndarray:
    """Instances inside the training range, and one with a feature far outside it."""
    ranges = _card(name).feature_ranges
    low = np.array([item.min for item in ranges])
    high = np.array([item.max for item in ranges])
    x = low + np.random.default_rng(11).random((n, len(low))) * (high - low)
    x[-1, 2] = high[2] * 10 + 1
    return x.astype(np.float32)


def _graph(name: str, x: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(SHIPPED / name / "model.onnx"))
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, {"features": x}), strict=True))


def _predict(served: str, body: dict) -> dict:
    answer = httpx.post(f"{served}/predict", json=body, headers=auth(), timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _text(values: np.ndarray) -> list[str]:
    """A BYTES output as strings (tritonclient gives bytes from binary data, str from JSON)."""
    return [item.decode() if isinstance(item, bytes) else item for item in values]


def _input(x: np.ndarray, binary: bool = True, datatype: str = "FP32") -> triton.InferInput:
    tensor = triton.InferInput("features", list(x.shape), datatype)
    tensor.set_data_from_numpy(x, binary_data=binary)
    return tensor


def test_health_is_open_and_metadata_needs_a_key(client) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    with pytest.raises(InferenceServerException) as refused:
        client.get_server_metadata()
    assert refused.value.status() == "401"
    assert "needs an API key" in refused.value.message()
    metadata = client.get_server_metadata(headers=auth())
    assert metadata["name"] == "costaware"
    assert "binary_tensor_data" in metadata["extensions"]
    assert client.is_model_ready("wine", headers=auth())
    assert client.is_model_ready("wine", _card("wine").version, headers=auth())
    assert not client.is_model_ready("nope", headers=auth())
    assert not client.is_model_ready("wine", "0", headers=auth())


def test_model_metadata_binary_and_multiclass(client) -> None:
    card = _card("builtin")
    metadata = client.get_model_metadata("builtin", headers=auth())
    assert metadata["versions"] == [card.version]
    assert metadata["inputs"] == [
        {"name": "features", "datatype": "FP32", "shape": [-1, len(card.features)]}
    ]
    outputs = {item["name"]: item for item in metadata["outputs"]}
    assert outputs["score"]["shape"] == [-1, 1]
    assert {"label", "close_confusion", "decision", "expected_values"} <= set(outputs)
    assert metadata["parameters"]["features"] == card.features
    wine = _card("wine")
    metadata = client.get_model_metadata("wine", wine.version, headers=auth())
    outputs = {item["name"]: item for item in metadata["outputs"]}
    assert outputs["probabilities"]["shape"] == [-1, len(wine.classes)]
    assert outputs["decision"]["datatype"] == "BYTES"
    assert metadata["parameters"]["classes"] == wine.classes


@pytest.mark.parametrize("binary", [True, False])
def test_binary_model_equals_onnxruntime_and_predict(served, client, binary) -> None:
    x = _rows("builtin")
    outputs = None
    if not binary:
        outputs = [
            triton.InferRequestedOutput(name, binary_data=False)
            for name in ("score", "probability", "label", "close_confusion", "out_of_range")
        ]
    result = client.infer(
        "builtin", [_input(x, binary)], outputs=outputs, request_id="req-7", headers=auth()
    )
    response = result.get_response()
    assert response["id"] == "req-7"
    assert response["model_version"] == _card("builtin").version
    graph = _graph("builtin", x)
    np.testing.assert_allclose(result.as_numpy("score"), graph["score"], atol=1e-6)
    np.testing.assert_allclose(result.as_numpy("probability"), graph["probability"], atol=1e-6)
    expected = _predict(served, {"model": "builtin", "instances": x.tolist()})
    assert response["parameters"]["threshold"] == expected["threshold"]
    assert response["parameters"]["margin"] == expected["margin"]
    assert response["parameters"]["calibrated"] == expected["calibrated"]
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
    expected = _predict(served, {"model": "wine", "instances": x.tolist()})
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
    assert result.get_response()["parameters"]["cost_matrix"] == "card"


def test_cost_matrix_parameters_and_requested_outputs(served, client) -> None:
    x = _rows("builtin")
    costs = {"cost_tp": 100.0, "cost_fp": -20.0, "cost_tn": 0.0, "cost_fn": -500.0}
    outputs = [
        triton.InferRequestedOutput("expected_values"),
        triton.InferRequestedOutput("decision", binary_data=False),
    ]
    result = client.infer(
        "builtin", [_input(x, binary=False)], outputs=outputs, parameters=costs, headers=auth()
    )
    response = result.get_response()
    # Only what was asked for, in the order asked, each in the encoding asked for.
    assert [item["name"] for item in response["outputs"]] == ["expected_values", "decision"]
    assert "binary_data_size" in response["outputs"][0]["parameters"]
    assert "data" in response["outputs"][1]
    matrix = {key.removeprefix("cost_"): value for key, value in costs.items()}
    expected = _predict(
        served, {"model": "builtin", "instances": x.tolist(), "cost_matrix": matrix}
    )
    for i, record in enumerate(expected["predictions"]):
        assert record["decision"] == result.as_numpy("decision")[i]
        assert [record["expected_values"]["0"], record["expected_values"]["1"]] == list(
            result.as_numpy("expected_values")[i]
        )
    assert response["parameters"]["cost_matrix"] == "request"


def _status(call) -> tuple[str, str]:
    with pytest.raises(InferenceServerException) as refused:
        call()
    return refused.value.status(), refused.value.message()


def test_tritonclient_errors_name_what_was_wrong(client) -> None:
    x = _rows("builtin")
    status, message = _status(lambda: client.infer("nope", [_input(x)], headers=auth()))
    assert status == "404" and "nope" in message
    status, message = _status(
        lambda: client.infer("builtin", [_input(x)], model_version="0", headers=auth())
    )
    assert status == "404" and "has no version '0'" in message
    status, message = _status(lambda: client.infer("builtin", [_input(x)]))
    assert status == "401"
    # FP64 accepted, but not a non-finite value: the error names the element.
    bad = x.astype(np.float64)
    bad[1, 3] = np.nan
    status, message = _status(
        lambda: client.infer("builtin", [_input(bad, datatype="FP64")], headers=auth())
    )
    feature = _card("builtin").features[3]
    assert status == "400" and f"input 'features'[1][3] ({feature})" in message
    assert "not a finite number" in message
    flags = triton.InferInput("features", list(x.shape), "BOOL")
    flags.set_data_from_numpy(x > 0)
    status, message = _status(lambda: client.infer("builtin", [flags], headers=auth()))
    assert status == "400" and 'datatype "BOOL" is refused' in message
    status, message = _status(
        lambda: client.infer("wine", [_input(_rows("builtin"))], headers=auth())
    )
    assert status == "400" and "shape [4, 30]" in message
    status, message = _status(
        lambda: client.infer(
            "builtin",
            [_input(x)],
            outputs=[triton.InferRequestedOutput("probabilities")],
            headers=auth(),
        )
    )
    assert status == "400" and "no such output" in message
    assert client.is_server_ready()


def _post(served: str, path: str, body: bytes, headers: dict[str, str] | None = None):
    return httpx.post(f"{served}{path}", content=body, headers={**auth(), **(headers or {})})


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "says"),
    [
        ("builtin/infer", b"{", {}, 400, "malformed JSON"),
        ("builtin/infer", b'{"inputs": []}', {}, 400, "inputs: empty"),
        ("builtin/infer", b'{"id": "a"}', {}, 400, "inputs: missing"),
        (
            "builtin/infer",
            json.dumps(
                {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 30], "data": [0] * 30}]}
            ).encode(),
            {},
            400,
            "inputs[0] ('x'): model 'builtin' has no such input",
        ),
        (
            "builtin/infer",
            json.dumps(
                {
                    "inputs": [
                        {"name": "features", "datatype": "FP32", "shape": [2, 30], "data": [0] * 30}
                    ]
                }
            ).encode(),
            {},
            400,
            "data holds 30 elements, but shape [2, 30] has 60",
        ),
        (
            "builtin/infer",
            json.dumps(
                {
                    "inputs": [
                        {
                            "name": "features",
                            "datatype": "BYTES",
                            "shape": [1, 30],
                            "data": ["a"] * 30,
                        }
                    ]
                }
            ).encode(),
            {},
            400,
            'datatype "BYTES" is refused',
        ),
        (
            "builtin/infer",
            json.dumps(
                {
                    "inputs": [
                        {
                            "name": "features",
                            "datatype": "FP32",
                            "shape": [1, 30],
                            "parameters": {"binary_data_size": 120},
                        }
                    ]
                }
            ).encode()
            + b"\0" * 100,
            {"Inference-Header-Content-Length": "SELF"},
            400,
            "120 bytes, but only 100 bytes of binary data are left",
        ),
        (
            "builtin/infer",
            b'{"inputs": []}',
            {"Inference-Header-Content-Length": str(10**18)},
            400,
            "Inference-Header-Content-Length",
        ),
        ("builtin/infer", b"{}", {"Content-Type": "text/csv"}, 400, "Content-Type 'text/csv'"),
        ("nope/versions/1/infer", b"{}", {}, 404, "nope"),
        ("builtin/statistics", b"{}", {}, 404, "no route"),
        ("builtin/infer", b"x" * (MAX_BODY + 1), {}, 413, "exceeds the limit"),
    ],
)
def test_bad_requests_get_the_protocol_error(served, path, body, headers, status, says) -> None:
    if headers.get("Inference-Header-Content-Length") == "SELF":
        headers = {"Inference-Header-Content-Length": str(body.index(b"\0"))}
    answer = _post(served, f"/v2/models/{path}", body, headers)
    assert answer.status_code == status, answer.text
    assert list(answer.json()) == ["error"]
    assert says in answer.json()["error"]
    assert httpx.get(f"{served}/v2/health/ready").status_code == 200


def test_metrics_are_labelled_by_template(served, client) -> None:
    x = _rows("builtin")
    for name in ("random-a", "random-b"):
        _status(lambda name=name: client.infer(name, [_input(x)], headers=auth()))
    client.infer("builtin", [_input(x)], headers=auth())
    metrics = httpx.get(f"{served}/metrics").text
    assert 'endpoint="/v2/models/{name}/infer"' in metrics
    assert "random-a" not in metrics and "random-b" not in metrics
    assert 'endpoint="/v2/models/{name}/infer",model="builtin"' in metrics


def test_each_instance_has_a_prediction_id_the_outcomes_take_back(served, client) -> None:
    # The ids are the decision log's keys: generated per instance (a V2 request id is
    # often reused by clients), and POST /outcomes finds the logged decisions by them.
    x = _rows("builtin")
    ids = []
    for _ in range(2):  # the same request id twice: the prediction ids still differ
        result = client.infer("builtin", [_input(x)], request_id="1", headers=auth())
        ids += _text(result.as_numpy("prediction_id"))
    assert len(ids) == 2 * len(x) == len(set(ids))
    assert all(
        re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", i)
        for i in ids
    )
    body = {"outcomes": [{"id": i, "label": 1} for i in ids]}
    deadline = time.monotonic() + 20
    while True:  # a decision is in the log one flush interval after its answer
        answer = httpx.post(f"{served}/outcomes", json=body, headers=auth(), timeout=30)
        assert answer.status_code == 200, answer.text
        if not answer.json()["unknown"] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert answer.json()["unknown"] == []
