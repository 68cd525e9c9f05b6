"""Every endpoint, content type and header of issue 3, against real ONNX fixture models.

Expected scores come from two independent places: numpy evaluating the known logistic
weights (the oracle), and onnxruntime run directly on the model file.
"""

from __future__ import annotations

import json
import os
import re

import numpy as np
import onnxruntime as ort
import pytest
from _servicekit import DATA, FEATURES

JSON, CSV, JSONL = "application/json", "text/csv", "application/jsonlines"


@pytest.fixture(scope="module")
def sample() -> np.ndarray:
    return np.array(json.loads((DATA / "predict_arrays.json").read_text())["instances"])


def ort_scores(model_dir, name: str, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(model_dir / name / "model.onnx"))
    return session.run(None, {"features": x.astype(np.float32)})[0].reshape(-1)


def check_predictions(predictions, expected, threshold, margin):
    scores = np.array([p["score"] for p in predictions])
    # Exactly the model's float32 output (the service prints float32's shortest decimal).
    np.testing.assert_array_equal(scores.astype(np.float32), expected.astype(np.float32))
    assert [p["label"] for p in predictions] == [int(s >= threshold) for s in scores]
    assert [p["close_confusion"] for p in predictions] == [
        bool(abs(s - threshold) < margin) for s in scores
    ]


# --------------------------------------------------------------------------- health


def test_ping_is_empty_200(client):
    response = client.get("/ping")
    assert response.status_code == 200
    assert response.content == b""


def test_live_and_ready(client):
    live = client.get("/health/live").json()
    assert (live["status"], live["pid"]) == ("alive", os.getpid())
    # In-process, under the test client: whatever loop runs it, and no uvicorn protocol.
    assert set(live["server"]) == {"loop", "http"}
    ready = client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["models"] == ["builtin", "custom-5to1", "medical"]


def test_execution_parameters(client, settings):
    assert client.get("/execution-parameters").json() == {
        "MaxConcurrentTransforms": settings.workers,
        "BatchStrategy": "MULTI_RECORD",
        "MaxPayloadInMB": 1,  # the test settings' 256 KiB limit, rounded up to SageMaker's unit
    }


# --------------------------------------------------------------------------- models


def test_models_lists_every_model(client):
    body = client.get("/models").json()
    assert body["default"] == "medical"
    by_name = {model["name"]: model for model in body["models"]}
    assert sorted(by_name) == ["builtin", "custom-5to1", "medical"]
    medical = by_name["medical"]
    assert medical["threshold"] == 0.3 and medical["margin"] == 0.1
    assert medical["loss"] == {"type": "custom", "fn_cost": 200.0, "fp_cost": 1.0}
    assert medical["features"] == FEATURES
    assert medical["version"] == "test-1"


def test_model_card_without_held_out_arrays(client, model_dir):
    card = client.get("/models/custom-5to1").json()
    on_disk = json.loads((model_dir / "custom-5to1" / "model-card.json").read_text())
    assert "held_out" not in card
    del on_disk["held_out"]
    assert card == on_disk


# --------------------------------------------------------------------------- /predict


def test_predict_arrays_uses_default_model_and_card_threshold(client, sample, specs, model_dir):
    response = client.post("/predict", content=(DATA / "predict_arrays.json").read_bytes())
    assert response.status_code == 200
    assert response.headers["content-type"] == JSON
    body = response.json()
    assert (body["model"], body["version"]) == ("medical", "test-1")
    assert (body["threshold"], body["margin"]) == (0.3, 0.1)
    check_predictions(body["predictions"], ort_scores(model_dir, "medical", sample), 0.3, 0.1)
    scores = [p["score"] for p in body["predictions"]]
    np.testing.assert_allclose(scores, specs["medical"].expected_scores(sample), rtol=0, atol=1e-6)


def test_predict_objects_with_model_threshold_margin(client, sample, specs, model_dir):
    response = client.post(
        "/predict",
        content=(DATA / "predict_objects.json").read_bytes(),
        headers={"content-type": JSON},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["model"], body["threshold"], body["margin"]) == ("builtin", 0.7, 0.2)
    check_predictions(body["predictions"], ort_scores(model_dir, "builtin", sample), 0.7, 0.2)


def test_predict_objects_in_any_key_order_match_arrays(client, sample):
    shuffled = [dict(reversed(list(zip(FEATURES, row, strict=True)))) for row in sample.tolist()]
    # the same request id both times, so that the answers' prediction ids agree too
    same_ids = {"X-Request-ID": "order"}
    by_object = client.post("/predict", json={"instances": shuffled}, headers=same_ids).json()
    by_array = client.post("/predict", json={"instances": sample.tolist()}, headers=same_ids)
    assert by_object == by_array.json()


def test_predict_scores_span_both_labels(client, instances, specs):
    """The oracle check on a larger batch where the labels are mixed."""
    body = client.post("/predict", json={"instances": instances.tolist(), "threshold": 0.5}).json()
    scores = np.array([p["score"] for p in body["predictions"]])
    np.testing.assert_allclose(
        scores, specs["medical"].expected_scores(instances), rtol=0, atol=1e-6
    )
    assert 0 < sum(p["label"] for p in body["predictions"]) < len(instances)


# --------------------------------------------------------------------------- /invocations


@pytest.mark.parametrize(
    ("payload", "content_type"),
    [
        ("instances.csv", CSV),
        ("instances.csv", "text/csv; label_size=0"),
        ("instances.csv", "text/csv; charset=utf-8"),
        ("instances.jsonl", JSONL),
        ("instances.jsonl", "application/x-jsonlines"),
        ("predict_arrays.json", JSON),
    ],
)
def test_invocations_content_types(client, model_dir, sample, payload, content_type):
    response = client.post(
        "/invocations",
        content=(DATA / payload).read_bytes(),
        headers={"content-type": content_type},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == JSON  # no Accept: JSON
    check_predictions(
        response.json()["predictions"], ort_scores(model_dir, "medical", sample), 0.3, 0.1
    )


def parse_csv_answer(text: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        # The fixture cards record no training ranges, so out_of_range is always empty.
        score, label, close, out_of_range = line.split(",")
        assert out_of_range == ""
        out.append({"score": float(score), "label": int(label), "close_confusion": close == "true"})
    return out


@pytest.mark.parametrize(
    ("accept", "expected_type"),
    [
        (None, JSON),
        ("*/*", JSON),
        ("application/json", JSON),
        ("text/csv", CSV),
        ("text/*", CSV),
        ("application/jsonlines", JSONL),
        ("application/x-jsonlines", JSONL),
        ("text/html;q=0.9, text/csv;q=0.5", CSV),
        ("application/json;q=0.2, application/jsonlines", JSONL),
        ("*/*;q=0.1, text/csv", CSV),
    ],
)
def test_invocations_accept(client, model_dir, sample, accept, expected_type):
    headers = {"content-type": CSV}
    if accept is not None:
        headers["accept"] = accept
    response = client.post(
        "/invocations", content=(DATA / "instances.csv").read_bytes(), headers=headers
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].split(";")[0] == expected_type
    if expected_type == JSON:
        predictions = response.json()["predictions"]
    elif expected_type == CSV:
        predictions = parse_csv_answer(response.text)
    else:
        predictions = [json.loads(line) for line in response.text.splitlines()]
    assert len(predictions) == len(sample)
    check_predictions(predictions, ort_scores(model_dir, "medical", sample), 0.3, 0.1)


@pytest.mark.parametrize(
    ("headers", "model", "threshold", "margin"),
    [
        ({"X-Amzn-SageMaker-Target-Model": "builtin"}, "builtin", 0.5, 0.1),
        ({"X-Amzn-SageMaker-Target-Model": "prefix/custom-5to1.tar.gz"}, "custom-5to1", 0.4, 0.05),
        ({"X-Amzn-SageMaker-Custom-Attributes": "model=builtin"}, "builtin", 0.5, 0.1),
        (
            {"X-Amzn-SageMaker-Custom-Attributes": "trace=abc, model=builtin,threshold=0.25"},
            "builtin",
            0.25,
            0.1,
        ),
        ({"X-Amzn-SageMaker-Custom-Attributes": "threshold=0.9;margin=0.3"}, "medical", 0.9, 0.3),
        (
            {
                "X-Amzn-SageMaker-Target-Model": "custom-5to1",
                "X-Amzn-SageMaker-Custom-Attributes": "model=builtin",
            },
            "custom-5to1",
            0.4,
            0.05,
        ),
        ({"X-Some-Other-Header": "model=builtin"}, "medical", 0.3, 0.1),
    ],
)
def test_invocations_sagemaker_headers(
    client, model_dir, sample, headers, model, threshold, margin
):
    response = client.post(
        "/invocations",
        content=(DATA / "instances.csv").read_bytes(),
        headers={"content-type": CSV, **headers},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["model"], body["threshold"], body["margin"]) == (model, threshold, margin)
    check_predictions(body["predictions"], ort_scores(model_dir, model, sample), threshold, margin)


def test_invocations_headers_override_json_body(client):
    response = client.post(
        "/invocations",
        content=(DATA / "predict_objects.json").read_bytes(),  # names builtin, 0.7, 0.2
        headers={
            "content-type": JSON,
            "X-Amzn-SageMaker-Custom-Attributes": "model=custom-5to1,threshold=0.1",
        },
    )
    body = response.json()
    assert (body["model"], body["threshold"], body["margin"]) == ("custom-5to1", 0.1, 0.2)


def test_large_csv_under_the_limit_is_scored(client, model_dir, instances, settings):
    """Big enough to be decoded off the event loop; every row comes back, in order."""
    rows = np.tile(instances, (40, 1))
    body = "".join(",".join(f"{v:.4f}" for v in row) + "\n" for row in rows).encode()
    assert 64 * 1024 < len(body) < settings.max_body_bytes
    response = client.post(
        "/invocations", content=body, headers={"content-type": CSV, "accept": CSV}
    )
    assert response.status_code == 200
    predictions = parse_csv_answer(response.text)
    check_predictions(predictions, ort_scores(model_dir, "medical", rows), 0.3, 0.1)


# --------------------------------------------------------------------------- metrics


def sample_value(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{"):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
            if found == labels:
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_requests_predictions_and_close_rate(client):
    before = client.get("/metrics").text
    response = client.post(
        "/invocations",
        content=(DATA / "instances.csv").read_bytes(),
        headers={"content-type": CSV, "X-Amzn-SageMaker-Target-Model": "custom-5to1"},
    )
    predictions = response.json()["predictions"]
    after = client.get("/metrics")
    assert after.headers["content-type"].startswith("text/plain")
    text = after.text

    def delta(name, **labels):
        return sample_value(text, name, **labels) - sample_value(before, name, **labels)

    requests = delta(
        "costaware_requests_total", endpoint="/invocations", model="custom-5to1", status="200"
    )
    assert requests == 1
    latency = delta(
        "costaware_request_duration_seconds_count", endpoint="/invocations", model="custom-5to1"
    )
    assert latency == 1
    positives = sum(p["label"] for p in predictions)
    assert delta("costaware_predictions_total", model="custom-5to1", label="1") == positives
    negatives = len(predictions) - positives
    assert delta("costaware_predictions_total", model="custom-5to1", label="0") == negatives
    total = sample_value(text, "costaware_predictions_total", model="custom-5to1", label="1")
    total += sample_value(text, "costaware_predictions_total", model="custom-5to1", label="0")
    close = sample_value(text, "costaware_close_confusions_total", model="custom-5to1")
    rate = sample_value(text, "costaware_close_confusion_rate", model="custom-5to1")
    assert rate == pytest.approx(close / total)


def test_metrics_endpoint_label_is_the_route_template(client):
    client.get("/models/medical")
    client.get("/no/such/path")
    text = client.get("/metrics").text
    assert 'endpoint="/models/{name}"' in text
    assert "/no/such/path" not in text


# --------------------------------------------------------------------------- docs


def test_docs_render_offline(client):
    html = client.get("/docs").text
    assert "SwaggerUIBundle" in html
    assert "://" not in html, "the docs page must not load anything from the network"
    for asset in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert client.get(asset).status_code == 200, asset


def test_openapi_documents_the_endpoints(client):
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/ping", "/invocations", "/predict", "/models", "/models/{name}", "/metrics"):
        assert path in paths
    assert "text/csv" in paths["/invocations"]["post"]["requestBody"]["content"]
