"""The explorer's additions to the economics: the value curve, another prevalence, dollars per
confusion cell and per 1,000 decisions, against the reference formula and brute-force loops."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from costaware import economics as ec
from costaware.economics import REFERENCE_QALY_VALUES, CostMatrix, EconomicsError


@pytest.fixture
def labeled():
    rng = np.random.default_rng(17)
    labels = rng.integers(0, 2, 250)
    scores = np.clip(np.round(0.3 * labels + 0.7 * rng.random(250), 3), 0, 1)
    return labels, scores


def reference_formula(labels, scores, threshold, costs: CostMatrix, prevalence: float) -> float:
    """EV = (1-p)[v_tn(1-FPR) + v_fp FPR] + p[v_tp(1-FNR) + v_fn FNR], rates from the data."""
    labels, scores = np.asarray(labels), np.asarray(scores)
    treated = scores >= threshold
    fpr = treated[labels == 0].mean()
    fnr = 1.0 - treated[labels == 1].mean()
    negatives = costs.tn * (1 - fpr) + costs.fp * fpr
    positives = costs.tp * (1 - fnr) + costs.fn * fnr
    return (1 - prevalence) * negatives + prevalence * positives


@pytest.mark.parametrize("prevalence", [0.0, 0.003, 0.1, 0.5, 0.97, 1.0])
@pytest.mark.parametrize("threshold", [0.0, 0.006, 0.3, 0.5, 1.0])
def test_values_at_another_prevalence_follow_the_reference_formula(labeled, prevalence, threshold):
    entry = ec.evaluate(*labeled, REFERENCE_QALY_VALUES, threshold, 0.1, prevalence=prevalence)
    expected = reference_formula(*labeled, threshold, REFERENCE_QALY_VALUES, prevalence)
    assert entry["expected_value"] == pytest.approx(expected, rel=1e-12, abs=1e-9)
    assert entry["total_value"] == pytest.approx(expected * len(labeled[0]), rel=1e-12, abs=1e-6)
    assert entry["target_prevalence"] == prevalence
    assert entry["prevalence"] == pytest.approx(labeled[0].mean())
    # Counts stay those of the data as given.
    assert (
        entry["confusion"] == ec.evaluate(*labeled, REFERENCE_QALY_VALUES, threshold)["confusion"]
    )
    treat_all = reference_formula(*labeled, 0.0, REFERENCE_QALY_VALUES, prevalence)
    assert entry["treat_all"]["expected_value"] == pytest.approx(treat_all, rel=1e-12, abs=1e-9)
    treat_none = prevalence * REFERENCE_QALY_VALUES.fn
    assert entry["treat_none"]["expected_value"] == pytest.approx(treat_none, rel=1e-12, abs=1e-9)


def test_the_data_own_prevalence_changes_nothing(labeled):
    plain = ec.evaluate(*labeled, REFERENCE_QALY_VALUES, 0.2, curve=True)
    same = ec.evaluate(
        *labeled, REFERENCE_QALY_VALUES, 0.2, curve=True, prevalence=float(labeled[0].mean())
    )
    for key in ("expected_value", "total_value"):
        assert same[key] == pytest.approx(plain[key], rel=1e-12)
    assert same["best_threshold"]["threshold"] == plain["best_threshold"]["threshold"]
    assert same["curve"]["expected_value"] == pytest.approx(plain["curve"]["expected_value"])


@pytest.mark.parametrize("prevalence", [None, 0.02, 0.6])
def test_best_threshold_at_a_prevalence_is_the_brute_force_maximum(labeled, prevalence):
    labels, scores = labeled
    p = labels.mean() if prevalence is None else prevalence
    candidates = [
        (reference_formula(labels, scores, t, REFERENCE_QALY_VALUES, p), t)
        for t in sorted(set(scores.tolist()))
    ]
    candidates.append((p * REFERENCE_QALY_VALUES.fn, None))  # treat none
    best_value = max(value for value, _ in candidates)
    got = ec.best_threshold(labels, scores, REFERENCE_QALY_VALUES, prevalence)
    assert got.expected_value == pytest.approx(best_value, rel=1e-12)
    lowest = min(
        (t for value, t in candidates if value >= best_value - 1e-9 and t is not None),
        default=None,
    )
    assert got.threshold == lowest


@pytest.mark.parametrize("prevalence", [None, 0.05])
def test_value_curve_is_the_expected_value_at_each_threshold(labeled, prevalence):
    marks = [0.00591, 0.123456]
    curve = ec.value_curve(*labeled, REFERENCE_QALY_VALUES, marks, prevalence)
    assert set(marks) <= set(curve["thresholds"])
    assert set(ec.default_thresholds().tolist()) <= set(curve["thresholds"])
    assert curve["thresholds"] == sorted(curve["thresholds"])
    for t, value in zip(curve["thresholds"], curve["expected_value"], strict=True):
        direct = ec.evaluate(*labeled, REFERENCE_QALY_VALUES, t, prevalence=prevalence)
        assert value == pytest.approx(direct["expected_value"], rel=1e-12, abs=1e-9)


def test_evaluate_curve_passes_through_every_point_it_reports(labeled):
    entry = ec.evaluate(*labeled, REFERENCE_QALY_VALUES, 0.42, curve=True, curve_marks=[0.5])
    curve = dict(zip(entry["curve"]["thresholds"], entry["curve"]["expected_value"], strict=True))
    points = [
        (entry["threshold"], entry["expected_value"]),
        (entry["elkan_threshold"]["value"], entry["elkan_threshold"]["expected_value"]),
        (entry["best_threshold"]["threshold"], entry["best_threshold"]["expected_value"]),
        (0.5, ec.expected_value(*labeled, 0.5, REFERENCE_QALY_VALUES)),
    ]
    for threshold, value in points:
        assert curve[threshold] == pytest.approx(value, rel=1e-12)
    assert max(curve.values()) == pytest.approx(entry["best_threshold"]["expected_value"])
    assert json.loads(json.dumps(entry, allow_nan=False)) == entry
    assert "curve" not in ec.evaluate(*labeled, REFERENCE_QALY_VALUES)


@pytest.mark.parametrize("prevalence", [None, 0.3])
def test_confusion_value_is_the_dollars_of_each_cell(labeled, prevalence):
    labels, scores = labeled
    entry = ec.evaluate(labels, scores, REFERENCE_QALY_VALUES, 0.3, prevalence=prevalence)
    p = labels.mean()
    weight = (
        {1: 1.0, 0: 1.0}
        if prevalence is None
        else {1: prevalence / p, 0: (1 - prevalence) / (1 - p)}
    )
    cells = {"tp": 0.0, "fp": 0.0, "tn": 0.0, "fn": 0.0}
    for y, s in zip(labels, scores, strict=True):
        name = ("tp" if s >= 0.3 else "fn") if y == 1 else ("fp" if s >= 0.3 else "tn")
        cells[name] += getattr(REFERENCE_QALY_VALUES, name) * weight[int(y)]
    assert entry["confusion_value"] == pytest.approx(cells, rel=1e-12)
    assert math.fsum(entry["confusion_value"].values()) == pytest.approx(entry["total_value"])


def test_per_1000_decisions_everywhere_a_value_is(labeled):
    entry = ec.evaluate(*labeled, REFERENCE_QALY_VALUES, 0.3)
    for part in (
        entry,
        entry["elkan_threshold"],
        entry["best_threshold"],
        entry["treat_all"],
        entry["treat_none"],
    ):
        assert part["per_1000_decisions"] == part["expected_value"] * 1000


def test_per_instance_values_at_another_prevalence(labeled):
    labels, scores = labeled
    amount = np.linspace(10, 1000, len(labels))
    costs = CostMatrix(tp=amount - 20, fp=np.full(len(labels), -20.0), tn=0.0, fn=-amount)
    entry = ec.evaluate(labels, scores, costs, 0.5, prevalence=0.2, curve=True)
    weights = ec.prevalence_weights(labels, 0.2)
    values = ec.outcome_values(labels, scores >= 0.5, costs) * weights
    assert entry["total_value"] == pytest.approx(math.fsum(values))
    assert weights.sum() == pytest.approx(len(labels))
    decisions = np.asarray(entry["optimal_decision"]["decisions"], dtype=bool)
    optimal = ec.outcome_values(labels, decisions, costs) * weights
    assert entry["elkan_threshold"]["total_value"] == pytest.approx(math.fsum(optimal))


@pytest.mark.parametrize(
    ("labels", "message"),
    [([0, 0, 0], "only negatives"), ([1, 1], "only positives")],
)
def test_prevalence_needs_both_classes(labels, message):
    with pytest.raises(EconomicsError, match=f"prevalence: the data has {message}"):
        ec.evaluate(labels, [0.5] * len(labels), REFERENCE_QALY_VALUES, prevalence=0.1)


@pytest.mark.parametrize("bad", [-0.1, 1.5, math.nan, math.inf])
def test_prevalence_outside_the_unit_interval_is_named(labeled, bad):
    with pytest.raises(EconomicsError, match=r"^prevalence: "):
        ec.evaluate(*labeled, REFERENCE_QALY_VALUES, prevalence=bad)
