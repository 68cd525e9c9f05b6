"""Answers of a calibrated model carry the graph's ``probability`` beside its ``score``, in
every format; decisions by expected value are taken on that probability and on no other
number; an uncalibrated model's answers say ``"calibrated": false``.

The oracle is numpy on the graph's own outputs, run here by onnxruntime on the folder's
bytes (tests/service/_calibrated.py builds the calibrated folders from the shipped graphs).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from _calibrated import EVEN, graph_outputs
from _servicekit import csv_body
from sklearn.datasets import load_breast_cancer, load_wine


@pytest.fixture(scope="module")
def rows() -> np.ndarray:
    return load_breast_cancer().data[::5]


def oracle(p: np.ndarray, m: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """Expected values of not treating and treating, and the decision, from ``p`` alone."""
    ev_not = p * m["fn"] + (1 - p) * m["tn"]
    ev_treat = p * m["tp"] + (1 - p) * m["fp"]
    return np.column_stack([ev_not, ev_treat]), (ev_treat >= ev_not).astype(int)


def target(name: str) -> dict[str, str]:
    return {"X-Amzn-SageMaker-Target-Model": name}


def shown(values: np.ndarray) -> list:
    """float32 values as the service writes them: the shortest decimal that converts back."""
    return np.asarray(values, dtype=np.float32).astype(str).astype(np.float64).tolist()


def graph(root: Path, rows: np.ndarray, name: str = "medical") -> dict[str, np.ndarray]:
    return {k: v.astype(np.float64) for k, v in graph_outputs(root / name, rows).items()}


@pytest.mark.parametrize("name", ["EVEN", "card"])
def test_decisions_under_a_matrix_come_from_the_graphs_probability(
    calibrated_client, calibrated_dir, rows, name
):
    card = json.loads((calibrated_dir / "medical" / "model-card.json").read_bytes())
    matrix = EVEN if name == "EVEN" else card["cost_matrix"]
    out = graph(calibrated_dir, rows)
    p, s = out["probability"].reshape(-1), out["score"].reshape(-1)
    evs, decisions = oracle(p, matrix)
    score_evs, score_decisions = oracle(s, matrix)
    answer = calibrated_client.post(
        "/predict", json={"model": "medical", "instances": rows.tolist(), "cost_matrix": matrix}
    ).json()
    assert answer["calibrated"] is True
    got = answer["predictions"]
    got_evs = np.array([[r["expected_values"]["0"], r["expected_values"]["1"]] for r in got])
    assert np.allclose(got_evs, evs, rtol=0, atol=1e-6 * np.abs(evs).max())
    assert [r["decision"] for r in got] == decisions.tolist()
    assert [r["probability"] for r in got] == shown(p)
    assert [r["score"] for r in got] == shown(s)
    # From no other number: the raw score gives other expected values (and, under EVEN,
    # other decisions), so the test tells the two apart.
    assert not np.allclose(got_evs, score_evs, rtol=0, atol=1e-3)
    if name == "EVEN":
        assert (decisions != score_decisions).sum() >= 5


def test_the_threshold_decision_stays_on_the_score(calibrated_client, calibrated_dir, rows):
    out = graph(calibrated_dir, rows)
    answer = calibrated_client.post("/predict", json={"instances": rows.tolist()}).json()
    threshold = answer["threshold"]
    got = answer["predictions"]
    assert answer["calibrated"] is True
    assert [r["label"] for r in got] == (out["score"].reshape(-1) >= threshold).astype(int).tolist()
    assert [r["probability"] for r in got] == shown(out["probability"].reshape(-1))


def test_every_format_carries_the_probability(calibrated_client, calibrated_dir, rows):
    out = graph(calibrated_dir, rows)
    p = shown(out["probability"].reshape(-1))
    body = csv_body(rows)
    as_csv = {"content-type": "text/csv", "accept": "text/csv"}
    answer = calibrated_client.post("/invocations", content=body, headers=as_csv)
    lines = list(csv.reader(io.StringIO(answer.text)))
    assert all(len(line) == 5 for line in lines)  # score,label,close,out_of_range,probability
    assert [float(line[4]) for line in lines] == p
    answer = calibrated_client.post(
        "/invocations",
        content=body,
        headers={
            "content-type": "text/csv",
            "accept": "application/jsonlines",
            **target("medical"),
        },
    )
    records = [json.loads(line) for line in answer.text.splitlines()]
    assert [r["probability"] for r in records] == p
    assert all(r["calibrated"] is True for r in records)
    answer = calibrated_client.post(
        "/invocations",
        json={"instances": rows.tolist(), "cost_matrix": EVEN},
        headers={"accept": "text/csv"},
    )
    lines = list(csv.reader(io.StringIO(answer.text)))
    # score,decision,ev_0,ev_1,close_confusion,out_of_range,probability
    assert all(len(line) == 7 for line in lines)
    assert [float(line[6]) for line in lines] == p
    assert [int(line[1]) for line in lines] == oracle(np.array(p), EVEN)[1].tolist()


def test_an_uncalibrated_model_says_so_and_keeps_its_csv_columns(calibrated_client, rows):
    answer = calibrated_client.post(
        "/predict", json={"model": "builtin", "instances": rows.tolist()}
    ).json()
    assert answer["calibrated"] is False
    assert all(r["probability"] is None for r in answer["predictions"])
    valued = calibrated_client.post(
        "/predict", json={"model": "builtin", "instances": rows.tolist(), "cost_matrix": EVEN}
    ).json()
    assert valued["calibrated"] is False
    assert all(r["probability"] is None for r in valued["predictions"])
    csv_answer = calibrated_client.post(
        "/invocations",
        content=csv_body(rows),
        headers={"content-type": "text/csv", "accept": "text/csv", **target("builtin")},
    )
    assert all(len(line) == 4 for line in csv.reader(io.StringIO(csv_answer.text)))
    listing = {
        m["name"]: m["calibrated"] for m in calibrated_client.get("/models").json()["models"]
    }
    assert listing == {"builtin": False, "medical": True, "wine": True}


def test_a_calibrated_multiclass_model_decides_on_its_calibrated_probabilities(
    calibrated_client, calibrated_dir
):
    x = load_wine().data[::6]
    out = graph(calibrated_dir, x, "wine")
    card = json.loads((calibrated_dir / "wine" / "model-card.json").read_bytes())
    values = np.asarray(card["value_matrix"]["values"])
    classes = card["classes"]
    evs = out["probabilities"] @ values
    answer = calibrated_client.post(
        "/predict", json={"model": "wine", "instances": x.tolist()}
    ).json()
    assert answer["calibrated"] is True
    got = answer["predictions"]
    got_evs = np.array([[r["expected_values"][c] for c in classes] for r in got])
    assert np.allclose(got_evs, evs, rtol=0, atol=1e-6 * np.abs(values).max())
    assert [r["decision"] for r in got] == [classes[i] for i in evs.argmax(axis=1)]
    assert [[r["probabilities"][c] for c in classes] for r in got] == shown(out["probabilities"])
    assert [[r["scores"][c] for c in classes] for r in got] == shown(out["scores"])
    assert not np.allclose(got_evs, out["scores"] @ values, rtol=0, atol=1e-3)
    lines = list(
        csv.reader(
            io.StringIO(
                calibrated_client.post(
                    "/invocations",
                    content=csv_body(x),
                    headers={"content-type": "text/csv", "accept": "text/csv", **target("wine")},
                ).text
            )
        )
    )
    # p_1..p_3 (calibrated), decision, ev_1..ev_3, close_confusion, out_of_range, s_1..s_3
    assert all(len(line) == 12 for line in lines)
    assert [[float(v) for v in line[:3]] for line in lines] == shown(out["probabilities"])
    assert [[float(v) for v in line[9:]] for line in lines] == shown(out["scores"])
