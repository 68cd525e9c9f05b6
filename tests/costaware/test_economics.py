"""The economics core against independent oracles: scikit-learn, brute-force loops, hand sums."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.metrics import (
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
)
from sklearn.metrics import (
    roc_curve as sk_roc_curve,
)

from costaware import economics as ec
from costaware.economics import REFERENCE_QALY_VALUES, CostMatrix, CostMatrixError

# ---------------------------------------------------------------------------
# Fixtures: a seeded generator -> labeled scores with ties -> per-instance values


@pytest.fixture
def rng():
    return np.random.default_rng(20240601)


@pytest.fixture
def labeled(rng):
    """300 labeled scores rounded to 2 decimals, so many ties, some exactly at 0.5."""
    labels = rng.integers(0, 2, 300)
    scores = np.clip(np.round(0.35 * labels + 0.65 * rng.random(300), 2), 0, 1)
    scores[:5] = 0.5
    return labels, scores


@pytest.fixture
def fraud_costs(labeled, rng):
    """Example-dependent values: catching a fraud saves its amount, missing it loses it."""
    amount = np.round(rng.uniform(10, 2000, len(labeled[0])), 2)
    return CostMatrix(tp=amount - 25.0, fp=np.full(len(amount), -25.0), tn=0.0, fn=-amount)


def brute_value(labels, predicted, costs: CostMatrix) -> list[float]:
    """Outcome value of each instance, one plain Python branch at a time."""
    out = []
    for i, (y, p) in enumerate(zip(labels, predicted, strict=True)):
        name = ("tp" if p else "fn") if y == 1 else ("fp" if p else "tn")
        entry = getattr(costs, name)
        out.append(float(entry[i]) if isinstance(entry, np.ndarray) else float(entry))
    return out


# ---------------------------------------------------------------------------
# Cost matrices


def test_reference_matrix_is_the_qaly_table_at_100k_dollars():
    qaly = {"tp": -0.3528, "fp": -0.0128767, "tn": 0.0, "fn": -2.52}
    for name, value in qaly.items():
        assert getattr(REFERENCE_QALY_VALUES, name) == pytest.approx(value * 100_000)


def test_reference_loss_weights_and_no_warnings():
    fn_cost, fp_cost = REFERENCE_QALY_VALUES.loss_weights()
    assert fn_cost == pytest.approx(252000 - 35280)
    assert fp_cost == pytest.approx(1287.67)
    assert REFERENCE_QALY_VALUES.warnings() == []


def test_from_mapping_accepts_numbers_and_per_instance_lists():
    costs = CostMatrix.from_mapping({"tp": 1, "fp": -2.5, "tn": 0, "fn": [-1, -2, -3]}, n=3)
    assert costs.tp == 1.0 and costs.per_instance and costs.n == 3
    assert costs.fn.tolist() == [-1.0, -2.0, -3.0]
    assert CostMatrix.from_mapping(REFERENCE_QALY_VALUES.to_dict()) == REFERENCE_QALY_VALUES


@pytest.mark.parametrize(
    ("mapping", "n", "field"),
    [
        ({"tp": 1, "fp": 1, "tn": 0}, None, "cost_matrix.fn"),
        ({"tp": 1, "fp": 1, "tn": 0, "fn": None}, None, "cost_matrix.fn"),
        ({"tp": float("nan"), "fp": 1, "tn": 0, "fn": 0}, None, "cost_matrix.tp"),
        ({"tp": 1, "fp": float("inf"), "tn": 0, "fn": 0}, None, "cost_matrix.fp"),
        ({"tp": "1", "fp": 1, "tn": 0, "fn": 0}, None, "cost_matrix.tp"),
        ({"tp": True, "fp": 1, "tn": 0, "fn": 0}, None, "cost_matrix.tp"),
        ({"tp": 1, "fp": 1, "tn": 0, "fn": 0, "fx": 3}, None, "cost_matrix.fx"),
        (
            {"tp": [0.0] * 17 + [float("nan")], "fp": 1, "tn": 0, "fn": 0},
            None,
            "cost_matrix.tp[17]",
        ),
        ({"tp": [1, 2, "x"], "fp": 1, "tn": 0, "fn": 0}, None, "cost_matrix.tp[2]"),
        ({"tp": [1, 2, 3], "fp": 1, "tn": 0, "fn": 0}, 4, "cost_matrix.tp"),
        ({"tp": [1, 2, 3], "fp": [1, 2], "tn": 0, "fn": 0}, None, "cost_matrix"),
        ({"tp": [[1, 2]], "fp": 1, "tn": 0, "fn": 0}, None, "cost_matrix.tp"),
        ([1, 2, 3, 4], None, "cost_matrix"),
    ],
)
def test_from_mapping_names_the_bad_field(mapping, n, field):
    with pytest.raises(CostMatrixError) as caught:
        CostMatrix.from_mapping(mapping, n=n)
    assert caught.value.field == field
    assert str(caught.value).startswith(field)
    assert isinstance(caught.value, ValueError)


def test_per_instance_matrix_has_no_scalar_loss_weights(fraud_costs):
    with pytest.raises(CostMatrixError):
        fraud_costs.loss_weights()


@pytest.mark.parametrize(
    ("costs", "expected"),
    [
        (CostMatrix(tp=-10, fp=-1, tn=0, fn=-10), ["v_tp = -10 <= v_fn = -10"]),
        (CostMatrix(tp=5, fp=2, tn=0, fn=-1), ["v_tn = 0 <= v_fp = 2"]),
        (CostMatrix(tp=-5, fp=2, tn=0, fn=1), ["v_tp = -5 <= v_fn = 1", "v_tn = 0 <= v_fp = 2"]),
        (
            CostMatrix(tp=[1.0, -3.0, 2.0], fp=-1, tn=0, fn=-2),
            ["1 of 3 instances have v_tp <= v_fn"],
        ),
    ],
)
def test_reasonableness_warnings(costs, expected):
    warnings = costs.warnings()
    assert len(warnings) == len(expected)
    for warning, fragment in zip(warnings, expected, strict=True):
        assert fragment in warning and "Elkan" in warning


# ---------------------------------------------------------------------------
# Counts, rates, AUC


def test_confusion_matches_sklearn_including_ties_at_the_threshold(labeled):
    labels, scores = labeled
    for threshold in (0.0, 0.3, 0.5, 0.77, 1.0):
        got = ec.confusion(labels, scores, threshold)
        tn, fp, fn, tp = confusion_matrix(labels, scores >= threshold, labels=[0, 1]).ravel()
        assert got.counts() == {"tp": tp, "fp": fp, "tn": tn, "fn": fn}
        rates = got.rates()
        assert rates["tpr"] == pytest.approx(tp / (tp + fn))
        assert rates["fpr"] == pytest.approx(fp / (fp + tn))
        assert rates["accuracy"] == pytest.approx((tp + tn) / len(labels))


def test_undefined_rates_are_none():
    rates = ec.confusion([0, 0, 0], [0.1, 0.2, 0.9], 0.5).rates()
    assert rates["tpr"] is None and rates["fnr"] is None
    assert rates["fpr"] == pytest.approx(1 / 3)


def test_classification_report_matches_sklearn(labeled):
    labels, scores = labeled
    for predicted in (scores >= 0.5, np.zeros(len(labels), dtype=int)):
        got = ec.classification_report(labels, predicted)
        p, r, f, support = precision_recall_fscore_support(
            labels, predicted, labels=[0, 1], zero_division=0
        )
        for cls in (0, 1):
            assert got[str(cls)]["precision"] == pytest.approx(p[cls])
            assert got[str(cls)]["recall"] == pytest.approx(r[cls])
            assert got[str(cls)]["f1"] == pytest.approx(f[cls])
            assert got[str(cls)]["support"] == support[cls]


def test_roc_auc_matches_sklearn_with_ties(labeled, rng):
    labels, scores = labeled
    assert ec.roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))
    coarse = np.round(scores, 1)
    assert ec.roc_auc(labels, coarse) == pytest.approx(roc_auc_score(labels, coarse))
    assert ec.roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == pytest.approx(0.5)


def test_roc_auc_undefined_with_one_class():
    assert ec.roc_auc([1, 1, 1], [0.2, 0.5, 0.9]) is None


def test_roc_curve_matches_sklearn(labeled):
    labels, scores = labeled
    fpr, tpr, _ = ec.roc_curve(labels, scores)
    sk_fpr, sk_tpr, _ = sk_roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)


def test_close_confusions_match_a_brute_force_count(labeled):
    labels, scores = labeled
    threshold, margin = 0.5, 0.1
    expected = {"tp": 0, "fp": 0, "tn": 0, "fn": 0, "total": 0}
    for y, s in zip(labels, scores, strict=True):
        if abs(s - threshold) < margin:
            cell = (
                ("tp" if s >= threshold else "fn") if y == 1 else ("fp" if s >= threshold else "tn")
            )
            expected[cell] += 1
            expected["total"] += 1
    assert ec.close_confusions(labels, scores, threshold, margin) == expected
    assert expected["total"] > 0


@pytest.mark.parametrize(
    ("labels", "scores", "field"),
    [
        ([0, 2, 1], [0.1, 0.2, 0.3], "labels[1]"),
        ([0, 1], [0.1, 0.2, 0.3], "labels"),
        ([], [], "labels"),
        ([0, "1", 1], [0.1, 0.2, 0.3], "labels[1]"),
        ([0, 1, 1], [0.1, float("nan"), 0.3], "scores[1]"),
        ([0, 1, 1], [0.1, 0.2, 1.5], "scores[2]"),
        ([0, 1, 1], [0.1, None, 0.3], "scores[1]"),
    ],
)
def test_bad_labels_and_scores_name_the_element(labels, scores, field):
    with pytest.raises(ec.EconomicsError) as caught:
        ec.evaluate(labels, scores, REFERENCE_QALY_VALUES, 0.5, 0.1)
    assert caught.value.field == field


def test_threshold_outside_unit_interval_is_refused():
    with pytest.raises(ec.EconomicsError) as caught:
        ec.confusion([0, 1], [0.2, 0.8], 1.5)
    assert caught.value.field == "threshold"


# ---------------------------------------------------------------------------
# Value


def test_expected_value_by_hand():
    # one of each outcome: TP (0.9), FN (0.4), FP (0.6), TN (0.1)
    labels, scores = [1, 1, 0, 0], [0.9, 0.4, 0.6, 0.1]
    by_hand = (-35280 - 252000 - 1287.67 + 0) / 4
    assert ec.expected_value(labels, scores, 0.5, REFERENCE_QALY_VALUES) == pytest.approx(by_hand)
    assert ec.total_value(labels, scores, 0.5, REFERENCE_QALY_VALUES) == pytest.approx(4 * by_hand)


def test_expected_value_equals_the_reference_rate_formula(labeled):
    labels, scores = labeled
    tn, fp, fn, tp = confusion_matrix(labels, scores >= 0.5).ravel()
    n = tn + fp + fn + tp
    p = (tp + fn) / n
    fpr, fnr = fp / (fp + tn), fn / (fn + tp)
    v = REFERENCE_QALY_VALUES
    formula = (1 - p) * (v.tn * (1 - fpr) + v.fp * fpr) + p * (v.tp * (1 - fnr) + v.fn * fnr)
    assert ec.expected_value(labels, scores, 0.5, v) == pytest.approx(formula)


def test_example_dependent_value_matches_a_loop(labeled, fraud_costs):
    labels, scores = labeled
    values = brute_value(labels, scores >= 0.3, fraud_costs)
    assert ec.total_value(labels, scores, 0.3, fraud_costs) == pytest.approx(math.fsum(values))
    assert ec.expected_value(labels, scores, 0.3, fraud_costs) == pytest.approx(
        math.fsum(values) / len(values)
    )


def test_per_instance_values_of_the_wrong_length_are_refused(labeled, fraud_costs):
    labels, scores = labeled
    with pytest.raises(CostMatrixError) as caught:
        ec.evaluate(labels[:-1], scores[:-1], fraud_costs, 0.5, 0.1)
    assert caught.value.field == "cost_matrix.tp"


# ---------------------------------------------------------------------------
# Elkan's threshold and optimal decisions


def test_elkan_threshold_for_the_reference_matrix():
    elkan = ec.elkan_threshold(REFERENCE_QALY_VALUES)
    assert elkan.kind == "threshold"
    assert elkan.value == pytest.approx(0.00591, abs=1e-5)
    assert elkan.value == pytest.approx(1287.67 / (1287.67 + 216720))


@pytest.mark.parametrize(
    ("costs", "kind", "value", "decisions"),
    [
        # a = v_tn - v_fp, b = v_tp - v_fn; decisions for scores 0.0, 0.3, 1.0
        (CostMatrix(tp=3, fp=-1, tn=0, fn=0), "threshold", 0.25, [0, 1, 1]),
        (CostMatrix(tp=1, fp=0, tn=0, fn=0), "always_positive", 0.0, [1, 1, 1]),
        (CostMatrix(tp=1, fp=5, tn=0, fn=0), "always_positive", 0.0, [1, 1, 1]),
        (CostMatrix(tp=0, fp=-1, tn=0, fn=0), "always_negative", None, [0, 0, 0]),
        (CostMatrix(tp=-1, fp=-1, tn=0, fn=0), "always_negative", None, [0, 0, 0]),
        (CostMatrix(tp=2, fp=2, tn=2, fn=2), "indifferent", None, [0, 0, 0]),
        (CostMatrix(tp=-1, fp=1, tn=0, fn=0), "inverted", 0.5, [1, 1, 0]),
    ],
)
def test_elkan_degenerate_matrices(costs, kind, value, decisions):
    elkan = ec.elkan_threshold(costs)
    assert elkan.kind == kind
    assert elkan.value == (pytest.approx(value) if value is not None else None)
    assert elkan.decide(np.array([0.0, 0.3, 1.0])).astype(int).tolist() == decisions


@pytest.mark.parametrize(
    "costs",
    [
        CostMatrix(tp=3, fp=-1, tn=0, fn=0),
        CostMatrix(tp=1, fp=5, tn=0, fn=0),
        CostMatrix(tp=-1, fp=-1, tn=0, fn=0),
        CostMatrix(tp=-1, fp=1, tn=0, fn=1),
        REFERENCE_QALY_VALUES,
    ],
)
def test_elkan_decisions_maximise_each_instances_expected_value(costs):
    scores = np.linspace(0, 1, 101)
    decided = ec.elkan_threshold(costs).decide(scores)
    for s, treat in zip(scores, decided, strict=True):
        ev_treat = s * costs.tp + (1 - s) * costs.fp
        ev_wait = s * costs.fn + (1 - s) * costs.tn
        chosen, other = (ev_treat, ev_wait) if treat else (ev_wait, ev_treat)
        assert chosen >= other - 1e-9


def test_elkan_needs_a_scalar_matrix(fraud_costs):
    with pytest.raises(CostMatrixError):
        ec.elkan_threshold(fraud_costs)


def test_per_instance_optimal_decisions_match_a_loop(labeled, fraud_costs):
    _, scores = labeled
    got = ec.optimal_decisions(scores, fraud_costs)
    for i, s in enumerate(scores):
        treat = s * fraud_costs.tp[i] + (1 - s) * fraud_costs.fp[i]
        wait = s * fraud_costs.fn[i] + (1 - s) * fraud_costs.tn
        assert got[i] == (treat >= wait)


# ---------------------------------------------------------------------------
# Best threshold and sweep


def brute_best(labels, scores, costs):
    """Try treat-none and every distinct score; keep the lowest threshold among the best."""
    n = len(labels)
    best = (math.fsum(brute_value(labels, [False] * n, costs)), None)
    for t in sorted(set(scores.tolist()), reverse=True):
        total = math.fsum(brute_value(labels, scores >= t, costs))
        if total >= best[0] - 1e-6:
            best = (total, t)
    return best


@pytest.mark.parametrize("costs_name", ["reference", "fraud", "even"])
def test_best_threshold_matches_brute_force(labeled, fraud_costs, costs_name):
    costs = {
        "reference": REFERENCE_QALY_VALUES,
        "fraud": fraud_costs,
        "even": CostMatrix(tp=1, fp=-1, tn=1, fn=-1),
    }[costs_name]
    labels, scores = labeled
    total, threshold = brute_best(labels, scores, costs)
    got = ec.best_threshold(labels, scores, costs)
    assert got.in_sample is True
    assert got.threshold == threshold
    assert got.total_value == pytest.approx(total)
    assert got.expected_value == pytest.approx(total / len(labels))


def test_best_threshold_ties_go_to_the_lower_threshold():
    # Treating the 0.4 negative costs nothing (v_fp == v_tn), so 0.4 ties with 0.7.
    costs = CostMatrix(tp=10, fp=0, tn=0, fn=0)
    got = ec.best_threshold([1, 0, 0], [0.7, 0.4, 0.1], costs)
    assert got.threshold == 0.1 and got.total_value == 10


def test_best_threshold_can_be_treat_none():
    costs = CostMatrix(tp=-5, fp=-5, tn=0, fn=0)
    got = ec.best_threshold([1, 0, 1], [0.9, 0.4, 0.2], costs)
    assert got.threshold is None and got.n_treated == 0 and got.total_value == 0
    assert got.to_dict()["decision"] == "treat_none"


def test_best_threshold_handles_200000_scores(rng):
    labels = rng.integers(0, 2, 200_000)
    scores = np.round(rng.random(200_000), 4)
    got = ec.best_threshold(labels, scores, REFERENCE_QALY_VALUES)
    # Spot-check the winner against the direct computation at that threshold.
    assert got.total_value == pytest.approx(
        ec.total_value(labels, scores, got.threshold, REFERENCE_QALY_VALUES)
    )
    for t in (0.0, 0.001, 0.01, 0.5):
        assert ec.total_value(labels, scores, t, REFERENCE_QALY_VALUES) <= got.total_value + 1e-3


def test_threshold_sweep_matches_direct_computation(labeled, fraud_costs):
    labels, scores = labeled
    grid = [0.0, 0.05, 0.3, 0.5, 0.51, 0.99, 1.0]
    for costs in (REFERENCE_QALY_VALUES, fraud_costs):
        sweep = ec.threshold_sweep(labels, scores, costs, grid)
        for i, t in enumerate(grid):
            _, fp, _, tp = confusion_matrix(labels, scores >= t, labels=[0, 1]).ravel()
            n = len(labels)
            assert sweep.expected_value[i] == pytest.approx(
                math.fsum(brute_value(labels, scores >= t, costs)) / n
            )
            assert (sweep.tp[i], sweep.fp[i]) == (tp, fp)
            if t < 1:
                assert sweep.net_benefit[i] == pytest.approx(tp / n - fp / n * t / (1 - t))
            else:
                assert math.isnan(sweep.net_benefit[i])
    assert json.loads(json.dumps(sweep.to_dict(), allow_nan=False))["net_benefit"][-1] is None


def test_default_sweep_grid_reaches_near_zero_thresholds(labeled):
    sweep = ec.threshold_sweep(*labeled, REFERENCE_QALY_VALUES)
    assert sweep.thresholds[0] == 0.0 and sweep.thresholds[-1] == 1.0
    assert (sweep.thresholds < 0.01).sum() >= 20
    assert np.all(np.diff(sweep.thresholds) > 0)


# ---------------------------------------------------------------------------
# evaluate(): one /evaluate entry


@pytest.fixture
def entry(labeled):
    return ec.evaluate(*labeled, REFERENCE_QALY_VALUES, 0.5, 0.1)


def test_evaluate_entry_is_strict_json(entry):
    assert json.loads(json.dumps(entry, allow_nan=False)) == entry


def test_evaluate_entry_agrees_with_the_oracles(labeled, entry):
    labels, scores = labeled
    tn, fp, fn, tp = confusion_matrix(labels, scores >= 0.5).ravel()
    assert entry["confusion"] == {"tp": tp, "fp": fp, "tn": tn, "fn": fn}
    assert entry["n"] == len(labels)
    assert entry["prevalence"] == pytest.approx(labels.mean())
    assert entry["auc"] == pytest.approx(roc_auc_score(labels, scores))
    values = brute_value(labels, scores >= 0.5, REFERENCE_QALY_VALUES)
    assert entry["total_value"] == pytest.approx(math.fsum(values))
    assert entry["expected_value"] == pytest.approx(math.fsum(values) / len(values))
    t_star = 1287.67 / (1287.67 + 216720)
    at_t_star = brute_value(labels, scores >= t_star, REFERENCE_QALY_VALUES)
    assert entry["elkan_threshold"]["value"] == pytest.approx(t_star)
    assert entry["elkan_threshold"]["expected_value"] == pytest.approx(
        math.fsum(at_t_star) / len(labels)
    )
    n_pos = int(labels.sum())
    assert entry["treat_all"]["total_value"] == pytest.approx(
        n_pos * -35280 + (len(labels) - n_pos) * -1287.67
    )
    assert entry["treat_none"]["total_value"] == pytest.approx(n_pos * -252000)
    assert entry["best_threshold"]["in_sample"] is True
    assert entry["best_threshold"]["expected_value"] >= entry["elkan_threshold"]["expected_value"]
    assert entry["warnings"] == []


def test_evaluate_with_example_dependent_values(labeled, fraud_costs):
    labels, scores = labeled
    entry = ec.evaluate(labels, scores, fraud_costs, 0.5, 0.1)
    decisions = [
        s * fraud_costs.tp[i] + (1 - s) * fraud_costs.fp[i] >= s * fraud_costs.fn[i]
        for i, s in enumerate(scores)
    ]
    optimal = math.fsum(brute_value(labels, decisions, fraud_costs))
    assert entry["optimal_decision"]["decisions"] == [int(d) for d in decisions]
    assert entry["optimal_decision"]["total_value"] == pytest.approx(optimal)
    assert entry["elkan_threshold"]["kind"] == "per_instance"
    assert entry["elkan_threshold"]["total_value"] == pytest.approx(optimal)
    assert json.loads(json.dumps(entry, allow_nan=False)) == entry


def test_evaluate_degenerate_matrix_reports_it_and_warns(labeled):
    costs = CostMatrix(tp=-1, fp=-1, tn=0, fn=0)
    entry = ec.evaluate(*labeled, costs, 0.5, 0.1)
    assert entry["elkan_threshold"]["kind"] == "always_negative"
    assert entry["elkan_threshold"]["value"] is None
    assert entry["elkan_threshold"]["total_value"] == entry["treat_none"]["total_value"] == 0
    assert any("v_tp" in w for w in entry["warnings"])
