"""The prediction endpoints answer the same whichever way a request takes: called directly
by service.middleware (the default, for speed) or through FastAPI's router. Same status,
bytes, headers and metric samples, for every request and response format and every kind of
refusal."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from _servicekit import SHIPPED, csv_body
from fastapi.testclient import TestClient
from sklearn.datasets import load_breast_cancer

from service.app import create_app
from service.routes.common import INLINE_BODY_BYTES
from service.settings import Settings

CSV, JSON, JSONL = "text/csv", "application/json", "application/jsonlines"


def _cases() -> list[tuple[str, str, dict[str, str], bytes]]:
    data = load_breast_cancer()
    x = data.data[:6]
    features = json.loads((SHIPPED / "medical" / "model-card.json").read_text())["features"]
    arrays = {"instances": x.tolist()}
    objects = {"instances": [dict(zip(features, row, strict=True)) for row in x.tolist()]}
    outside = x[:2].copy()
    outside[1, 3] = 1e6  # far outside the training range
    jsonl = "".join(json.dumps(row) + "\n" for row in x.tolist()).encode()
    big = csv_body(np.tile(data.data, (4, 1)))
    assert len(big) > INLINE_BODY_BYTES  # scored in the thread pool
    cases = [
        ("/predict", "one instance", {}, json.dumps({"instances": x[:1].tolist()}).encode()),
        ("/predict", "arrays", {"content-type": JSON}, json.dumps(arrays).encode()),
        ("/predict", "objects", {"content-type": JSON}, json.dumps(objects).encode()),
        ("/predict", "bare list", {}, json.dumps(x[:2].tolist()).encode()),
        (
            "/predict",
            "options",
            {},
            json.dumps({"model": "builtin", "threshold": 0.9, "margin": 0.3, **arrays}).encode(),
        ),
        ("/predict", "flagged", {}, json.dumps({"instances": outside.tolist()}).encode()),
        (
            "/predict",
            "refused",
            {},
            json.dumps({"instances": outside.tolist(), "on_out_of_range": "refuse"}).encode(),
        ),
        ("/predict", "malformed", {}, b'{"instances": [[1, 2'),
        ("/predict", "wrong width", {}, b'{"instances": [[1, 2]]}'),
        ("/predict", "unknown model", {}, b'{"model": "nope", "instances": [[1]]}'),
        ("/predict", "empty", {}, b""),
        ("/predict", "csv to predict", {"content-type": CSV}, csv_body(x)),
        ("/predict", "accept csv", {"accept": CSV}, json.dumps(arrays).encode()),
        ("/predict", "accept any", {"accept": "*/*"}, json.dumps(arrays).encode()),
    ]
    for accept in (CSV, JSON, JSONL, "*/*"):
        cases += [
            (
                "/invocations",
                f"csv to {accept}",
                {"content-type": CSV, "accept": accept},
                csv_body(x),
            ),
            (
                "/invocations",
                f"json to {accept}",
                {"content-type": JSON, "accept": accept},
                json.dumps(arrays).encode(),
            ),
            (
                "/invocations",
                f"jsonl to {accept}",
                {"content-type": JSONL, "accept": accept},
                jsonl,
            ),
        ]
    cases += [
        ("/invocations", "large csv", {"content-type": CSV, "accept": CSV}, big),
        (
            "/invocations",
            "sagemaker headers",
            {
                "content-type": "text/csv; label_size=0",
                "accept": JSONL,
                "x-amzn-sagemaker-target-model": "prefix/custom-5to1.tar.gz",
                "x-amzn-sagemaker-custom-attributes": "threshold=0.2;margin=0.05,other=1",
            },
            csv_body(x),
        ),
        (
            "/invocations",
            "refused by attribute",
            {"content-type": CSV, "x-amzn-sagemaker-custom-attributes": "on_out_of_range=refuse"},
            csv_body(outside),
        ),
        ("/invocations", "bad csv", {"content-type": CSV}, b"1,2,x\n"),
        ("/invocations", "unsupported type", {"content-type": "text/plain"}, b"1,2\n"),
        (
            "/invocations",
            "not acceptable",
            {"content-type": CSV, "accept": "image/png"},
            csv_body(x),
        ),
        ("/invocations", "no content type", {}, csv_body(x)),
        (
            "/invocations",
            "unknown target",
            {"content-type": CSV, "x-amzn-sagemaker-target-model": "nope"},
            csv_body(x),
        ),
    ]
    return cases


CASES = _cases()


@pytest.fixture(scope="module")
def clients():
    settings = Settings(model_dir=SHIPPED)
    with (
        TestClient(create_app(settings)) as direct,
        TestClient(create_app(settings, direct_routes=False)) as routed,
    ):
        yield direct, routed


# Samples that depend on timing or on when a series was created.
# What depends on time, not on the path a request took: latencies, creation stamps, and
# the decision log's written/queued counts (its writer thread flushes on its own clock).
_TIMING = re.compile(
    r"^costaware_request_duration_seconds_(bucket|sum)|_created\b"
    r"|^costaware_decision_log_(written_total|queued)\b"
)


def comparable_metrics(text: str) -> list[str]:
    return sorted(
        line for line in text.splitlines() if not line.startswith("#") and not _TIMING.search(line)
    )


def test_both_paths_give_the_same_answers_and_metrics(clients):
    direct, routed = clients
    statuses = set()
    for path, name, case_headers, body in CASES:
        # one request id for both, so that the answers' prediction ids agree too
        headers = {**case_headers, "X-Request-ID": "same"}
        a = direct.post(path, content=body, headers=headers)
        b = routed.post(path, content=body, headers=headers)
        assert a.status_code == b.status_code, name
        assert a.content == b.content, name
        assert a.headers.multi_items() == b.headers.multi_items(), name
        statuses.add(a.status_code)
    # The cases cover answers and every kind of refusal.
    assert statuses == {200, 400, 404, 406, 415, 422}
    assert comparable_metrics(direct.get("/metrics").text) == comparable_metrics(
        routed.get("/metrics").text
    )


def test_direct_path_is_the_one_taken_by_default(clients, monkeypatch):
    """The comparison above means something only if the two apps differ in the path
    taken: the routed app reaches the endpoint function, the direct one does not."""
    from service.routes import predict

    calls = []
    original = predict.predict_formats

    def spy(header):
        calls.append(header)
        return original(header)

    direct, routed = clients
    body = json.dumps({"instances": load_breast_cancer().data[:1].tolist()}).encode()
    monkeypatch.setattr(predict, "predict_formats", spy)
    assert routed.post("/predict", content=body).status_code == 200
    assert direct.post("/predict", content=body).status_code == 200
    # predict (routed) looks predict_formats up at call time; predict_direct was built
    # with the original at import.
    assert len(calls) == 1
