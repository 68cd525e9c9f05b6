"""Odd input on every body, on the shipped models (binary and the multiclass wine):
integers beyond float range, a UTF-8 byte order mark, SageMaker target headers that name
no model, and cost or value matrices under which every decision is worth the same."""

from __future__ import annotations

import json
import logging

import pytest
from _servicekit import SHIPPED
from fastapi.testclient import TestClient

from costaware.card import read_any_card
from service.app import create_app
from service.settings import Settings

WINE = read_any_card(SHIPPED / "wine")
CLASSES = list(WINE.classes)
CANCER_ROW = [1.0] * 30
WINE_ROW = [13.0, 2.0, 2.4, 19.0, 100.0, 2.5, 2.5, 0.3, 1.6, 5.0, 1.0, 3.0, 750.0]
HUGE = "1" + "0" * 400  # a JSON integer past float64's range (about 1.8e308)
QALY = {"tp": -35280.0, "fp": -1287.67, "tn": 0.0, "fn": -252000.0}


@pytest.fixture(scope="module")
def client():
    app = create_app(Settings(model_dir=SHIPPED))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def identity(k: int, first: str = "1") -> str:
    rows = [[first if i == j == 0 else str(int(i == j)) for j in range(k)] for i in range(k)]
    return "[" + ",".join("[" + ",".join(row) + "]" for row in rows) + "]"


def cancer(first: str) -> str:
    return "[" + ",".join([first] + ["1"] * 29) + "]"


def value_matrix(first: str = "1") -> str:
    return f'{{"classes":{json.dumps(CLASSES)},"values":{identity(len(CLASSES), first)}}}'


# (path, JSON body with HUGE in it, field the 422 names)
HUGE_BODIES = [
    ("/predict", f'{{"model":"medical","instances":[{cancer(HUGE)}]}}', "instances[0][0]"),
    ("/predict", f"[{cancer(HUGE)}]", "instances[0][0]"),
    (
        "/predict",
        f'{{"model":"medical","instances":[{cancer("1")}],'
        f'"cost_matrix":{{"tp":{HUGE},"fp":0,"tn":0,"fn":-1}}}}',
        "cost_matrix.tp",
    ),
    (
        "/invocations",
        f'{{"model":"medical","instances":[{cancer("1")}],'
        f'"cost_matrix":{{"tp":[{HUGE}],"fp":0,"tn":0,"fn":-1}}}}',
        "cost_matrix.tp[0]",
    ),
    (
        "/predict",
        f'{{"model":"wine","instances":[{json.dumps(WINE_ROW)}],"cost_matrix":{value_matrix(HUGE)}}}',
        "cost_matrix.values[0][0]",
    ),
    ("/predict", f'{{"instances":[{cancer("1")}],"margin":{HUGE}}}', "body.margin"),
    ("/evaluate", f'{{"cost_matrix":{{"tp":{HUGE},"fp":0,"tn":0,"fn":-1}}}}', "cost_matrix.tp"),
    (
        "/evaluate",
        f'{{"models":["medical"],"instances":[{cancer(HUGE)}],"labels":[1],'
        '"cost_matrix":{"tp":1,"fp":0,"tn":0,"fn":-1}}',
        "instances[0][0]",
    ),
    (
        "/evaluate",
        f'{{"scores":[{HUGE}],"labels":[1],"cost_matrix":{{"tp":1,"fp":0,"tn":0,"fn":-1}}}}',
        "scores[0]",
    ),
    (
        "/evaluate",
        f'{{"scores":[0.5],"labels":[{HUGE}],"cost_matrix":{{"tp":1,"fp":0,"tn":0,"fn":-1}}}}',
        "labels[0]",
    ),
    (
        "/evaluate",
        f'{{"models":["wine"],"cost_matrix":{value_matrix(HUGE)}}}',
        "cost_matrix.values",
    ),
    (
        "/evaluate",
        f'{{"scores":[[{HUGE},0,0]],"labels":[0],"cost_matrix":{value_matrix()}}}',
        "scores[0][0]",
    ),
    ("/evaluate", f'{{"cost_matrix":{json.dumps(QALY)},"threshold":{HUGE}}}', "threshold"),
]


@pytest.mark.parametrize(("path", "body", "field"), HUGE_BODIES)
def test_integers_beyond_float_range_are_a_422_naming_the_field(client, caplog, path, body, field):
    with caplog.at_level(logging.ERROR):
        response = client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail.startswith(field), detail
    assert "(401 digits)" in detail and len(detail) < 200  # not the 401 digits themselves
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


def test_integers_beyond_float_range_in_json_lines(client):
    response = client.post(
        "/invocations",
        content=cancer(HUGE) + "\n",
        headers={
            "Content-Type": "application/jsonlines",
            "X-Amzn-SageMaker-Target-Model": "builtin",
        },
    )
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith("body line 1[0] (mean radius): 1000")


# ---------------------------------------------------------------------------------------
# A UTF-8 byte order mark: accepted on every body, the answer as without it

BOM = b"\xef\xbb\xbf"
CSV_ROW = ",".join(map(repr, CANCER_ROW)) + "\n"
BOM_BODIES = [
    ("/predict", "application/json", json.dumps({"instances": [CANCER_ROW]})),
    ("/invocations", "application/json", json.dumps({"model": "wine", "instances": [WINE_ROW]})),
    ("/invocations", "text/csv", CSV_ROW),
    ("/invocations", "application/jsonlines", json.dumps(CANCER_ROW) + "\n"),
    ("/evaluate", "application/json", json.dumps({"cost_matrix": QALY, "models": ["medical"]})),
    ("/evaluate?tp=0&fp=-1&tn=0&fn=-5&models=medical", "text/csv", "1," + CSV_ROW),
]


@pytest.mark.parametrize(("path", "content_type", "body"), BOM_BODIES)
def test_a_leading_byte_order_mark_is_accepted_on_every_body(client, path, content_type, body):
    # one request id for both, so that the answers' prediction ids agree too
    headers = {"Content-Type": content_type, "X-Request-ID": "bom"}
    plain = client.post(path, content=body.encode(), headers=headers)
    marked = client.post(path, content=BOM + body.encode(), headers=headers)
    assert plain.status_code == 200, plain.text
    assert marked.status_code == 200, marked.text
    assert marked.content == plain.content


@pytest.mark.parametrize("path", ["/predict", "/evaluate"])
def test_a_body_that_is_not_utf8_is_refused_alike(client, path):
    # UTF-16 (which json.loads of bytes would take) is refused as /predict refuses it.
    body = json.dumps({"cost_matrix": QALY, "instances": [CANCER_ROW]}).encode("utf-16")
    response = client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.json()["detail"] == "body: not UTF-8 text (byte 0)"


# ---------------------------------------------------------------------------------------
# X-Amzn-SageMaker-Target-Model that names no model


@pytest.mark.parametrize("header", ["builtin/", "a/", "/", ".tar.gz", "models/wine/"])
def test_a_target_model_header_naming_nothing_is_a_404(client, header):
    response = client.post(
        "/invocations",
        content=CSV_ROW,
        headers={"Content-Type": "text/csv", "X-Amzn-SageMaker-Target-Model": header},
    )
    assert response.status_code == 404, response.text
    assert repr(header) in response.json()["detail"]


def test_a_blank_target_model_header_is_the_default_model(client):
    response = client.post(
        "/invocations",
        content=CSV_ROW,
        headers={"Content-Type": "text/csv", "X-Amzn-SageMaker-Target-Model": "  "},
    )
    assert response.status_code == 200, response.text


# ---------------------------------------------------------------------------------------
# Matrices under which every decision is worth the same

DEGENERATE_BINARY = [
    {"tp": 0, "fp": 0, "tn": 0, "fn": 0},
    {"tp": 5, "fp": -2, "tn": -2, "fn": 5},  # v_tp = v_fn and v_tn = v_fp
    {"tp": [1, 2], "fp": [3, 0], "tn": [3, 0], "fn": [1, 2]},  # per instance, every one
]
DEGENERATE_VALUES = [[[0, 0, 0]] * 3, [[1, 1, 1], [2, 2, 2], [-3, -3, -3]]]


@pytest.mark.parametrize("matrix", DEGENERATE_BINARY)
@pytest.mark.parametrize("path", ["/predict", "/invocations", "/evaluate"])
def test_a_binary_matrix_without_preference_is_refused(client, path, matrix):
    body = {"model": "medical", "instances": [CANCER_ROW] * 2, "cost_matrix": matrix}
    if path == "/evaluate":
        body = {"scores": [0.2, 0.9], "labels": [0, 1], "cost_matrix": matrix}
    response = client.post(path, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith("cost_matrix: every decision has the same value")


def test_a_binary_matrix_without_preference_is_refused_in_the_query(client):
    response = client.post("/evaluate?tp=1&fp=0&tn=0&fn=1")
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith("query: every decision has the same value")


def test_a_matrix_with_one_instance_without_preference_is_accepted(client):
    # A zero-amount transaction is indifferent; the request as a whole is not.
    matrix = {"tp": [0, 10], "fp": [0, -1], "tn": [0, 0], "fn": [0, -10]}
    body = {"model": "medical", "instances": [CANCER_ROW] * 2, "cost_matrix": matrix}
    assert client.post("/predict", json=body).status_code == 200


@pytest.mark.parametrize("values", DEGENERATE_VALUES)
@pytest.mark.parametrize("path", ["/predict", "/invocations", "/evaluate"])
def test_a_value_matrix_without_preference_is_refused(client, path, values):
    matrix = {"classes": CLASSES, "values": values}
    body = {"model": "wine", "instances": [WINE_ROW], "cost_matrix": matrix}
    if path == "/evaluate":
        body = {"models": ["wine"], "cost_matrix": matrix}
    response = client.post(path, json=body)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail.startswith("cost_matrix.values: every decision has the same value"), detail
