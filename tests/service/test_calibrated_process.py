"""Calibrated models in the real ``serve`` process: a folder whose card and graph disagree
about the calibration is refused with the reason at start-up and on an admin load, while
the other folders serve; decisions under a cost matrix are taken on the graph's
probability."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from _calibrated import SIGMOID, graph_outputs, write_calibrated, write_uncalibrated
from _servicekit import running_serve
from sklearn.datasets import load_breast_cancer

ADMIN_KEY = "calibrated-admin-7d41"
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("models")
    write_calibrated(root / "medical")
    write_calibrated(root / "missing", with_output=False)
    write_calibrated(root / "wrong", graph_map={**SIGMOID, "a": -0.9})
    write_uncalibrated(root / "builtin")
    with running_serve(
        root,
        tmp_path_factory.mktemp("cwd"),
        COSTAWARE_ADMIN_KEYS=ADMIN_KEY,
        COSTAWARE_ACCESS_LOG="false",
    ) as (base, _process):
        yield base, root


def test_at_start_up_bad_calibrated_folders_are_refused_with_the_reason(served):
    base, root = served
    listing = httpx.get(f"{base}/models").json()
    by_name = {entry["name"]: entry for entry in listing["models"]}
    assert sorted(by_name) == ["builtin", "medical"]
    assert by_name["medical"]["calibrated"] is True
    assert by_name["builtin"]["calibrated"] is False
    refused = listing["refused"]
    assert "graph has no output named 'probability'" in refused[str(root / "missing")]
    assert "disagrees with the card's sigmoid calibration map" in refused[str(root / "wrong")]
    for model in ("medical", "builtin"):
        answer = httpx.post(f"{base}/predict", json={"model": model, "instances": [[15.0] * 30]})
        assert answer.status_code == 200, answer.text


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ({"with_output": False}, "graph has no output named 'probability'"),
        ({"graph_map": {**SIGMOID, "b": 1.4}}, "disagrees with the card's sigmoid calibration"),
    ],
)
def test_an_admin_load_of_a_disagreeing_folder_is_refused_and_the_old_one_serves(
    served, tmp_path, damage, reason
):
    base, root = served
    before = httpx.get(f"{base}/models/medical").json()["version"]
    keep = tmp_path / "kept"
    shutil.copytree(root / "medical", keep)
    try:
        shutil.rmtree(root / "medical")
        write_calibrated(root / "medical", version="damaged", **damage)
        refused = httpx.post(f"{base}/models/medical/load", headers=ADMIN)
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"] == "model_refused"
        assert reason in refused.json()["detail"]
        assert httpx.get(f"{base}/models/medical").json()["version"] == before
        answer = httpx.post(
            f"{base}/predict", json={"model": "medical", "instances": [[15.0] * 30]}
        )
        assert answer.status_code == 200
    finally:
        shutil.rmtree(root / "medical")
        shutil.copytree(keep, root / "medical")


def test_predict_with_a_cost_matrix_equals_the_oracle_on_the_graphs_probability(served):
    """The acceptance of issue 23 in the real process: decisions and expected values on the
    calibrated medical equal numpy on the graph's own ``probability`` output (1e-6)."""
    base, root = served
    rows = load_breast_cancer().data[::4]
    matrix = json.loads((root / "medical" / "model-card.json").read_bytes())["cost_matrix"]
    p = graph_outputs(root / "medical", rows)["probability"].astype(np.float64).reshape(-1)
    ev_not = p * matrix["fn"] + (1 - p) * matrix["tn"]
    ev_treat = p * matrix["tp"] + (1 - p) * matrix["fp"]
    answer = httpx.post(
        f"{base}/predict",
        json={"model": "medical", "instances": rows.tolist(), "cost_matrix": matrix},
    ).json()
    got = answer["predictions"]
    assert answer["calibrated"] is True
    assert np.allclose([r["expected_values"]["0"] for r in got], ev_not, rtol=1e-6, atol=1e-6)
    assert np.allclose([r["expected_values"]["1"] for r in got], ev_treat, rtol=1e-6, atol=1e-6)
    assert [r["decision"] for r in got] == (ev_treat >= ev_not).astype(int).tolist()
