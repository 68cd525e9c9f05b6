"""costaware.calibration: each map equals the scikit-learn calibrator it stands for, and the
quality figures match their definitions on small cases worked by hand."""

import numpy as np
import pytest
from pydantic import ValidationError
from sklearn.calibration import _SigmoidCalibration
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import brier_score_loss
from sklearn.metrics import log_loss as sk_log_loss

from costaware import calibration
from costaware.card import Calibration, IsotonicMap, SigmoidMap, TemperatureMap, VectorMap


@pytest.fixture
def scored():
    rng = np.random.default_rng(0)
    truth = rng.uniform(size=2000)
    labels = (rng.uniform(size=2000) < truth).astype(int)
    # A score pushed up as a 5:1 weighted loss would push it.
    scores = 5 * truth / (5 * truth + 1 - truth)
    return scores.astype(np.float32), labels


def test_sigmoid_map_equals_scikit_learns_platt_on_the_logit(scored):
    scores, labels = scored
    fitted = _SigmoidCalibration().fit(calibration.logit(scores), labels)
    spec = SigmoidMap(method="sigmoid", a=float(fitted.a_), b=float(fitted.b_))
    expected = fitted.predict(calibration.logit(scores))
    np.testing.assert_allclose(calibration.apply_map(spec, scores), expected, atol=1e-12)


def test_isotonic_map_equals_scikit_learns_isotonic_regression(scored):
    scores, labels = scored
    fitted = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(scores, labels)
    spec = IsotonicMap(
        method="isotonic",
        x_thresholds=fitted.X_thresholds_.tolist(),
        y_thresholds=fitted.y_thresholds_.tolist(),
    )
    outside = np.array([-1.0, 0.0, 1.0, 2.0])
    for x in (scores, outside):
        np.testing.assert_allclose(calibration.apply_map(spec, x), fitted.predict(x), atol=1e-12)


def test_temperature_and_vector_maps_are_softmax_of_scaled_log_probabilities():
    q = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    hot = calibration.apply_map(TemperatureMap(method="temperature", temperature=2.0), q)
    np.testing.assert_allclose(hot.sum(axis=1), 1.0)
    np.testing.assert_allclose(hot[0], np.sqrt(q[0]) / np.sqrt(q[0]).sum())
    same = VectorMap(method="vector", weights=[1, 1, 1], biases=[0, 0, 0])
    np.testing.assert_allclose(calibration.apply_map(same, q), q)


def test_prior_shift_inverse_undoes_the_weighted_loss_shift():
    p = np.linspace(0, 1, 11)
    shifted = 50 * p / (50 * p + 1 - p)
    np.testing.assert_allclose(calibration.prior_shift_inverse(shifted, 50.0), p, atol=1e-12)


def test_quality_figures_match_their_definitions(scored):
    scores, labels = scored
    figures = calibration.quality(scores, labels)
    assert figures["brier"] == pytest.approx(brier_score_loss(labels, scores))
    assert figures["log_loss"] == pytest.approx(sk_log_loss(labels, scores))
    curve = figures["reliability"]
    assert len(curve) == calibration.ECE_BINS
    assert sum(item["count"] for item in curve) == len(scores)
    # Equal mass: bin sizes differ by at most one row.
    assert max(b["count"] for b in curve) - min(b["count"] for b in curve) <= 1
    # The scores overstate every bin's rate, so the ECE is the mean overstatement.
    gaps = [b["count"] * (b["mean_probability"] - b["observed_rate"]) for b in curve]
    assert figures["ece"] == pytest.approx(sum(gaps) / len(scores))
    assert figures["ece"] > 0.05


def test_ece_of_a_perfect_two_bin_case_by_hand():
    p = [0.25, 0.25, 0.25, 0.25, 0.75, 0.75, 0.75, 0.75]
    y = [0, 0, 0, 1, 1, 1, 1, 0]
    assert calibration.expected_calibration_error(p, y, bins=2) == pytest.approx(0.0)
    assert calibration.expected_calibration_error(p, [1] * 8, bins=2) == pytest.approx(0.5)


def test_multiclass_quality_is_top_label():
    q = np.array([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1]])
    figures = calibration.quality(q, [0, 2])
    assert figures["brier"] == pytest.approx(((0.4**2 + 0.09 + 0.01) + (0.04 + 0.49 + 0.81)) / 2)
    assert figures["log_loss"] == pytest.approx(-(np.log(0.6) + np.log(0.1)) / 2)
    assert [b["observed_rate"] for b in figures["reliability"]] == [1.0, 0.0]


def _quality():
    return calibration.quality([0.2, 0.8], [0, 1])


def test_calibration_section_states_how_it_was_fitted():
    section = {
        "map": {"method": "sigmoid", "a": -1.0, "b": 0.0},
        "output_name": "probability",
        "rows": 426,
        "held_out": {"before": _quality(), "after": _quality()},
    }
    Calibration.model_validate({**section, "fitted_on": "out_of_fold", "folds": 5})
    Calibration.model_validate({**section, "fitted_on": "held_back"})
    with pytest.raises(ValidationError, match="folds"):
        Calibration.model_validate({**section, "fitted_on": "out_of_fold"})
    with pytest.raises(ValidationError):
        Calibration.model_validate({**section, "fitted_on": "held_back", "map": {"method": "x"}})


def _shipped(name):
    import json
    from pathlib import Path

    return json.loads((Path(__file__).parents[2] / "models" / name / "model-card.json").read_text())


def _section(map_, output_name):
    return {
        "map": map_,
        "output_name": output_name,
        "fitted_on": "out_of_fold",
        "folds": 5,
        "rows": 426,
        "held_out": {"before": _quality(), "after": _quality()},
    }


def test_a_binary_card_takes_a_binary_map_with_its_held_out_probabilities():
    from costaware.card import ModelCard

    raw = _shipped("builtin")
    raw.pop("calibration", None)
    raw["held_out"].pop("probabilities", None)
    assert not ModelCard.model_validate(raw).calibrated
    n = len(raw["held_out"]["scores"])
    raw["calibration"] = _section({"method": "sigmoid", "a": -1.0, "b": 0.0}, "probability")
    with pytest.raises(ValidationError, match=r"held_out\.probabilities"):
        ModelCard.model_validate(raw)
    raw["held_out"]["probabilities"] = [0.5] * n
    assert ModelCard.model_validate(raw).calibrated
    raw["calibration"]["map"] = {"method": "temperature", "temperature": 1.0}
    with pytest.raises(ValidationError, match="does not apply"):
        ModelCard.model_validate(raw)


def test_a_multiclass_card_takes_a_vector_map_with_one_weight_a_class():
    from costaware.card import MulticlassCard

    raw = _shipped("wine")
    raw.pop("calibration", None)
    raw["held_out"].pop("calibrated_probabilities", None)
    k = len(raw["classes"])
    raw["calibration"] = _section(
        {"method": "vector", "weights": [1.0] * (k + 1), "biases": [0.0] * (k + 1)},
        "probabilities",
    )
    raw["held_out"]["calibrated_probabilities"] = raw["held_out"]["probabilities"]
    with pytest.raises(ValidationError, match="weights"):
        MulticlassCard.model_validate(raw)
    raw["calibration"]["map"] = {"method": "temperature", "temperature": 1.5}
    assert MulticlassCard.model_validate(raw).calibrated
