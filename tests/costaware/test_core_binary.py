"""The core's decision rule on a binary matrix (K = 2, treat on a tie) against a
brute-force search over the two actions."""

from types import SimpleNamespace

import numpy as np
import pytest

from costaware.core import (
    ScoreCounts,
    ValueMatrix,
    as_scores,
    binary_probabilities,
    decide,
    value_margin,
)
from costaware.economics import (
    REFERENCE_QALY_VALUES,
    CostMatrix,
    EconomicsError,
    elkan_threshold,
    evaluate,
    evaluate_counts,
)


def decide_binary(scores, costs, margin):
    """The core's decision on the scores as P(positive), with both actions' values."""
    got = decide(binary_probabilities(as_scores(scores)), costs.value_matrix(), margin=margin)
    return SimpleNamespace(
        treat=got.index == 1,
        value_treat=got.expected_values[:, 1],
        value_not_treat=got.expected_values[:, 0],
        close=got.close,
    )


def value_margin_from_score_margin(score_margin, costs, n):
    return value_margin(score_margin, costs.value_matrix(), n)


OUTCOMES = ("tp", "fp", "tn", "fn")


def brute_force(scores, costs):
    """For each instance, try both actions and keep the better (ties: treat)."""
    decided, values = [], []
    for n, p in enumerate(scores):
        v = {k: float(np.broadcast_to(getattr(costs, k), len(scores))[n]) for k in OUTCOMES}
        treat = p * v["tp"] + (1 - p) * v["fp"]
        not_treat = p * v["fn"] + (1 - p) * v["tn"]
        decided.append(treat >= not_treat)
        values.append((treat, not_treat))
    return np.array(decided), np.array(values)


def random_matrix(rng, n=None):
    size = None if n is None else n
    return CostMatrix(**{k: rng.uniform(-1000, 1000, size=size) for k in OUTCOMES})


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("per_instance", [False, True])
def test_decision_equals_brute_force_search(seed, per_instance):
    rng = np.random.default_rng(seed)
    n = 200
    scores = rng.uniform(0, 1, n)
    costs = random_matrix(rng, n if per_instance else None)
    got = decide_binary(scores, costs, margin=25.0)
    expected, values = brute_force(scores, costs)
    np.testing.assert_allclose(got.value_treat, values[:, 0], rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(got.value_not_treat, values[:, 1], rtol=1e-12, atol=1e-9)
    differ = got.treat != expected
    # the rule form and the two sums may round differently only at an exact tie
    assert (np.abs(values[differ, 0] - values[differ, 1]) < 1e-9).all()
    assert differ.sum() == 0
    np.testing.assert_array_equal(got.close, np.abs(values[:, 0] - values[:, 1]) < 25.0)


@pytest.mark.parametrize("seed", range(20))
def test_constant_matrix_equals_elkan_threshold(seed):
    rng = np.random.default_rng(100 + seed)
    # a reasonable matrix: deciding right is worth more than deciding wrong
    tn, fn = rng.uniform(-100, 100, 2)
    costs = CostMatrix(tp=fn + rng.uniform(1, 500), fp=tn - rng.uniform(1, 500), tn=tn, fn=fn)
    elkan = elkan_threshold(costs)
    scores = rng.uniform(0, 1, 500)
    got = decide_binary(scores, costs, margin=0.0)
    np.testing.assert_array_equal(got.treat, scores >= elkan.value)


def test_reference_matrix_on_a_grid_around_t_star():
    t = elkan_threshold(REFERENCE_QALY_VALUES).value
    scores = np.clip(t + np.linspace(-1e-3, 1e-3, 2001), 0, 1)
    got = decide_binary(scores, REFERENCE_QALY_VALUES, margin=0.0)
    np.testing.assert_array_equal(got.treat, scores >= t)


def test_score_margin_converts_to_the_distance_from_t_star():
    costs = REFERENCE_QALY_VALUES
    t = elkan_threshold(costs).value
    scores = np.linspace(0, 1, 1001)
    margin = value_margin_from_score_margin(0.1, costs, len(scores))
    got = decide_binary(scores, costs, margin=margin)
    # the value gap is (a + b) * |p - t*|: the same instances as |p - t*| < 0.1, up to rounding
    far_from_edge = np.abs(np.abs(scores - t) - 0.1) > 1e-9
    np.testing.assert_array_equal(
        got.close[far_from_edge], (np.abs(scores - t) < 0.1)[far_from_edge]
    )


@pytest.mark.parametrize(
    ("scores", "margin", "field"),
    [([0.2, float("nan")], 1.0, "scores[1]"), ([0.2, 1.5], 1.0, "scores[1]"),
     ([0.2], float("nan"), "margin"), ([0.2], -1.0, "margin")],
)  # fmt: skip
def test_bad_input_names_the_field(scores, margin, field):
    with pytest.raises(EconomicsError) as info:
        decide_binary(scores, REFERENCE_QALY_VALUES, margin=margin)
    assert info.value.field == field


def test_the_one_tie_rule_treats_a_binary_tie_and_takes_the_earlier_of_k_classes():
    # v_tp - v_fn = v_tn - v_fp = 1: at p = 0.5 both actions are worth exactly the same.
    costs = CostMatrix(tp=1.0, fp=0.0, tn=1.0, fn=0.0)
    rows = np.array([[0.5, 0.5]])
    binary = decide(rows, costs.value_matrix(), margin=0.0)
    k_class = decide(rows, ValueMatrix(("a", "b"), costs.as_value_matrix()), margin=0.0)
    assert binary.expected_values[0, 0] == binary.expected_values[0, 1]
    assert binary.index.tolist() == [1]  # binary: treat
    assert k_class.index.tolist() == [0]  # K classes: the earlier class


@pytest.mark.parametrize("prevalence", [None, 0.2])
def test_evaluation_of_score_counts_equals_the_evaluation_of_the_rows(prevalence):
    rng = np.random.default_rng(11)
    labels = rng.integers(0, 2, 3000)
    scores = np.round(rng.uniform(0, 1, 3000), 3)  # many ties
    costs = CostMatrix(tp=120.0, fp=-15.0, tn=0.0, fn=-480.0)
    rows = evaluate(labels, scores, costs, 0.3, 0.05, prevalence=prevalence, curve=True)
    counted = evaluate_counts(
        ScoreCounts.of(labels, scores), costs, 0.3, 0.05, prevalence=prevalence, curve=True
    )
    rows.pop("warnings")
    assert counted.keys() == rows.keys()
    for key in ("n", "confusion", "rates", "per_class", "close_confusions", "threshold"):
        assert counted[key] == rows[key], key
    assert counted["best_threshold"]["threshold"] == rows["best_threshold"]["threshold"]
    assert counted["curve"]["thresholds"] == rows["curve"]["thresholds"]
    for key in ("expected_value", "total_value", "auc"):
        assert counted[key] == pytest.approx(rows[key], rel=1e-9), key
    np.testing.assert_allclose(
        counted["curve"]["expected_value"], rows["curve"]["expected_value"], rtol=1e-9
    )
