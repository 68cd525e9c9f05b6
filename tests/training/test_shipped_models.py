"""The models committed in models/ show the published shape on the reference split.

The oracle is independent of our code: scikit-learn loads and splits the data,
onnxruntime scores it, scikit-learn counts, and the expected value is the
reference experiment's formula over rates.
"""

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.metrics import confusion_matrix, roc_auc_score
from sklearn.model_selection import train_test_split

from costaware.card import read_card, verify_model_file

MODELS = Path(__file__).resolve().parents[2] / "models"
NAMES = ("builtin", "custom-5to1", "medical")
NOTEBOOK_EV = {"builtin": -21164.86, "custom-5to1": -18160.83, "medical": -15273.85}
V_TP, V_FP, V_TN, V_FN = -35280.0, -1287.67, 0.0, -252000.0


@pytest.fixture(scope="module")
def test_split():
    bunch = load_breast_cancer()
    _, x_test, _, y_test = train_test_split(
        bunch.data, 1 - bunch.target, test_size=0.25, random_state=1
    )
    return list(bunch.feature_names), x_test, y_test


@pytest.fixture(scope="module")
def results(test_split):
    names, x_test, y = test_split
    out = {}
    for name in NAMES:
        folder = MODELS / name
        card = read_card(folder)
        assert card.features == names
        session = ort.InferenceSession(
            str(verify_model_file(folder, card)), providers=["CPUExecutionProvider"]
        )
        scores = session.run(["score"], {"features": x_test.astype(np.float32)})[0].ravel()
        tn, fp, fn, tp = confusion_matrix(y, (scores >= 0.5).astype(int)).ravel()
        p = (tp + fn) / len(y)
        fpr, fnr = fp / (fp + tn), fn / (fn + tp)
        ev = (1 - p) * (V_TN * (1 - fpr) + V_FP * fpr) + p * (V_TP * (1 - fnr) + V_FN * fnr)
        out[name] = {"fn": fn, "fp": fp, "auc": roc_auc_score(y, scores), "ev": ev, "card": card}
        out[name]["scores"] = scores
    return out


def test_false_negatives_fall_as_fn_cost_rises(results):
    assert results["builtin"]["fn"] >= results["custom-5to1"]["fn"] >= results["medical"]["fn"]
    assert results["medical"]["fn"] <= 2


def test_false_positives_rise_the_other_way(results):
    assert results["builtin"]["fp"] <= results["custom-5to1"]["fp"] <= results["medical"]["fp"]


@pytest.mark.parametrize("name", NAMES)
def test_auc_stays_high(results, name):
    assert results[name]["auc"] >= 0.98


def test_expected_value_ranks_medical_first(results):
    assert results["medical"]["ev"] > results["custom-5to1"]["ev"] > results["builtin"]["ev"]


@pytest.mark.parametrize("name", NAMES)
def test_expected_value_is_near_the_notebook(results, name):
    assert abs(results[name]["ev"] - NOTEBOOK_EV[name]) <= 2500


@pytest.mark.parametrize("name", NAMES)
def test_cards_agree_with_the_models(results, test_split, name):
    card = results[name]["card"]
    np.testing.assert_array_equal(card.held_out.labels, test_split[2])
    np.testing.assert_allclose(card.held_out.scores, results[name]["scores"], atol=1e-7)
    assert card.metrics.confusion.fn == results[name]["fn"]
    assert card.metrics.auc == pytest.approx(results[name]["auc"])
