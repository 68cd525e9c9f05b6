"""``POST /evaluate`` for multiclass models with the value matrix in the query string
(``value_matrix``, the JSON body's ``cost_matrix`` as JSON text): with a ``text/csv`` body
of labelled rows, or with no body (each card's held-out split). Every answer is compared
with the JSON body's answer for the same matrix and data; every refusal names its field."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _servicekit import SHIPPED
from fastapi.testclient import TestClient

from costaware.card import read_any_card
from service.app import create_app
from service.settings import Settings

WINE = read_any_card(SHIPPED / "wine")
CLASSES = list(WINE.classes)
# Not the card's matrix, so that a route falling back to the card's would be seen.
MATRIX = {"classes": CLASSES, "values": [[90, -25, -40], [-250, 55, -5], [-320, -70, 65]]}
CSV = {"Content-Type": "text/csv"}


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(Settings(model_dir=SHIPPED))) as client:
        yield client


@pytest.fixture(scope="module")
def wine_rows() -> tuple[list[list[float]], list[int]]:
    from sklearn.datasets import load_wine

    data = load_wine()
    return data.data[::4].tolist(), data.target[::4].tolist()


def csv_of(rows: list[list[float]], labels: list[object]) -> str:
    return "".join(f"{y},{','.join(map(repr, x))}\n" for x, y in zip(rows, labels, strict=True))


def post_csv(client, text: str, **params):
    return client.post("/evaluate", params=params, content=text.encode(), headers=CSV)


def test_no_body_values_each_held_out_split_as_the_json_body_does(client):
    by_query = client.post("/evaluate", params={"value_matrix": json.dumps(MATRIX)})
    assert by_query.status_code == 200, by_query.text
    by_json = client.post("/evaluate", json={"cost_matrix": MATRIX})
    assert by_json.status_code == 200
    assert by_query.json() == by_json.json()
    assert by_query.json()["data"] == "held_out"
    assert by_query.json()["cost_matrix"]["values"] == MATRIX["values"]


def test_csv_rows_with_class_names_or_indices_equal_the_json_instances(client, wine_rows):
    rows, labels = wine_rows
    mixed = [CLASSES[y] if i % 2 else y for i, y in enumerate(labels)]
    response = post_csv(client, csv_of(rows, mixed), value_matrix=json.dumps(MATRIX))
    assert response.status_code == 200, response.text
    by_csv = response.json()
    by_json = client.post(
        "/evaluate", json={"cost_matrix": MATRIX, "instances": rows, "labels": labels}
    ).json()
    assert by_csv["data"] == "csv" and by_json["data"] == "instances"
    assert by_csv["results"] == by_json["results"]
    (result,) = by_csv["results"]
    assert result["n"] == len(rows)
    assert np.sum(result["confusion"]["counts"]) == len(rows)
    # The dollars of each cell are its count times the matrix's value.
    np.testing.assert_allclose(
        result["confusion"]["value"],
        np.asarray(result["confusion"]["counts"]) * np.asarray(MATRIX["values"]),
    )
    always = result["always"]
    best = max(CLASSES, key=lambda c: always[c]["expected_value"])
    assert result["best_single_class"] == {"class": best, **always[best]}


def test_models_in_the_query_choose_the_multiclass_model(client, wine_rows):
    rows, labels = wine_rows
    response = post_csv(
        client, csv_of(rows[:6], labels[:6]), value_matrix=json.dumps(MATRIX), models="wine"
    )
    assert response.status_code == 200, response.text
    assert [r["model"] for r in response.json()["results"]] == ["wine"]


ROW = "13.2,1.78,2.14,11.2,100,2.65,2.76,0.26,1.28,4.38,1.05,3.4,1050"


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({"value_matrix": "{classes"}, "query.value_matrix: not JSON (column 2"),
        ({"value_matrix": "[1, 2]"}, "query.value_matrix: expected an object"),
        (
            {"value_matrix": json.dumps({**MATRIX, "values": [[1, "x", 3], [1, 2, 3], [1, 2, 3]]})},
            "query.value_matrix.values[0][1]: 'x' is not a number",
        ),
        (
            {"value_matrix": json.dumps({**MATRIX, "values": [[1, 2], [3, 4]]})},
            "query.value_matrix.values",
        ),
        (
            {
                "value_matrix": '{"classes": ["class_0", "class_1", "class_2"], '
                '"values": [[NaN, 0, 0], [0, 1, 0], [0, 0, 1]]}'
            },
            "query.value_matrix.values[0][0]",
        ),
        (
            {"value_matrix": json.dumps({"classes": ["a", "b"], "values": [[1, 0], [0, 1]]})},
            "query.value_matrix.classes",
        ),
        ({"value_matrix": json.dumps(MATRIX), "tp": "1"}, "query.tp: not with"),
        ({"value_matrix": json.dumps(MATRIX), "threshold": "0.5"}, "query.threshold"),
        ({"value_matrix": json.dumps(MATRIX), "margin": "0.5"}, "query.margin"),
        ({"value_matrix": json.dumps(MATRIX), "models": "medical"}, "query.models[0]"),
    ],
)
def test_bad_value_matrix_queries_are_named(client, params, detail):
    response = client.post("/evaluate", params=params)
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith(detail), response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (
            f"class_0,{ROW}\nmerlot,{ROW}\n",
            "body, row 2, column 1 (label): 'merlot' is not a class",
        ),
        (f"0,{ROW}\n\n3,{ROW}\n", "body, row 3, column 1 (label): 3 is not a class name"),
        (f"0,{ROW}\n1.5,{ROW}\n", "body, row 2, column 1 (label): 1.5 is not a class name"),
        (f"0,{ROW.replace('2.14', 'x')}\n", "body, row 1, column 4 (ash)"),
        ("0,1,2\n", "body, row 1: expected 14 columns"),
    ],
)
def test_bad_csv_rows_are_named(client, body, detail):
    response = post_csv(client, body, value_matrix=json.dumps(MATRIX))
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith(detail), response.json()["detail"]


def test_an_unknown_model_in_the_query_is_a_404_naming_it(client):
    response = client.post(
        "/evaluate", params={"value_matrix": json.dumps(MATRIX), "models": "nope"}
    )
    assert response.status_code == 404
    assert response.json()["detail"].startswith("query.models"), response.json()


def test_beside_a_json_body_the_query_value_matrix_overrides_its_cost_matrix(client):
    # As every query option beside a JSON body (issue 22 item 11).
    identity = {"classes": CLASSES, "values": np.eye(3).tolist()}
    by_query = client.post(
        "/evaluate", params={"value_matrix": json.dumps(MATRIX)}, json={"cost_matrix": identity}
    )
    by_body = client.post("/evaluate", json={"cost_matrix": MATRIX})
    assert by_query.status_code == 200, by_query.text
    assert by_query.json() == by_body.json()


def test_binary_csv_without_a_value_matrix_is_unchanged(client):
    """A text/csv body with tp, fp, tn and fn still values the binary models."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    text = "".join(
        f"{1 - y},{','.join(map(repr, x))}\n"
        for x, y in zip(data.data[:8].tolist(), data.target[:8], strict=True)
    )
    response = post_csv(client, text, tp="-1", fp="-1", tn="0", fn="-5")
    assert response.status_code == 200, response.text
    assert "wine" not in [r["model"] for r in response.json()["results"]]
