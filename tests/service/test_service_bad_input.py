"""Every bad input in issue 3 gets a 4xx ``{"error", "detail"}`` naming what and where, and
the server keeps serving afterwards."""

from __future__ import annotations

import asyncio
import json

import pytest
from _servicekit import DATA
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.routes.errors import install_error_handlers

JSON, CSV, JSONL = "application/json", "text/csv", "application/jsonlines"

# (payload file, endpoint, content type, status, error kind, words the detail must name)
CASES = [
    ("bad_wrong_count.json", "/predict", JSON, 422, "invalid_input", ["instances[1]", "30", "29"]),
    (
        "bad_non_numeric.json",
        "/predict",
        JSON,
        422,
        "invalid_input",
        ["instances[1][3]", "feature 03", "abc"],
    ),
    ("bad_nan.json", "/predict", JSON, 422, "invalid_input", ["NaN"]),
    ("bad_empty_batch.json", "/predict", JSON, 422, "invalid_input", ["empty batch"]),
    (
        "bad_unknown_feature.json",
        "/predict",
        JSON,
        422,
        "invalid_input",
        ["instances[0]", "unknown feature", "radius"],
    ),
    (
        "bad_missing_feature.json",
        "/predict",
        JSON,
        422,
        "invalid_input",
        ["instances[0]", "missing feature", "feature 07"],
    ),
    ("bad_threshold.json", "/predict", JSON, 422, "invalid_input", ["threshold", "[0, 1]"]),
    ("bad_margin.json", "/predict", JSON, 422, "invalid_input", ["margin", "[0, 1]"]),
    ("bad_unknown_field.json", "/predict", JSON, 422, "invalid_input", ["treshold"]),
    ("bad_malformed.json", "/predict", JSON, 400, "malformed_request", ["line 1", "column"]),
    ("bad_malformed.json", "/invocations", JSON, 400, "malformed_request", ["malformed JSON"]),
    ("bad_malformed.jsonl", "/invocations", JSONL, 400, "malformed_request", ["line 2"]),
    ("bad_nan.jsonl", "/invocations", JSONL, 422, "invalid_input", ["line 2", "feature 29"]),
    ("bad_ragged.csv", "/invocations", CSV, 422, "invalid_input", ["row 2", "31"]),
    (
        "bad_non_numeric.csv",
        "/invocations",
        CSV,
        422,
        "invalid_input",
        ["row 2", "column 5", "feature 04", "abc"],
    ),
    (
        "bad_infinity.csv",
        "/invocations",
        CSV,
        422,
        "invalid_input",
        ["row 3", "column 10", "feature 09", "finite"],
    ),
    ("bad_empty.csv", "/invocations", CSV, 422, "invalid_input", ["empty"]),
    ("bad_wrong_count.json", "/invocations", JSON, 422, "invalid_input", ["instances[1]"]),
]


@pytest.mark.parametrize(
    ("payload", "endpoint", "content_type", "status", "kind", "names"),
    CASES,
    ids=[f"{case[1]}-{case[0]}" for case in CASES],
)
def test_bad_payload_is_a_clear_4xx(client, payload, endpoint, content_type, status, kind, names):
    response = client.post(
        endpoint, content=(DATA / payload).read_bytes(), headers={"content-type": content_type}
    )
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "detail"}
    assert body["error"] == kind
    for word in names:
        assert word in body["detail"], (word, body["detail"])
    # Nothing already served is lost: the next good request still works.
    assert client.get("/ping").status_code == 200


@pytest.mark.parametrize(
    ("endpoint", "content_type"),
    [("/predict", JSON), ("/invocations", JSON), ("/invocations", JSONL), ("/evaluate", JSON)],
)
def test_deeply_nested_json_is_400_not_a_crash(client, endpoint, content_type):
    # Deeper than the JSON parsers' recursion limits (orjson's and the standard library's).
    response = client.post(endpoint, content=b"[" * 100_000, headers={"content-type": content_type})
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "malformed_request"
    assert "nested too deeply" in response.json()["detail"]
    assert client.get("/ping").status_code == 200


def test_unknown_model_is_404(client):
    body = (DATA / "predict_arrays.json").read_text().replace("{", '{"model": "nope", ', 1)
    response = client.post("/predict", content=body, headers={"content-type": JSON})
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    assert "nope" in response.json()["detail"]
    assert "medical" in response.json()["detail"]  # lists what is loaded


@pytest.mark.parametrize(
    "header",
    [
        {"X-Amzn-SageMaker-Target-Model": "nope.tar.gz"},
        {"X-Amzn-SageMaker-Custom-Attributes": "model=nope"},
    ],
)
def test_unknown_model_by_header_is_404(client, header):
    response = client.post(
        "/invocations",
        content=(DATA / "instances.csv").read_bytes(),
        headers={"content-type": CSV, **header},
    )
    assert response.status_code == 404
    assert "'nope'" in response.json()["detail"]


def test_unknown_model_card_is_404(client):
    response = client.get("/models/nope")
    assert response.status_code == 404
    assert response.json() == {
        "error": "not_found",
        "detail": "unknown model 'nope'; loaded models: ['builtin', 'custom-5to1', 'medical']",
    }


@pytest.mark.parametrize(
    ("endpoint", "content_type"),
    [
        ("/invocations", "application/x-www-form-urlencoded"),
        ("/invocations", "text/plain"),
        ("/invocations", None),
        ("/invocations", "text/csv; label_size=1"),
        ("/predict", "text/csv"),
    ],
)
def test_unsupported_content_type_is_415(client, endpoint, content_type):
    headers = {"content-type": content_type} if content_type else {}
    response = client.post(endpoint, content=(DATA / "instances.csv").read_bytes(), headers=headers)
    assert response.status_code == 415, response.text
    assert response.json()["error"] == "unsupported_media_type"


@pytest.mark.parametrize(
    ("endpoint", "accept"),
    [
        ("/invocations", "application/xml"),
        ("/invocations", "text/html, image/*"),
        ("/invocations", "application/json;q=0, text/csv;q=0, application/jsonlines;q=0"),
        ("/predict", "text/csv"),
    ],
)
def test_unsatisfiable_accept_is_406(client, endpoint, accept):
    response = client.post(
        endpoint,
        content=(DATA / "predict_arrays.json").read_bytes(),
        headers={"content-type": JSON, "accept": accept},
    )
    assert response.status_code == 406, response.text
    assert response.json()["error"] == "not_acceptable"
    assert accept in response.json()["detail"]


@pytest.mark.parametrize(
    ("attributes", "field"),
    [("threshold=2", "threshold"), ("margin=abc", "margin"), ("threshold=-0.5", "threshold")],
)
def test_bad_custom_attribute_names_the_header(client, attributes, field):
    response = client.post(
        "/invocations",
        content=(DATA / "instances.csv").read_bytes(),
        headers={"content-type": CSV, "X-Amzn-SageMaker-Custom-Attributes": attributes},
    )
    assert response.status_code == 422
    assert f"X-Amzn-SageMaker-Custom-Attributes {field}" in response.json()["detail"]


def test_body_over_limit_declared_is_413(client, settings):
    too_big = b"1" * (settings.max_body_bytes + 1)
    response = client.post("/invocations", content=too_big, headers={"content-type": CSV})
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    assert str(settings.max_body_bytes) in response.json()["detail"]
    assert client.get("/ping").status_code == 200


def test_body_over_limit_streamed_is_413_before_all_is_read(app, client, settings):
    """Drive the ASGI app directly with a chunked body (no Content-Length) and count how
    much of it the service pulls: it must stop at the limit, not read everything."""
    chunk = b"1" * 8192
    n_chunks = 4 * settings.max_body_bytes // len(chunk)
    pulled = 0
    sent: list[dict] = []

    async def receive():
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": chunk, "more_body": pulled < n_chunks}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/invocations",
        "raw_path": b"/invocations",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"text/csv"), (b"transfer-encoding", b"chunked")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert start["status"] == 413
    assert json.loads(body)["error"] == "payload_too_large"
    assert pulled * len(chunk) <= settings.max_body_bytes + len(chunk)
    assert pulled < n_chunks
    assert client.get("/ping").status_code == 200


def test_unknown_route_and_method_use_the_error_shape(client):
    assert client.get("/nowhere").json() == {
        "error": "not_found",
        "detail": "no route GET /nowhere",
    }
    response = client.get("/predict")
    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"


def test_framework_validation_errors_use_the_error_shape():
    """Routes that let FastAPI validate (e.g. typed query parameters) get the same body,
    with the field's location in the detail."""
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/typed")
    async def typed(count: int) -> dict[str, int]:
        return {"count": count}

    with TestClient(app) as test_client:
        response = test_client.get("/typed", params={"count": "many"})
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_request"
    assert response.json()["detail"].startswith("query.count: ")
