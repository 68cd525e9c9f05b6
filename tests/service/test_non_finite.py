"""No decision on a non-number: a model output that is not a finite number in [0, 1]
makes the request a 422 ``non_finite_score`` naming the instances and the model, on every
path and format, counted in a metric; and every 200 body is strict JSON.

The shipped models (real ONNX graphs) give NaN for 30 features at +-3.4e38, a finite
float32 value: the scaling inside the graph overflows to inf and inf - inf is NaN.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from _servicekit import SHIPPED, LogisticSpec, csv_body, write_model
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings

JSON, CSV, JSONL = "application/json", "text/csv", "application/jsonlines"
HUGE = 3.4e38
MODELS = ("builtin", "custom-5to1", "medical", "tuned")


def strict_json(text: str):
    """json.loads that refuses NaN and Infinity, which Python's parser lets through."""

    def refuse(constant: str):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(Settings(model_dir=SHIPPED))) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def good_rows() -> np.ndarray:
    """Two rows well inside the training data: the held-out split's feature means."""
    return np.full((2, 30), 1.0) * np.linspace(0.1, 20, 30)


def refused(response, model: str, *names: str) -> str:
    assert response.status_code == 422, response.text
    body = response.json()
    assert set(body) == {"error", "detail"}
    assert body["error"] == "non_finite_score"
    assert f"model {model!r}" in body["detail"]
    for name in names:
        assert name in body["detail"], (name, body["detail"])
    return body["detail"]


def non_finite_count(client, model: str) -> float:
    text = client.get("/metrics").text
    match = re.search(rf'^costaware_non_finite_scores_total{{model="{model}"}} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("value", [HUGE, -HUGE])
def test_predict_refuses_and_names_the_instance_and_model(client, good_rows, model, value):
    before = non_finite_count(client, model)
    instances = [good_rows[0].tolist(), [value] * 30, good_rows[1].tolist()]
    response = client.post("/predict", json={"model": model, "instances": instances})
    detail = refused(response, model, "instances[1]", "1 of 3 instances")
    assert "instances[0]" not in detail and "instances[2]" not in detail
    assert non_finite_count(client, model) == before + 1
    # The same rows without the bad one are answered.
    ok = client.post("/predict", json={"model": model, "instances": instances[::2]})
    assert ok.status_code == 200
    strict_json(ok.text)


def test_predict_objects_keyed_by_feature_are_refused_too(client):
    features = client.get("/models/medical").json()["features"]
    instance = dict.fromkeys(features, HUGE)
    refused(client.post("/predict", json={"instances": [instance]}), "medical", "instances[0]")


@pytest.mark.parametrize("accept", [JSON, CSV, JSONL])
def test_invocations_csv_names_the_line(client, good_rows, accept):
    rows = np.vstack([good_rows, np.full((1, 30), HUGE)])
    body = csv_body(rows).replace(b"\n", b"\n\n", 1)  # a blank line: row 3 is on line 4
    response = client.post(
        "/invocations",
        content=body,
        headers={"content-type": CSV, "accept": accept, "X-Amzn-SageMaker-Target-Model": "tuned"},
    )
    refused(response, "tuned", "body, row 4")


@pytest.mark.parametrize("accept", [JSON, CSV, JSONL])
def test_invocations_json_and_jsonlines(client, good_rows, accept):
    instances = [good_rows[0].tolist(), [-HUGE] * 30]
    as_json = client.post(
        "/invocations",
        content=json.dumps({"instances": instances, "model": "builtin"}),
        headers={"content-type": JSON, "accept": accept},
    )
    refused(as_json, "builtin", "instances[1]")
    lines = "\n".join(json.dumps(row) for row in instances) + "\n"
    as_lines = client.post(
        "/invocations",
        content=lines,
        headers={"content-type": JSONL, "accept": accept},
    )
    refused(as_lines, "medical", "body line 2")


def test_evaluate_refuses_posted_instances_and_csv(client, good_rows):
    costs = {"tp": 1, "fp": -1, "tn": 0, "fn": -5}
    instances = [good_rows[0].tolist(), [HUGE] * 30]
    response = client.post(
        "/evaluate",
        json={"cost_matrix": costs, "instances": instances, "labels": [0, 1], "models": ["tuned"]},
    )
    refused(response, "tuned", "instances[1]")
    rows = np.hstack([np.array([[0.0], [1.0]]), np.vstack([good_rows[0], np.full(30, HUGE)])])
    csv_response = client.post(
        "/evaluate?tp=1&fp=-1&tn=0&fn=-5&models=medical",
        content=csv_body(rows),
        headers={"content-type": CSV},
    )
    refused(csv_response, "medical", "body, row 2")


def test_many_bad_instances_are_counted_and_the_first_five_named(client):
    before = non_finite_count(client, "custom-5to1")
    response = client.post(
        "/predict", json={"model": "custom-5to1", "instances": [[HUGE] * 30] * 8}
    )
    detail = refused(response, "custom-5to1", "instances[4]", "and 3 more", "8 of 8")
    assert "instances[5]" not in detail
    assert non_finite_count(client, "custom-5to1") == before + 8


ODD_BUT_VALID = [
    ("/predict", JSON, {"instances": [[1e30] * 30]}),
    ("/predict", JSON, {"instances": [[-1e30] * 30], "model": "tuned"}),
    ("/predict", JSON, {"instances": [[0.0] * 30], "threshold": 0, "margin": 1}),
    ("/predict", JSON, {"instances": [[5e-324] * 30], "threshold": 1, "margin": 0}),
    ("/predict", JSON, [[1.7e38] + [0.0] * 29]),
    ("/evaluate", JSON, {"cost_matrix": {"tp": 1e15, "fp": -1e15, "tn": 1e15, "fn": -1e15}}),
    # all zeros is refused (no decision preferred); the least preference there is:
    ("/evaluate", JSON, {"cost_matrix": {"tp": 0, "fp": 0, "tn": 5e-324, "fn": 0}}),
    (
        "/evaluate",
        JSON,
        {"cost_matrix": {"tp": 1, "fp": 0, "tn": 0, "fn": 0}, "scores": [0.0], "labels": [1]},
    ),
    (
        "/evaluate",
        JSON,
        {"cost_matrix": {"tp": 1, "fp": 0, "tn": 0, "fn": 0}, "scores": [1, 1], "labels": [0, 0]},
    ),
]


@pytest.mark.parametrize(("path", "content_type", "body"), ODD_BUT_VALID)
def test_every_200_is_strict_json(client, path, content_type, body):
    response = client.post(path, content=json.dumps(body), headers={"content-type": content_type})
    assert response.status_code == 200, response.text
    strict_json(response.text)


@pytest.mark.parametrize("path", ["/models", "/models/tuned", "/health/ready", "/health/live"])
def test_every_get_is_strict_json(client, path):
    response = client.get(path)
    assert response.status_code == 200
    strict_json(response.text)


@pytest.mark.parametrize(
    ("query", "field"),
    [("tp=1.7e308&fp=0&tn=0&fn=-1.7e308", "query.tp"), ("tp=0&fp=-1e16&tn=0&fn=0", "query.fp")],
)
def test_cost_values_that_would_overflow_the_sums_are_a_422_not_a_500(client, query, field):
    """Found on the way: outcome values near float64's limit made the totals inf and the
    best-threshold search fail with a 500."""
    response = client.post(f"/evaluate?{query}")
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith(f"{field}: ")
    assert "1e+15" in response.json()["detail"]


@pytest.mark.parametrize(
    ("factor", "answered"),
    [(1 + 2.0**-23, True), (1 + 2.0**-21, True), (1 + 2.0**-19, False), (1.5, False)],
)
def test_float32_rounding_just_above_1_is_a_score_of_1_and_more_is_refused(
    tmp_path, factor, answered
):
    """A real graph whose float32 output is the sigmoid times ``factor``: a confidently
    positive row scores exactly 1 in the sigmoid, so ``factor`` itself comes out. A few
    units in the last place above 1 are float32 rounding (seen from onnxruntime's own
    sigmoid on some CPUs) and answered as 1; further outside is refused."""
    spec = LogisticSpec.random(7)
    write_model(tmp_path / "rounding", "rounding", spec, output_factor=factor)
    positive = spec.mean + spec.scale * np.sign(spec.weights) * 1000.0
    negative = spec.mean - spec.scale * np.sign(spec.weights) * 1000.0
    instances = [positive.tolist(), negative.tolist()]
    with TestClient(create_app(Settings(model_dir=tmp_path))) as client:
        predicted = client.post("/predict", json={"model": "rounding", "instances": instances})
        evaluated = client.post(
            "/evaluate",
            json={
                "cost_matrix": {"tp": 0, "fp": -1, "tn": 0, "fn": -5},
                "instances": instances,
                "labels": [1, 0],
            },
        )
    if answered:
        assert predicted.status_code == 200, predicted.text
        first, second = strict_json(predicted.text)["predictions"]
        assert (first["score"], first["label"]) == (1.0, 1)
        assert (second["score"], second["label"]) == (0.0, 0)
        assert evaluated.status_code == 200, evaluated.text
    else:
        refused(predicted, "rounding", "instances[0]")
        assert "instances[1]" not in predicted.json()["detail"]
        refused(evaluated, "rounding")


def test_the_multiclass_model_refuses_on_predict_and_evaluate(client):
    """The wine model's 13 features at 3.4e38 give no finite probabilities either; posted
    instances on /evaluate are refused as on /predict (they were a 422 invalid_input)."""
    good = client.get("/models/wine").json()["feature_ranges"]
    inside = [(item["min"] + item["max"]) / 2 for item in good]
    instances = [inside, [HUGE] * 13]
    before = non_finite_count(client, "wine")
    refused(client.post("/predict", json={"model": "wine", "instances": instances}), "wine")
    matrix = {"classes": ["class_0", "class_1", "class_2"], "values": np.eye(3).tolist()}
    body = {"cost_matrix": matrix, "instances": instances, "labels": [0, 1], "models": ["wine"]}
    detail = refused(client.post("/evaluate", json=body), "wine", "instances[1]", "1 of 2")
    assert "instances[0]" not in detail
    assert non_finite_count(client, "wine") == before + 2
    body["instances"], body["labels"] = instances[:1], [0]
    assert client.post("/evaluate", json=body).status_code == 200
