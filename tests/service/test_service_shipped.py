"""The shipped models through the service: the scores it returns on the reference test
split equal onnxruntime's own, run directly on the same files."""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import onnxruntime as ort
import pytest
from _servicekit import SHIPPED, csv_body
from fastapi.testclient import TestClient
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

from service.app import create_app
from service.settings import Settings

NAMES = ("builtin", "custom-5to1", "medical")


@pytest.fixture(scope="module")
def reference_test_split() -> tuple[np.ndarray, np.ndarray]:
    data = load_breast_cancer()
    y = 1 - data.target  # malignant = 1
    _, x_test, _, y_test = train_test_split(data.data, y, test_size=0.25, random_state=1)
    return x_test, y_test


@pytest.fixture(scope="module")
def shipped_client() -> Iterator[TestClient]:
    missing = [name for name in NAMES if not (SHIPPED / name / "model.onnx").is_file()]
    if missing:
        pytest.fail(f"shipped models missing under {SHIPPED}: {missing}")
    with TestClient(create_app(Settings(model_dir=SHIPPED))) as client:
        yield client


def direct_scores(name: str, x: np.ndarray) -> np.ndarray:
    card = json.loads((SHIPPED / name / "model-card.json").read_text())
    session = ort.InferenceSession(str(SHIPPED / name / "model.onnx"))
    (out,) = session.run([card["onnx"]["output_name"]], {card["onnx"]["input_name"]: x})
    return out.reshape(-1)


def test_all_three_shipped_models_load(shipped_client):
    ready = shipped_client.get("/health/ready").json()
    assert ready["models"] == sorted([*NAMES, "tuned", "wine"]) and not ready["refused"]
    assert shipped_client.get("/models").json()["default"] == "medical"


@pytest.mark.parametrize("name", NAMES)
def test_scores_equal_onnxruntime_on_reference_split(shipped_client, reference_test_split, name):
    x_test, y_test = reference_test_split
    assert len(x_test) == 143 and int(y_test.sum()) == 55
    expected = direct_scores(name, x_test.astype(np.float32))

    by_json = shipped_client.post("/predict", json={"model": name, "instances": x_test.tolist()})
    assert by_json.status_code == 200
    json_scores = np.array([p["score"] for p in by_json.json()["predictions"]], dtype=np.float32)
    np.testing.assert_array_equal(json_scores, expected)

    by_csv = shipped_client.post(
        "/invocations",
        content=csv_body(x_test),
        headers={
            "content-type": "text/csv",
            "accept": "text/csv",
            "X-Amzn-SageMaker-Target-Model": name,
        },
    )
    csv_scores = np.array(
        [float(line.split(",")[0]) for line in by_csv.text.splitlines()], dtype=np.float32
    )
    np.testing.assert_array_equal(csv_scores, expected)


def test_shipped_card_threshold_drives_labels(shipped_client, reference_test_split):
    x_test, _ = reference_test_split
    card = shipped_client.get("/models/medical").json()
    body = shipped_client.post("/predict", json={"instances": x_test[:20].tolist()}).json()
    assert body["threshold"] == card["threshold"]
    for prediction in body["predictions"]:
        assert prediction["label"] == int(prediction["score"] >= card["threshold"])
