"""POST /evaluate and GET /models/{name}/distribution.png on the shipped models.

Oracles: plain Python loops over the cards' held-out data with the reference QALY values,
onnxruntime run directly on the model files, scikit-learn's copy of the reference data,
and hand-computed sums.
"""

from __future__ import annotations

import json
import math
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

from costaware.card import read_card
from service.app import create_app
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"
DATA = Path(__file__).parent / "data"
# The reference experiment's three models, and the cost-tuned one shipped beside them.
REFERENCE_MODELS = ("builtin", "custom-5to1", "medical")
SHIPPED = (*REFERENCE_MODELS, "tuned")
QALY = {"tp": -35280.0, "fp": -1287.67, "tn": 0.0, "fn": -252000.0}
QALY_QUERY = "tp=-35280&fp=-1287.67&tn=0&fn=-252000"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def payload(name: str):
    return json.loads((DATA / name).read_text())


def brute_total(labels, scores, threshold, values=QALY) -> float:
    """Sum of outcome values, one patient at a time."""
    total = []
    for y, s in zip(labels, scores, strict=True):
        treat = s >= threshold
        total.append(values[("tp" if treat else "fn") if y == 1 else ("fp" if treat else "tn")])
    return math.fsum(total)


def graph_probability(name: str, x: np.ndarray) -> np.ndarray:
    """The graph's own calibrated ``probability`` output for ``x`` (onnxruntime), [N]."""
    session = ort.InferenceSession(str(MODELS / name / "model.onnx"))
    outputs = session.run(["probability"], {"features": x.astype(np.float32)})
    return outputs[0].ravel()


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE
    return struct.unpack(">II", data[16:24])


# ---------------------------------------------------------------------------
# Fixtures: settings -> app -> client; cards; the reference test split


@pytest.fixture(scope="module")
def settings():
    return Settings(model_dir=MODELS)


@pytest.fixture(scope="module")
def client(settings):
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def cards():
    return {name: read_card(MODELS / name) for name in SHIPPED}


@pytest.fixture(scope="module")
def reference_answer(client):
    response = client.post("/evaluate", json=payload("evaluate_reference.json"))
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def test_split():
    """The reference experiment's test split, rebuilt from scikit-learn (malignant = 1)."""
    x, y = load_breast_cancer(return_X_y=True)
    _, x_test, _, y_test = train_test_split(x, 1 - y, test_size=0.25, random_state=1)
    return x_test, y_test


def by_model(answer) -> dict:
    return {entry["model"]: entry for entry in answer["results"]}


# ---------------------------------------------------------------------------
# Acceptance: the reference QALY matrix, no data


def test_reference_evaluation_uses_the_held_out_split_and_says_so(reference_answer, cards):
    assert reference_answer["data"] == "held_out"
    assert "held-out" in reference_answer["note"]
    assert sorted(by_model(reference_answer)) == sorted(SHIPPED)
    for name, entry in by_model(reference_answer).items():
        assert entry["n"] == len(cards[name].held_out.labels)


def test_reference_expected_values_match_an_independent_sum_and_the_cards(reference_answer, cards):
    for name, entry in by_model(reference_answer).items():
        held = cards[name].held_out
        total = brute_total(held.labels, held.scores, cards[name].threshold)
        assert entry["total_value"] == pytest.approx(total)
        assert entry["expected_value"] == pytest.approx(total / len(held.labels))
        assert entry["expected_value"] == pytest.approx(
            cards[name].metrics.reference_expected_value
        )
        assert entry["confusion"] == cards[name].metrics.confusion.model_dump()


def test_reference_ranking_is_medical_then_5to1_then_builtin(reference_answer):
    ranked = [row["model"] for row in reference_answer["ranking"]]
    assert [name for name in ranked if name in REFERENCE_MODELS] == [
        "medical",
        "custom-5to1",
        "builtin",
    ]
    assert reference_answer["best_model"] == ranked[0]
    values = [row["expected_value"] for row in reference_answer["ranking"]]
    assert values == sorted(values, reverse=True)


def test_elkan_threshold_and_builtin_at_t_star_beats_builtin_at_one_half(
    reference_answer, cards, test_split
):
    builtin = by_model(reference_answer)["builtin"]
    t_star = builtin["elkan_threshold"]["value"]
    assert t_star == pytest.approx(0.00591, abs=1e-5)
    # t* is a probability: applied to the calibrated held-out probabilities, which are the
    # graph's own probability output on the held-out rows
    assert builtin["calibrated"] is True
    assert builtin["elkan_threshold"]["applied_to"] == "probability"
    held = cards["builtin"].held_out
    x, y = test_split
    assert held.labels == y.tolist()
    np.testing.assert_array_equal(
        np.asarray(held.probabilities, dtype=np.float32), graph_probability("builtin", x)
    )
    at_t_star = brute_total(held.labels, held.probabilities, t_star) / len(held.labels)
    assert builtin["elkan_threshold"]["expected_value"] == pytest.approx(at_t_star)
    # the threshold row stays on the raw score
    assert builtin["threshold"] == 0.5
    at_half = brute_total(held.labels, held.scores, 0.5) / len(held.labels)
    assert builtin["expected_value"] == pytest.approx(at_half)
    assert builtin["elkan_threshold"]["expected_value"] > builtin["expected_value"]


def test_best_decision_is_the_best_in_sample_pair(reference_answer, cards):
    best = reference_answer["best_decision"]
    assert best["in_sample"] is True
    entries = by_model(reference_answer)
    assert best["expected_value"] == max(
        e["best_threshold"]["expected_value"] for e in entries.values()
    )
    held = cards[best["model"]].held_out
    assert best["total_value"] == pytest.approx(
        brute_total(held.labels, held.scores, best["threshold"])
    )


def test_treat_none_and_treat_all(reference_answer, cards):
    for name, entry in by_model(reference_answer).items():
        labels = cards[name].held_out.labels
        positives = sum(labels)
        negatives = len(labels) - positives
        assert entry["treat_none"]["total_value"] == pytest.approx(positives * QALY["fn"])
        assert entry["treat_all"]["total_value"] == pytest.approx(
            positives * QALY["tp"] + negatives * QALY["fp"]
        )


def test_reference_matrix_needs_no_warning(reference_answer):
    assert reference_answer["warnings"] == []


# ---------------------------------------------------------------------------
# Other data sources


def test_posted_scores_single_entry_with_null_model(client):
    answer = client.post("/evaluate", json=payload("evaluate_scores.json")).json()
    assert answer["data"] == "scores"
    (entry,) = answer["results"]
    assert entry["model"] is None and answer["best_model"] is None
    # By hand: TP(0.9) FN(0.4) FP(0.6) TN(0.1) FN(0.003) at 0.5.
    assert entry["total_value"] == pytest.approx(-35280 - 252000 - 1287.67 - 252000)
    assert entry["expected_value"] == pytest.approx((-35280 - 2 * 252000 - 1287.67) / 5)
    # At t* = 0.00591 everyone but the 0.003 patient is treated: 2 TP, 2 FP, 1 FN.
    assert entry["elkan_threshold"]["total_value"] == pytest.approx(
        2 * -35280 + 2 * -1287.67 - 252000
    )
    # Treating all five (threshold 0.003) is best in sample: 3 TP, 2 FP.
    assert entry["best_threshold"]["threshold"] == 0.003
    assert entry["best_threshold"]["total_value"] == pytest.approx(3 * -35280 + 2 * -1287.67)
    # Within 0.15 of 0.5: 0.4 (a false negative) and 0.6 (a false positive).
    assert entry["close_confusions"] == {"tp": 0, "fp": 1, "tn": 0, "fn": 1, "total": 2}


def test_posted_instances_match_onnxruntime_and_the_held_out_evaluation(
    client, test_split, reference_answer, cards
):
    x, y = test_split
    body = {"cost_matrix": QALY, "instances": x.tolist(), "labels": y.tolist()}
    answer = client.post("/evaluate", json=body).json()
    assert answer["data"] == "instances"
    held_out = by_model(reference_answer)
    for name, entry in by_model(answer).items():
        session = ort.InferenceSession(str(MODELS / name / "model.onnx"))
        scores = session.run(None, {"features": x.astype(np.float32)})[0].ravel()
        threshold = cards[name].threshold
        assert entry["total_value"] == pytest.approx(brute_total(y, scores, threshold))
        assert entry["expected_value"] == pytest.approx(held_out[name]["expected_value"])
        assert entry["auc"] == pytest.approx(held_out[name]["auc"], abs=1e-6)


def test_csv_body_with_query_options_matches_the_json_answer(client, test_split):
    x, y = test_split
    rows = zip(y.tolist(), x.tolist(), strict=True)
    lines = [",".join([str(label), *map(repr, row)]) for label, row in rows]
    csv = ("\n".join(lines) + "\n").encode()
    response = client.post(
        f"/evaluate?{QALY_QUERY}&models=builtin,medical&threshold=0.3",
        content=csv,
        headers={"content-type": "text/csv"},
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["data"] == "csv"
    json_answer = client.post(
        "/evaluate",
        json={
            "cost_matrix": QALY,
            "models": ["builtin", "medical"],
            "instances": x.tolist(),
            "labels": y.tolist(),
            "threshold": 0.3,
        },
    ).json()
    assert [e["model"] for e in answer["results"]] == ["builtin", "medical"]
    for csv_entry, json_entry in zip(answer["results"], json_answer["results"], strict=True):
        assert csv_entry["threshold"] == 0.3
        assert csv_entry["expected_value"] == pytest.approx(json_entry["expected_value"])


def test_empty_body_with_query_cost_matrix_is_the_held_out_evaluation(client, reference_answer):
    answer = client.post(f"/evaluate?{QALY_QUERY}").json()
    assert answer["ranking"] == reference_answer["ranking"]


def test_example_dependent_values_report_the_optimal_decision(client, cards, test_split):
    held = cards["builtin"].held_out
    # the optimal decisions are taken on the calibrated probability: the card's held-out
    # probabilities, the graph's own output on those rows
    np.testing.assert_array_equal(
        np.asarray(held.probabilities, dtype=np.float32),
        graph_probability("builtin", test_split[0]),
    )
    # Each patient's false negative costs more the higher their score (an invented rule).
    fn = [-100000.0 - 300000.0 * s for s in held.scores]
    body = {"cost_matrix": {**QALY, "fn": fn}, "models": ["builtin"]}
    answer = client.post("/evaluate", json=body).json()
    (entry,) = answer["results"]
    assert entry["calibrated"] is True
    assert "p = the probability" in entry["optimal_decision"]["rule"]
    decisions, total = [], []
    for i, (y, p) in enumerate(zip(held.labels, held.probabilities, strict=True)):
        treat = p * QALY["tp"] + (1 - p) * QALY["fp"] >= p * fn[i] + (1 - p) * QALY["tn"]
        decisions.append(int(treat))
        total.append((QALY["tp"] if treat else fn[i]) if y == 1 else (QALY["fp"] if treat else 0))
    assert entry["optimal_decision"]["decisions"] == decisions
    assert entry["optimal_decision"]["total_value"] == pytest.approx(math.fsum(total))
    assert answer["cost_matrix"] == "per_instance"


def test_unreasonable_matrix_is_accepted_with_a_warning(client):
    body = {"cost_matrix": {"tp": -10, "fp": 5, "tn": 0, "fn": -1}, "models": ["medical"]}
    response = client.post("/evaluate", json=body)
    assert response.status_code == 200
    warnings = response.json()["warnings"]
    assert len(warnings) == 2 and all("Elkan" in w for w in warnings)
    entry = response.json()["results"][0]
    assert entry["elkan_threshold"]["kind"] == "inverted"


# ---------------------------------------------------------------------------
# Bad input


BAD = payload("evaluate_bad_requests.json")


@pytest.mark.parametrize("case", BAD, ids=[case["name"] for case in BAD])
def test_bad_json_bodies_get_a_4xx_naming_the_field(client, case):
    response = client.post("/evaluate", json=case["body"])
    assert response.status_code == case["status"], response.text
    detail = response.json()["detail"]
    assert detail.startswith(case["field"] + ":"), detail


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"cost_matrix": {"tp": NaN, "fp": -1, "tn": 0, "fn": -5}}', "cost_matrix.tp"),
        (b'{"cost_matrix": {"tp": 1, "fp": -1, "tn": 0, "fn": -Infinity}}', "cost_matrix.fn"),
        (
            b'{"cost_matrix": {"tp": 1, "fp": -1, "tn": 0, "fn": -5},'
            b' "scores": [0.1, NaN], "labels": [0, 1]}',
            "scores[1]",
        ),
    ],
)
def test_non_finite_values_are_named(client, raw, field):
    response = client.post("/evaluate", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["detail"].startswith(field + ":")


def test_malformed_json_is_a_400(client):
    response = client.post(
        "/evaluate", content=b'{"cost_matrix": ', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert "malformed JSON" in response.json()["detail"]


def test_unsupported_content_type_is_a_415(client):
    response = client.post("/evaluate", content=b"x", headers={"content-type": "text/plain"})
    assert response.status_code == 415


@pytest.mark.parametrize(
    ("query", "csv", "status", "field"),
    [
        ("", b"1," + b",".join([b"1"] * 30) + b"\n", 422, "cost_matrix"),
        ("tp=1&fp=-1&tn=0", b"1," + b",".join([b"1"] * 30) + b"\n", 422, "query.fn"),
        (QALY_QUERY, b"2," + b",".join([b"1"] * 30) + b"\n", 422, "body, row 1, column 1"),
        (QALY_QUERY, b"1,2,3\n", 422, "body, row 1"),
        (QALY_QUERY + "&models=oracle", b"1,2\n", 404, "query.models[0]"),
        (QALY_QUERY + "&threshold=2", b"1,2\n", 422, "query.threshold"),
    ],
)
def test_bad_csv_requests(client, query, csv, status, field):
    response = client.post(f"/evaluate?{query}", content=csv, headers={"content-type": "text/csv"})
    assert response.status_code == status, response.text
    assert response.json()["detail"].startswith(field), response.json()["detail"]


def test_query_options_beside_a_json_body_override_its_fields(client):
    # The document allows the query options beside any body: they override the body's
    # fields of the same name (as the SageMaker headers override an /invocations body).
    body = payload("evaluate_reference.json")
    moved = {
        **body,
        "cost_matrix": {**body["cost_matrix"], "tp": 1.0},
        "models": ["medical", "tuned"],
        "threshold": 0.25,
        "margin": 0.05,
        "prevalence": 0.1,
        "curve": True,
    }
    query = "tp=1&models=medical,tuned&threshold=0.25&margin=0.05&prevalence=0.1&curve=true"
    by_query = client.post(f"/evaluate?{query}", json={**body, "threshold": 0.9})
    by_body = client.post("/evaluate", json=moved)
    assert by_query.status_code == 200, by_query.text
    assert by_query.json() == by_body.json()
    assert by_query.json()["cost_matrix"]["tp"] == 1.0


def test_binary_query_costs_beside_a_value_matrix_are_refused(client):
    matrix = {
        "classes": ["class_0", "class_1", "class_2"],
        "values": [[1, 0, 0], [0, 1, 0], [0, 0, 1]],
    }
    response = client.post("/evaluate?fn=-5", json={"cost_matrix": matrix})
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith("query.fn: tp, fp, tn and fn are a binary")


# ---------------------------------------------------------------------------
# Figures


def test_png_distribution_for_one_model(client):
    response = client.post(
        "/evaluate",
        json={**payload("evaluate_reference.json"), "models": ["medical"]},
        headers={"accept": "image/png"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert png_size(response.content) == (900, 550)


def test_png_value_curve_for_posted_scores(client):
    response = client.post(
        "/evaluate?plot=value",
        json=payload("evaluate_scores.json"),
        headers={"accept": "image/png"},
    )
    assert response.status_code == 200
    assert png_size(response.content) == (800, 450)


def test_png_with_several_models_is_refused(client):
    response = client.post(
        "/evaluate", json=payload("evaluate_reference.json"), headers={"accept": "image/png"}
    )
    assert response.status_code == 422
    assert response.json()["detail"].startswith("models:")


def test_unknown_plot_is_refused(client):
    response = client.post("/evaluate?plot=pie", json=payload("evaluate_scores.json"))
    assert response.status_code == 422


def test_model_distribution_png(client):
    response = client.get("/models/builtin/distribution.png?threshold=0.3&margin=0.2")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert png_size(response.content) == (900, 550)


@pytest.mark.parametrize(
    ("url", "status", "field"),
    [
        ("/models/oracle/distribution.png", 404, "unknown model"),
        ("/models/medical/distribution.png?threshold=1.5", 422, "threshold"),
        ("/models/medical/distribution.png?margin=-0.1", 422, "margin"),
    ],
)
def test_model_distribution_png_bad_input(client, url, status, field):
    response = client.get(url)
    assert response.status_code == status
    assert response.json()["detail"].startswith(field)


def test_openapi_documents_the_routes(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert "post" in paths["/evaluate"]
    assert "get" in paths["/models/{name}/distribution.png"]


def test_json_evaluation_draws_nothing_and_imports_no_matplotlib():
    code = (
        "import sys\n"
        "from fastapi.testclient import TestClient\n"
        "from service.app import create_app\n"
        "from service.settings import Settings\n"
        f"with TestClient(create_app(Settings(model_dir={str(MODELS)!r}))) as client:\n"
        f"    body = {{'cost_matrix': {QALY!r}}}\n"
        "    assert client.post('/evaluate', json=body).status_code == 200\n"
        "print(sorted(m for m in ('matplotlib', 'tensorflow', 'keras') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
