"""The document states what each shipped model takes (service.openapi): checked here with
jsonschema on bodies built from the model cards, next to what the service answers to the
same bodies. schemathesis (test_contract.py) generates thousands more."""

from __future__ import annotations

import json

import jsonschema
import pytest
from _servicekit import SHIPPED
from fastapi.testclient import TestClient

from costaware.card import MulticlassCard, read_any_card
from service.app import create_app
from service.openapi import model_groups
from service.settings import Settings

CARDS = {path.name: read_any_card(path) for path in sorted(SHIPPED.iterdir())}
BINARY = sorted(name for name, card in CARDS.items() if not isinstance(card, MulticlassCard))
COSTS = {"tp": 1, "fp": -1, "tn": 0, "fn": [-5, -6]}
WINE = CARDS["wine"]
VALUES = {"classes": WINE.classes, "values": [[1, 0, 0], [0, 1, 0], [0, 0, 1]]}


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(Settings(model_dir=SHIPPED))) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def document(client):
    return client.get("/openapi.json").json()


def inside(name: str) -> list[float]:
    """A row inside the model's training range: the middle of each feature's."""
    return [(item.min + item.max) / 2 for item in CARDS[name].feature_ranges]


def body_schema(document, path: str, media: str = "application/json") -> jsonschema.Validator:
    schema = document["paths"][path]["post"]["requestBody"]["content"][media]["schema"]
    # The references point into the document's components.
    return jsonschema.Draft202012Validator({**schema, "components": document["components"]})


def test_shipped_models_form_two_groups():
    from service.registry import ModelRegistry

    registry = ModelRegistry.load(SHIPPED, "medical")
    groups = model_groups(registry.loaded())
    assert [(group.names, group.multiclass) for group in groups] == [
        (tuple(BINARY), False),
        (("wine",), True),
    ]


def predict_bodies():
    """(body, what the document and the service must agree on: accepted or not)."""
    rows = {name: [inside(name), inside(name)] for name in CARDS}
    wide, narrow = rows["medical"], rows["wine"]
    bodies = []
    for name in CARDS:
        ok = {"model": name, "instances": rows[name]}
        bodies += [
            (ok, True),
            ({**ok, "instances": [row[:-1] for row in rows[name]]}, False),
            ({**ok, "instances": [[*row, 0.0] for row in rows[name]]}, False),
            (
                {**ok, "instances": [dict(zip(CARDS[name].features, rows[name][0], strict=True))]},
                True,
            ),
        ]
    for name in BINARY:
        ok = {"model": name, "instances": wide}
        bodies += [
            ({**ok, "cost_matrix": COSTS, "margin": 25.0}, True),
            ({**ok, "margin": 25.0}, False),  # a score margin is in [0, 1]
            ({**ok, "cost_matrix": COSTS, "threshold": 0.5}, False),
            ({**ok, "cost_matrix": VALUES}, False),
            ({**ok, "threshold": 0.2, "margin": 0.05, "on_out_of_range": "refuse"}, True),
        ]
    wine = {"model": "wine", "instances": narrow}
    bodies += [
        ({**wine, "cost_matrix": VALUES, "margin": 3.0}, True),
        ({**wine, "cost_matrix": None, "margin": None}, True),
        ({**wine, "cost_matrix": COSTS}, False),
        ({**wine, "cost_matrix": {**VALUES, "classes": ["a", "b", "c"]}}, False),
        ({**wine, "cost_matrix": {**VALUES, "values": [[1, 0], [0, 1]]}}, False),
        ({**wine, "threshold": 0.5}, False),
        ({"instances": wide}, True),  # the default model, medical
        ({"instances": narrow}, False),
        (wide, True),
        (narrow, False),
    ]
    return bodies


@pytest.mark.parametrize(("body", "accepted"), predict_bodies())
def test_predict_document_and_service_agree(client, document, body, accepted):
    schema_says = body_schema(document, "/predict").is_valid(body)
    response = client.post("/predict", json=body)
    assert schema_says == accepted
    assert (response.status_code == 200) == accepted, response.text
    if not accepted:
        assert response.status_code == 422


@pytest.mark.parametrize("name", CARDS)
def test_invocations_text_bodies_have_one_pattern_per_width(client, document, name):
    row = inside(name)
    csv = ",".join(repr(round(value, 3)) for value in row) + "\n"
    lines = json.dumps([round(value, 3) for value in row], separators=(",", ":")) + "\n"
    for media, good, bad in [
        ("text/csv", csv, csv.replace(",", ",1,", 1)),
        ("application/jsonlines", lines, lines.replace("[", "[1,", 1)),
    ]:
        validator = body_schema(document, "/invocations", media)
        assert validator.is_valid(good) and not validator.is_valid(bad)
        headers = {"content-type": media, "X-Amzn-SageMaker-Target-Model": name}
        assert client.post("/invocations", content=good, headers=headers).status_code == 200
        assert client.post("/invocations", content=bad, headers=headers).status_code == 422


EVALUATE = [
    ({"cost_matrix": COSTS | {"fn": -5}, "models": ["tuned"]}, True),
    ({"cost_matrix": COSTS | {"fn": -5}, "models": ["wine"]}, False),
    ({"cost_matrix": VALUES, "models": ["wine"]}, True),
    ({"cost_matrix": VALUES}, True),
    ({"cost_matrix": VALUES, "prevalence": 0.3}, False),
    ({"cost_matrix": VALUES, "threshold": 0.3}, False),
    ({"cost_matrix": VALUES, "instances": [inside("wine")], "labels": ["class_1"]}, True),
    ({"cost_matrix": VALUES, "instances": [inside("wine")], "labels": [2]}, True),
    ({"cost_matrix": VALUES, "instances": [inside("wine")], "labels": [3]}, False),
    ({"cost_matrix": VALUES, "instances": [inside("medical")], "labels": [0]}, False),
    ({"cost_matrix": COSTS | {"fn": -5}, "instances": [inside("wine")], "labels": [0]}, False),
    ({"cost_matrix": COSTS | {"fn": -5}, "instances": [inside("tuned")], "labels": [1]}, True),
    (
        {
            "cost_matrix": {"classes": ["x", "y"], "values": [[1, 0], [0, 1]]},
            "scores": [[0.25, 0.75]],
            "labels": ["y"],
        },
        True,
    ),
]


@pytest.mark.parametrize(("body", "accepted"), EVALUATE)
def test_evaluate_document_and_service_agree(client, document, body, accepted):
    assert body_schema(document, "/evaluate").is_valid(body) == accepted
    response = client.post("/evaluate", json=body)
    assert response.status_code == (200 if accepted else 422), response.text


def test_the_figure_is_documented_for_binary_models_only(document):
    (parameter,) = [
        p
        for p in document["paths"]["/models/{name}/distribution.png"]["get"]["parameters"]
        if p["name"] == "name"
    ]
    assert parameter["schema"]["enum"] == BINARY


TARGETS = [
    "wine",
    " prefix/medical.tar.gz ",
    "custom-5to1.tgz",
    "x/",  # names no model: refused (404), never the default model
    "/",
    "builtin/",
    ".tar.gz",
    "",
    "  ",
    "medical.tgz.tar.gz",
    "medical.tar.gz.tgz",
    "winex",
    "models/wine/extra",
]


@pytest.mark.parametrize("header", TARGETS)
def test_the_target_model_header_pattern_is_the_reading(document, header):
    from service.errors import NotFoundError
    from service.inference import target_model_name

    (parameter, _) = document["paths"]["/invocations"]["post"]["parameters"]
    try:
        name = target_model_name(header)
    except NotFoundError:
        served = False
    else:
        served = not name or name in CARDS
    assert jsonschema.Draft202012Validator(parameter["schema"]).is_valid(header) == served


def value_matrix_schema(document) -> jsonschema.Validator:
    (parameter,) = [
        p
        for p in document["paths"]["/evaluate"]["post"]["parameters"]
        if p["name"] == "value_matrix"
    ]
    schema = parameter["content"]["application/json"]["schema"]
    return jsonschema.Draft202012Validator({**schema, "components": document["components"]})


@pytest.mark.parametrize(
    ("matrix", "label", "accepted"),
    [
        (VALUES, "class_1", True),
        (VALUES, "2", True),
        (VALUES, "3", False),
        (VALUES, "merlot", False),
        ({"classes": ["x", "y"], "values": [[1, 0], [0, 1]]}, "1", False),
        ({**VALUES, "values": [[1, 0], [0, 1]]}, "1", False),
    ],
)
def test_evaluate_csv_with_a_value_matrix_document_and_service_agree(
    client, document, matrix, label, accepted
):
    """The value_matrix query parameter is JSON with the served classes' value matrix;
    the text/csv body has a pattern for wine's rows, its label a class name or index."""
    row = f"{label}," + ",".join(repr(round(value, 3)) for value in inside("wine")) + "\n"
    documented = value_matrix_schema(document).is_valid(matrix) and body_schema(
        document, "/evaluate", "text/csv"
    ).is_valid(row)
    assert documented == accepted
    response = client.post(
        "/evaluate",
        params={"value_matrix": json.dumps(matrix)},
        content=row.encode(),
        headers={"content-type": "text/csv"},
    )
    assert response.status_code == (200 if accepted else 422), response.text


def test_without_a_multiclass_model_no_value_matrix_is_documented(tmp_path):
    (tmp_path / "medical").symlink_to(SHIPPED / "medical")
    with TestClient(create_app(Settings(model_dir=tmp_path))) as client:
        operation = client.get("/openapi.json").json()["paths"]["/evaluate"]["post"]
    assert "value_matrix" not in [p["name"] for p in operation["parameters"]]
