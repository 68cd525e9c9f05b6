"""``evaluate`` on a real two-process LocalCluster equals the single-process economics and
the service's own ``/evaluate`` answer for the same rows."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _servicekit import SHIPPED
from fastapi.testclient import TestClient

from costaware import economics
from costaware.economics import CostMatrix
from service.app import create_app
from service.batch.jobs import EvaluateOptions, Inputs, evaluate_files
from service.registry import ModelRegistry
from service.settings import Settings

QALY = {"tp": -35280.0, "fp": -1287.67, "tn": 0.0, "fn": -252000.0}
MATRICES = {
    "qaly": QALY,
    "fraud": {"tp": 120.0, "fp": -15.0, "tn": 0.0, "fn": -480.0},
    "treat-all": {"tp": 5.0, "fp": 1.0, "tn": 0.0, "fn": -5.0},
}


def assert_same(batch, single, path="answer"):
    """Equal structure; ints, strings and thresholds exactly; other floats to 1e-9 relative."""
    if isinstance(single, dict):
        assert batch.keys() == single.keys(), path
        for key in single:
            assert_same(batch[key], single[key], f"{path}.{key}")
    elif isinstance(single, list):
        assert len(batch) == len(single), path
        for i, (b, s) in enumerate(zip(batch, single, strict=True)):
            assert_same(b, s, f"{path}[{i}]")
    elif isinstance(single, float) and ".curve.thresholds" in path:
        assert batch == single, path
    elif isinstance(single, float) and not path.endswith(("threshold", ".value")):
        assert math.isclose(batch, single, rel_tol=1e-9, abs_tol=1e-9), path
    else:
        assert batch == single and type(batch) is type(single), path


@pytest.fixture(scope="module")
def service():
    with TestClient(create_app(Settings(model_dir=SHIPPED, max_body_bytes=8 << 20))) as client:
        yield client


@pytest.mark.parametrize(
    ("matrix", "extra"),
    [("qaly", {}), ("fraud", {}), ("treat-all", {}), ("qaly", {"prevalence": 0.05, "curve": True})],
)
def test_evaluate_equals_the_service_evaluate_on_the_same_rows(
    cluster, labeled, service, matrix, extra
):
    costs = CostMatrix.from_mapping(MATRICES[matrix])
    inputs = Inputs([str(labeled.csv)], model_dir=SHIPPED, partition_bytes=20_000)
    batch = evaluate_files(cluster, inputs, costs, EvaluateOptions(**extra))
    query = "&".join(f"{k}={v}" for k, v in {**MATRICES[matrix], **extra}.items())
    response = service.post(
        f"/evaluate?{query}",
        content=labeled.plain_csv.read_bytes(),
        headers={"content-type": "text/csv"},
    )
    assert response.status_code == 200, response.text
    single = response.json()
    assert single["data"] == "csv" and batch["data"] == "batch"
    for key in ("data", "note"):
        single.pop(key), batch.pop(key)
    assert_same(batch, single)
    assert [r["model"] for r in batch["results"]] == ["builtin", "custom-5to1", "medical", "tuned"]


def test_elkan_and_best_threshold_identical_to_economics(cluster, labeled):
    costs = CostMatrix.from_mapping(QALY)
    inputs = Inputs([str(labeled.parquet)], model_dir=SHIPPED, partition_bytes=1)
    batch = evaluate_files(cluster, inputs, costs, EvaluateOptions(models=["medical", "builtin"]))
    registry = ModelRegistry.load(SHIPPED, "medical")
    for entry in batch["results"]:
        model = registry.get(entry["model"])
        raw, calibrated = model.split(model.outputs(labeled.x))
        assert calibrated is not None  # the shipped models are calibrated
        scores = raw.astype(np.float64)
        single = economics.evaluate(
            labeled.labels,
            scores,
            costs,
            model.card.threshold,
            probabilities=calibrated.astype(np.float64),
        )
        assert entry["elkan_threshold"]["value"] == single["elkan_threshold"]["value"]
        assert entry["best_threshold"]["threshold"] == single["best_threshold"]["threshold"]
        assert entry["best_threshold"]["n_treated"] == single["best_threshold"]["n_treated"]
        assert entry["confusion"] == single["confusion"]
        assert entry["auc"] == pytest.approx(single["auc"], rel=1e-12)
        single.pop("warnings")
        assert_same({k: entry[k] for k in single}, single)


def test_partition_size_does_not_change_the_evaluation(cluster, labeled):
    costs = CostMatrix.from_mapping(QALY)
    answers = []
    for size in (5_000, 200_000, 64 << 20):
        inputs = Inputs([str(labeled.csv)], model_dir=SHIPPED, partition_bytes=size)
        answer = evaluate_files(cluster, inputs, costs)
        answer.pop("note")
        answers.append(answer)
    assert answers[0] == answers[1] == answers[2]
