"""What the explorer needs from the service, through the app on the shipped models: /evaluate's
curve and prevalence options (JSON body, query string, CSV), their errors, the OpenAPI
document, and the page and its assets served with no outside reference."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator

import numpy as np
import pytest
from _calibrated import write_uncalibrated
from _servicekit import SHIPPED, csv_body
from fastapi.testclient import TestClient
from sklearn.datasets import load_breast_cancer

from costaware import economics
from costaware.card import CARD_FILENAME
from service.app import create_app
from service.routes.explorer import STATIC_DIR
from service.settings import Settings

QALY = {"tp": -35280.0, "fp": -1287.67, "tn": 0.0, "fn": -252000.0}
QALY_QUERY = "tp=-35280&fp=-1287.67&tn=0&fn=-252000"


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(create_app(Settings(model_dir=SHIPPED))) as test_client:
        yield test_client


def post(client: TestClient, body: dict, status: int = 200) -> dict:
    response = client.post("/evaluate", json=body)
    assert response.status_code == status, response.text
    return response.json()


def _value_per_instance(decisions: np.ndarray, labels: np.ndarray, costs: dict) -> float:
    """The mean value of ``decisions`` (treat or not) against ``labels`` (1 = positive)."""
    treat, positive = np.asarray(decisions, dtype=bool), np.asarray(labels) == 1
    cells = (
        costs["tp"] * (treat & positive)
        + costs["fp"] * (treat & ~positive)
        + costs["tn"] * (~treat & ~positive)
        + costs["fn"] * (~treat & positive)
    )
    return float(cells.mean())


def _check_curve_through_reported_thresholds(client: TestClient, model_dir) -> set[bool]:
    """Every threshold an answer reports on the score axis is a point of its curve, with
    the same value; Elkan's t* is one only for an uncalibrated model (for a calibrated one
    it is a probability, and its value is that of deciding on the card's held-out
    probabilities). Returns which kinds (calibrated or not) were seen."""
    answer = post(client, {"cost_matrix": QALY, "threshold": 0.03, "curve": True})
    listed = client.get("/models").json()["models"]
    # a binary cost matrix values the binary models (a multiclass one takes a value matrix)
    cards = {m["name"]: m["threshold"] for m in listed if m["task"] == "binary"}
    at_cards = {e["model"]: e for e in post(client, {"cost_matrix": QALY})["results"]}
    assert len(answer["results"]) == len(cards)
    # Elkan's t* for QALY, from the matrix itself.
    treat_negative = QALY["tn"] - QALY["fp"]
    t_star = treat_negative / (treat_negative + QALY["tp"] - QALY["fn"])
    seen = set()
    for entry in answer["results"]:
        card = json.loads((model_dir / entry["model"] / CARD_FILENAME).read_bytes())
        calibrated = card.get("calibration") is not None
        assert entry["calibrated"] is calibrated, entry["model"]
        seen.add(calibrated)
        curve = dict(
            zip(entry["curve"]["thresholds"], entry["curve"]["expected_value"], strict=True)
        )
        elkan = entry["elkan_threshold"]
        assert elkan["kind"] == "threshold"
        assert elkan["value"] == pytest.approx(t_star, rel=1e-12)
        points = {
            0.03: entry["expected_value"],
            entry["best_threshold"]["threshold"]: entry["best_threshold"]["expected_value"],
            cards[entry["model"]]: at_cards[entry["model"]]["expected_value"],
        }
        held_out = card["held_out"]
        if calibrated:
            assert elkan["applied_to"] == "probability", entry["model"]
            on_probability = np.asarray(held_out["probabilities"]) >= elkan["value"]
            assert elkan["expected_value"] == pytest.approx(
                _value_per_instance(on_probability, held_out["labels"], QALY), rel=1e-12
            ), entry["model"]
        else:
            assert elkan["applied_to"] == "score", entry["model"]
            points[elkan["value"]] = elkan["expected_value"]
            on_score = np.asarray(held_out["scores"]) >= elkan["value"]
            assert elkan["expected_value"] == pytest.approx(
                _value_per_instance(on_score, held_out["labels"], QALY), rel=1e-12
            ), entry["model"]
        for threshold, value in points.items():
            assert curve[threshold] == pytest.approx(value, rel=1e-12), entry["model"]
        assert max(curve.values()) == pytest.approx(entry["best_threshold"]["expected_value"])
    assert all("curve" not in e for e in at_cards.values())
    return seen


def test_curve_passes_through_every_reported_threshold_and_the_card(client):
    # The shipped binary models are all calibrated.
    assert _check_curve_through_reported_thresholds(client, SHIPPED) == {True}


def test_curve_passes_through_elkans_threshold_for_an_uncalibrated_model(tmp_path):
    write_uncalibrated(tmp_path / "medical", "medical")
    shutil.copytree(SHIPPED / "builtin", tmp_path / "builtin")
    with TestClient(create_app(Settings(model_dir=tmp_path))) as mixed:
        assert _check_curve_through_reported_thresholds(mixed, tmp_path) == {False, True}


def test_prevalence_reweights_every_value_the_same_way_in_json_query_and_csv(client):
    data = load_breast_cancer()
    rows = np.random.default_rng(5).choice(len(data.target), 50, replace=False)
    body = csv_body(np.column_stack([1 - data.target[rows], data.data[rows]]))
    query = f"/evaluate?{QALY_QUERY}&prevalence=0.02&curve=true&threshold=0.01"
    by_csv = client.post(query, content=body, headers={"Content-Type": "text/csv"}).json()
    by_instances = post(
        client,
        {
            "cost_matrix": QALY,
            "instances": data.data[rows].tolist(),
            "labels": (1 - data.target[rows]).tolist(),
            "prevalence": 0.02,
            "curve": True,
            "threshold": 0.01,
        },
    )
    assert by_csv["data"] == "csv"
    assert by_csv["results"] == by_instances["results"]
    held_out = client.post(f"/evaluate?{QALY_QUERY}&prevalence=0.02&curve=true").json()
    json_held_out = post(client, {"cost_matrix": QALY, "prevalence": 0.02, "curve": True})
    assert held_out == json_held_out
    medical = next(e for e in held_out["results"] if e["model"] == "medical")
    assert medical["target_prevalence"] == 0.02
    # The reference formula at p = 0.02 with the rates of the held-out split.
    rates = medical["rates"]
    expected = 0.98 * (QALY["tn"] * rates["tnr"] + QALY["fp"] * rates["fpr"]) + 0.02 * (
        QALY["tp"] * rates["tpr"] + QALY["fn"] * rates["fnr"]
    )
    assert medical["expected_value"] == pytest.approx(expected, rel=1e-12)
    assert held_out["ranking"][0]["per_1000_decisions"] == pytest.approx(
        1000 * held_out["ranking"][0]["expected_value"]
    )


def test_prevalence_changes_the_figure_too(client):
    query = f"/evaluate?{QALY_QUERY}&models=medical&plot=value"
    plain = client.post(query, headers={"Accept": "image/png"})
    weighted = client.post(query + "&prevalence=0.01", headers={"Accept": "image/png"})
    assert plain.status_code == weighted.status_code == 200
    assert weighted.headers["content-type"] == "image/png"
    assert plain.content != weighted.content


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        ({"prevalence": 1.5}, 422, "prevalence: "),
        ({"prevalence": "half"}, 422, "prevalence: "),
        ({"curve": "yes"}, 422, 'curve: expected true or false, got "yes"'),
        ({"curve": 1}, 422, "curve: expected true or false, got 1"),
        (
            {"scores": [0.1, 0.2], "labels": [0, 0], "prevalence": 0.1},
            422,
            "prevalence: the data has only negatives, so it cannot be reweighted to 0.1",
        ),
    ],
)
def test_bad_options_are_named(client, body, status, detail):
    answer = post(client, {"cost_matrix": QALY, **body}, status)
    assert answer["detail"].startswith(detail)


@pytest.mark.parametrize(
    ("query", "detail"),
    [
        (f"{QALY_QUERY}&prevalence=2", "query.prevalence: "),
        (f"{QALY_QUERY}&curve=maybe", "curve"),
    ],
)
def test_bad_query_options_are_named(client, query, detail):
    response = client.post(f"/evaluate?{query}")
    assert response.status_code in (400, 422)
    assert detail in response.json()["detail"]


def test_beside_a_json_body_a_query_option_overrides_the_body(client):
    by_query = client.post("/evaluate?curve=true", json={"cost_matrix": QALY, "curve": False})
    by_body = client.post("/evaluate", json={"cost_matrix": QALY, "curve": True})
    assert by_query.status_code == 200, by_query.text
    assert by_query.json() == by_body.json()
    assert all("curve" in result for result in by_query.json()["results"])


def test_openapi_documents_the_options_in_body_and_query(client):
    document = client.get("/openapi.json").json()
    operation = document["paths"]["/evaluate"]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    # One variant per source of data (held-out, posted scores, posted instances).
    for variant in schema["oneOf"]:
        name = variant["$ref"].rsplit("/", 1)[-1]
        properties = document["components"]["schemas"][name]["properties"]
        assert {"curve", "prevalence", "cost_matrix", "threshold"} <= set(properties)
    assert "text/csv" in operation["requestBody"]["content"]
    assert {"curve", "prevalence"} <= {p["name"] for p in operation["parameters"]}
    paths = client.get("/openapi.json").json()["paths"]
    assert "/explorer" not in paths
    assert "/" not in paths


def test_root_leads_to_the_explorer_with_its_query(client):
    response = client.get("/?tp=1&model=medical", follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["location"] == "explorer?tp=1&model=medical"
    assert client.get("/", follow_redirects=False).headers["location"] == "explorer"
    page = client.get("/explorer")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    for name in ("tp", "fp", "tn", "fn"):
        assert f'name="{name}"' in page.text


def test_every_asset_is_served_and_refers_to_nothing_outside(client):
    page = client.get("/explorer").text
    assets = re.findall(r'(?:src|href)="(explorer/assets/[^"]+)"', page)
    assert sorted(assets) == ["explorer/assets/explorer.css", "explorer/assets/explorer.js"]
    total = len(page.encode())
    for asset in assets:
        response = client.get("/" + asset)
        assert response.status_code == 200
        total += len(response.content)
    assert total < 64 * 1024, f"the page and its assets weigh {total} bytes"
    for path in STATIC_DIR.iterdir():
        text = path.read_text()
        # The SVG namespace is a name, not an address the browser fetches.
        outside = set(re.findall(r"(?:https?:)?//[\w.-]+\.\w+[^\s\"'`)]*", text))
        assert outside <= {"http://www.w3.org/2000/svg"}, (path.name, outside)
        assert "@import" not in text
        assert "fonts.googleapis" not in text


def test_per_1000_decisions_is_the_economics_figure(client):
    answer = post(client, {"cost_matrix": QALY, "threshold": 0.2})
    for entry in answer["results"]:
        for part in (entry, entry["treat_all"], entry["best_threshold"]):
            assert part["per_1000_decisions"] == economics.per_1000_decisions(
                part["expected_value"]
            )
