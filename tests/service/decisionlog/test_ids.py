"""Prediction ids: generated UUIDv7s in RFC 9562's layout, the client's own, a request id
suffixed by the index, in each answer format, and the rows the log records for them."""

from __future__ import annotations

import time
import uuid

import numpy as np
import pytest
from _servicekit import SHIPPED
from fastapi.testclient import TestClient

from costaware.card import read_any_card
from service.app import create_app
from service.decisionlog.ids import uuid7, uuid7_strings
from service.settings import Settings


def test_uuid7_layout_and_order():
    before = time.time_ns() // 1_000_000
    ids = [uuid7() for _ in range(5000)]
    after = time.time_ns() // 1_000_000
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in ids)
    assert all(before <= u.int >> 80 <= after + 1 for u in ids)
    assert ids == sorted(ids, key=lambda u: u.int) and len(set(ids)) == len(ids)
    # in bulk (one request's instances), past 4096 in one millisecond too
    bulk = [uuid.UUID(text) for text in uuid7_strings(10_000)]
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in bulk)
    assert [ids[-1], *bulk] == sorted([ids[-1], *bulk], key=lambda u: u.int)
    assert len(set(bulk)) == len(bulk)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    path = tmp_path_factory.mktemp("log") / "decisions.sqlite"
    settings = Settings(model_dir=SHIPPED, decision_log=f"sqlite+pysqlite:///{path}")
    with TestClient(create_app(settings)) as client:
        yield client


def rows_of(client, n_features=30, n=3):
    return np.random.default_rng(1).normal(0, 1, (n, n_features)).round(3).tolist()


def cancer(n=3):
    card = read_any_card(SHIPPED / "medical")
    ranges = card.feature_ranges
    rng = np.random.default_rng(2)
    return [[float(rng.uniform(r.min, r.max)) for r in ranges] for _ in range(n)]


def test_generated_ids_are_uuid7(client):
    answer = client.post("/predict", json={"instances": cancer()}).json()
    ids = [p["id"] for p in answer["predictions"]]
    assert all(uuid.UUID(i).version == 7 for i in ids) and len(set(ids)) == 3


def test_own_ids_and_request_ids(client):
    own = client.post("/predict", json={"instances": cancer(2), "ids": ["a-1", "b:2"]}).json()
    assert [p["id"] for p in own["predictions"]] == ["a-1", "b:2"]
    headed = client.post(
        "/predict", json={"instances": cancer(2)}, headers={"X-Request-ID": "req7"}
    )
    assert [p["id"] for p in headed.json()["predictions"]] == ["req7-0", "req7-1"]
    sagemaker = client.post(
        "/invocations",
        content="\n".join(",".join(map(str, r)) for r in cancer(2)),
        headers={
            "Content-Type": "text/csv",
            "Accept": "application/jsonlines",
            "X-Amzn-SageMaker-Inference-Id": "inf9",
        },
    )
    lines = [line for line in sagemaker.text.splitlines() if line]
    import json

    assert [json.loads(line)["id"] for line in lines] == ["inf9-0", "inf9-1"]


def test_csv_answers_keep_their_columns(client):
    body = "\n".join(",".join(map(str, r)) for r in cancer(2))
    csv = {"Content-Type": "text/csv", "Accept": "text/csv"}
    answer = client.post("/invocations", content=body, headers=csv)
    # score, label, close_confusion, out_of_range, probability: no id column unless asked
    assert all(len(line.split(",")) == 5 for line in answer.text.splitlines())
    # asked for (a SageMaker custom attribute): the id as a sixth, last column
    asked = {**csv, "X-Amzn-SageMaker-Custom-Attributes": "ids=true", "X-Request-ID": "c"}
    answer = client.post("/invocations", content=body, headers=asked)
    lines = [line.split(",") for line in answer.text.splitlines()]
    assert [line[5] for line in lines] == ["c-0", "c-1"] and {len(line) for line in lines} == {6}


@pytest.mark.parametrize(
    ("ids", "field"),
    [
        (["a"], "body.ids: has 1 ids"),
        (["a", "a"], "body.ids[1]: 'a' appears twice"),
        (["a", "with space"], "body.ids[1]"),
        (["a", 3], "body.ids[1]"),
        (["a", "x" * 201], "body.ids[1]"),
    ],
)
def test_bad_ids_are_422_naming_the_field(client, ids, field):
    answer = client.post("/predict", json={"instances": cancer(2), "ids": ids})
    assert answer.status_code == 422 and field in answer.json()["detail"]


def test_bad_request_id_header_is_422(client):
    answer = client.post("/predict", json={"instances": cancer(1)}, headers={"X-Request-ID": "a b"})
    assert answer.status_code == 422 and "request id header" in answer.json()["detail"]


def test_the_log_records_what_was_answered(client):
    matrix = {"tp": [-1.0, -2.0], "fp": [-3.0, -4.0], "tn": [0.0, 0.5], "fn": [-50.0, -60.0]}
    answer = client.post(
        "/predict", json={"instances": cancer(2), "ids": ["pi-0", "pi-1"], "cost_matrix": matrix}
    ).json()
    log = client.app.state.decision_log
    log.flush()
    logged = log.store.logged(["pi-0", "pi-1"])
    for i, prediction in enumerate(answer["predictions"]):
        entry = logged[f"pi-{i}"]
        assert entry.model == "medical" and entry.decision == prediction["decision"]
        assert entry.matrix == [
            [matrix["tn"][i], matrix["fp"][i]],
            [matrix["fn"][i], matrix["tp"][i]],
        ]
