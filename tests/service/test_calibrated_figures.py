"""``GET /models/{name}/calibration.png``: the reliability diagram of a calibrated model's
card, before and after, with the bin counts; a clear 409 for a model without a map."""

from __future__ import annotations

import pytest
from _calibrated import write_uncalibrated
from fastapi.testclient import TestClient

from costaware.card import read_any_card
from costaware.figures import calibration_figure
from service.app import create_app
from service.settings import Settings


@pytest.mark.parametrize("name", ["medical", "wine"])
def test_a_calibrated_model_has_its_reliability_diagram(calibrated_client, name):
    response = calibrated_client.get(f"/models/{name}/calibration.png")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert response.content.startswith(b"\x89PNG\r\n\x1a\n")


@pytest.mark.parametrize("name", ["medical", "wine"])
def test_the_figure_draws_the_cards_bins_and_counts(calibrated_dir, name):
    calibration = read_any_card(calibrated_dir / name).calibration
    assert calibration is not None
    top, bottom = calibration_figure(calibration, name).axes
    for quality in (calibration.held_out.before, calibration.held_out.after):
        curve = (
            [b.mean_probability for b in quality.reliability],
            [b.observed_rate for b in quality.reliability],
        )
        counts = [b.count for b in quality.reliability]
        assert any(list(map(list, line.get_data())) == list(map(list, curve)) for line in top.lines)
        heights = [[bar.get_height() for bar in bars] for bars in bottom.containers]
        assert counts in heights


def test_an_uncalibrated_model_gets_a_clear_conflict(calibrated_client):
    response = calibrated_client.get("/models/builtin/calibration.png")
    assert response.status_code == 409
    assert response.json()["error"] == "conflict"
    assert "no calibration map" in response.json()["detail"]
    assert calibrated_client.get("/models/nobody/calibration.png").status_code == 404


def test_the_document_names_the_calibrated_models_only(calibrated_client):
    operation = calibrated_client.get("/openapi.json").json()["paths"][
        "/models/{name}/calibration.png"
    ]
    (parameter,) = operation["get"]["parameters"]
    assert parameter["schema"]["enum"] == ["medical", "wine"]
    assert set(operation["get"]["responses"]) == {"200", "404", "409", "503"}


def test_without_a_calibrated_model_the_figure_is_not_in_the_document(tmp_path):
    # No calibrated model loaded: the operation has no name to take.
    write_uncalibrated(tmp_path / "builtin")
    with TestClient(create_app(Settings(model_dir=tmp_path))) as plain:
        assert "/models/{name}/calibration.png" not in plain.get("/openapi.json").json()["paths"]
