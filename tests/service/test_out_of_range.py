"""Inputs outside what the model was trained on: every prediction names the features
outside the card's training [min, max]; ``on_out_of_range: refuse`` turns such instances
into a 422 ``out_of_range``; a per-model metric counts them.

Oracle: the training split rebuilt with scikit-learn, its minimum and maximum per feature
taken here with numpy, independently of the card and the service.
"""

from __future__ import annotations

import json
import re

import pytest
from _servicekit import SHIPPED, csv_body
from fastapi.testclient import TestClient
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

from service.app import create_app
from service.settings import Settings

JSON, CSV, JSONL = "application/json", "text/csv", "application/jsonlines"


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(Settings(model_dir=SHIPPED))) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def reference():
    data = load_breast_cancer()
    x_train, x_test, _, _ = train_test_split(
        data.data, 1 - data.target, test_size=0.25, random_state=1
    )
    return {
        "features": [str(name) for name in data.feature_names],
        "low": x_train.min(axis=0),
        "high": x_train.max(axis=0),
        "x_test": x_test,
    }


def expected_names(reference, row) -> list[str]:
    outside = (row < reference["low"]) | (row > reference["high"])
    return [name for name, out in zip(reference["features"], outside, strict=True) if out]


def out_of_range_count(client, model: str) -> float:
    text = client.get("/metrics").text
    match = re.search(rf'^costaware_out_of_range_total{{model="{model}"}} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


@pytest.mark.parametrize("model", ["builtin", "custom-5to1", "medical", "tuned"])
def test_held_out_rows_are_flagged_exactly_as_the_training_range_says(client, reference, model):
    x_test = reference["x_test"]
    response = client.post("/predict", json={"model": model, "instances": x_test.tolist()})
    assert response.status_code == 200
    flags = [p["out_of_range"] for p in response.json()["predictions"]]
    expected = [expected_names(reference, row) for row in x_test]
    assert flags == expected
    inside = sum(1 for names in expected if not names)
    assert inside > 100  # most held-out rows lie inside the training range: all get []


def test_a_row_pushed_outside_names_the_right_features(client, reference):
    row = reference["x_test"][0].copy()
    assert expected_names(reference, row) == []
    features = reference["features"]
    row[features.index("mean radius")] = reference["high"][0] * 1.5
    row[features.index("worst area")] = reference["low"][features.index("worst area")] - 1
    before = out_of_range_count(client, "medical")
    response = client.post(
        "/predict", json={"instances": [row.tolist(), reference["x_test"][0].tolist()]}
    )
    assert response.status_code == 200
    first, second = response.json()["predictions"]
    assert first["out_of_range"] == ["mean radius", "worst area"]
    assert second["out_of_range"] == []
    assert out_of_range_count(client, "medical") == before + 1


def test_refuse_mode_is_a_422_naming_instance_feature_value_and_range(client, reference):
    row = reference["x_test"][0].copy()
    row[2] = -5.0  # mean perimeter below the training minimum
    body = {
        "instances": [reference["x_test"][0].tolist(), row.tolist()],
        "on_out_of_range": "refuse",
    }
    before = out_of_range_count(client, "medical")
    response = client.post("/predict", json=body)
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["error"] == "out_of_range"
    for word in (
        "instances[1]",
        "mean perimeter",
        "-5.0",
        repr(float(reference["low"][2])),
        "'medical'",
    ):
        assert word in error["detail"], (word, error["detail"])
    assert "instances[0]" not in error["detail"]
    assert out_of_range_count(client, "medical") == before + 1
    # Inside the range, refuse mode answers as usual.
    body["instances"] = body["instances"][:1]
    ok = client.post("/predict", json=body)
    assert ok.status_code == 200
    assert ok.json()["predictions"][0]["out_of_range"] == []


def test_bad_on_out_of_range_names_the_field(client, reference):
    body = {"instances": [reference["x_test"][0].tolist()], "on_out_of_range": "ignore"}
    response = client.post("/predict", json=body)
    assert response.status_code == 422
    assert response.json()["detail"].startswith("body.on_out_of_range: expected 'flag' or 'refuse'")


def test_invocations_csv_output_carries_the_names_in_a_fourth_column(client, reference):
    rows = reference["x_test"][:3].copy()
    rows[1, 0] = 1000.0
    rows[1, 1] = 1000.0
    response = client.post(
        "/invocations", content=csv_body(rows), headers={"content-type": CSV, "accept": CSV}
    )
    assert response.status_code == 200
    lines = response.text.splitlines()
    assert [line.split(",")[3] for line in lines] == ["", "mean radius;mean texture", ""]
    as_lines = client.post(
        "/invocations", content=csv_body(rows), headers={"content-type": CSV, "accept": JSONL}
    )
    records = [json.loads(line) for line in as_lines.text.splitlines()]
    assert [r["out_of_range"] for r in records] == [[], ["mean radius", "mean texture"], []]


def test_invocations_refuse_by_custom_attribute(client, reference):
    rows = reference["x_test"][:2].copy()
    rows[1, 29] = 99.0
    response = client.post(
        "/invocations",
        content=csv_body(rows),
        headers={
            "content-type": CSV,
            "X-Amzn-SageMaker-Custom-Attributes": "on_out_of_range=refuse",
            "X-Amzn-SageMaker-Target-Model": "tuned",
        },
    )
    assert response.status_code == 422
    assert response.json()["error"] == "out_of_range"
    assert "body, row 2: worst fractal dimension = 99.0" in response.json()["detail"]


def test_a_card_without_ranges_says_null_not_empty(model_dir, instances):
    """The fixture cards were written without ranges (as cards before they were recorded):
    the answer says it cannot tell (null) rather than claim nothing is outside."""
    with TestClient(create_app(Settings(model_dir=model_dir))) as fixture_client:
        response = fixture_client.post("/predict", json={"instances": instances[:2].tolist()})
    assert [p["out_of_range"] for p in response.json()["predictions"]] == [None, None]
