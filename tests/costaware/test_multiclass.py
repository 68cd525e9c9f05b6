"""Multiclass decisions and evaluation against brute force and direct numpy computations."""

import numpy as np
import pytest

from costaware.core import ValueMatrix, ValueMatrixError, decide, evaluate
from costaware.economics import CostMatrix, EconomicsError
from costaware.multiclass import as_class_labels, as_probabilities, class_labels_from_text


def random_case(rng, k, n, per_instance):
    classes = tuple(f"c{j}" for j in range(k))
    shape = (n, k, k) if per_instance else (k, k)
    matrix = ValueMatrix(classes, rng.uniform(-1000, 1000, size=shape))
    probabilities = rng.dirichlet(np.ones(k), size=n)
    return matrix, probabilities


def brute_force(probabilities, matrix):
    """Try every action for every instance with plain loops; keep the first best."""
    decided, values = [], []
    for n, p in enumerate(probabilities):
        v = matrix.values[n] if matrix.per_instance else matrix.values
        ev = [sum(p[i] * v[i][j] for i in range(matrix.k)) for j in range(matrix.k)]
        best = 0
        for j in range(1, matrix.k):
            if ev[j] > ev[best]:
                best = j
        decided.append(best)
        values.append(ev)
    return np.array(decided), np.array(values)


@pytest.mark.parametrize("seed", range(15))
@pytest.mark.parametrize("k", [2, 3, 5])
@pytest.mark.parametrize("per_instance", [False, True])
def test_decision_equals_brute_force_search(seed, k, per_instance):
    rng = np.random.default_rng(seed)
    matrix, p = random_case(rng, k, 150, per_instance)
    got = decide(p, matrix, margin=30.0)
    expected, values = brute_force(p, matrix)
    np.testing.assert_allclose(got.expected_values, values, rtol=1e-12, atol=1e-9)
    np.testing.assert_array_equal(got.index, expected)
    ordered = np.sort(values, axis=1)
    np.testing.assert_allclose(got.gap, ordered[:, -1] - ordered[:, -2], atol=1e-9)
    np.testing.assert_array_equal(got.close, ordered[:, -1] - ordered[:, -2] < 30.0)


@pytest.mark.parametrize("seed", range(10))
def test_two_classes_equal_the_binary_rule(seed):
    rng = np.random.default_rng(50 + seed)
    tp, fp, tn, fn = rng.uniform(-1000, 1000, 4)
    matrix = ValueMatrix(("0", "1"), [[tn, fp], [fn, tp]])
    s = rng.uniform(0, 1, 300)
    multi = decide(np.c_[1 - s, s], matrix, score_margin=0.1)
    costs = CostMatrix(tp=tp, fp=fp, tn=tn, fn=fn)
    binary = decide(np.c_[1 - s, s], costs.value_matrix(), margin=0.0)
    np.testing.assert_array_equal(multi.index, binary.index)
    np.testing.assert_allclose(multi.expected_values, binary.expected_values)
    # score_margin * gap width is the binary |p - t*| < margin in value units
    t = (tn - fp) / ((tn - fp) + (tp - fn))
    if 0 < t < 1:
        edge = np.abs(np.abs(s - t) - 0.1) > 1e-9
        np.testing.assert_array_equal(multi.close[edge], (np.abs(s - t) < 0.1)[edge])


def evaluated_case(seed, k, n, per_instance, margin):
    """A random case, its evaluation, and its values as N x K x K."""
    rng = np.random.default_rng(seed)
    matrix, p = random_case(rng, k, n, per_instance)
    y = rng.integers(0, k, n)
    got = evaluate(y, p, matrix, margin=margin)
    v = matrix.values if per_instance else np.broadcast_to(matrix.values, (n, k, k))
    return matrix, p, y, got, v


@pytest.mark.parametrize("per_instance", [False, True])
def test_evaluate_equals_a_direct_numpy_computation(per_instance):
    k, n = 4, 300
    matrix, p, y, got, v = evaluated_case(7, k, n, per_instance, 40.0)
    ev = np.einsum("ni,nij->nj", p, v)
    decided = ev.argmax(axis=1)
    realised = v[np.arange(n), y, decided]
    confusion = np.zeros((k, k), dtype=int)
    np.add.at(confusion, (y, decided), 1)
    assert got["confusion"]["counts"] == confusion.tolist()
    assert got["expected_value"] == pytest.approx(realised.mean())
    assert got["total_value"] == pytest.approx(realised.sum())
    assert got["accuracy"] == pytest.approx(np.mean(decided == y))
    for j, name in enumerate(matrix.classes):
        row = got["per_class"][name]
        assert row["support"] == int(np.sum(y == j))
        assert row["decided"] == int(np.sum(decided == j))
        assert row["recall"] == pytest.approx(np.sum((y == j) & (decided == j)) / np.sum(y == j))
        if np.sum(decided == j):
            precision = np.sum((y == j) & (decided == j)) / np.sum(decided == j)
            assert row["precision"] == pytest.approx(precision)
        else:
            assert row["precision"] is None and row["f1"] is None
        assert row["fpr"] == pytest.approx(np.sum((y != j) & (decided == j)) / np.sum(y != j))
        always = v[np.arange(n), y, j]
        assert got["always"][name]["expected_value"] == pytest.approx(always.mean())
    argmax = p.argmax(axis=1)
    assert got["argmax_probability"]["expected_value"] == pytest.approx(
        v[np.arange(n), y, argmax].mean()
    )
    top2 = np.sort(ev, axis=1)[:, -2:]
    assert got["close_confusions"]["total"] == int(np.sum(top2[:, 1] - top2[:, 0] < 40.0))
    # the minimum-expected-cost decision is never worse in expectation than any fixed rule
    assert (
        np.take_along_axis(ev, decided[:, None], 1).sum()
        >= np.take_along_axis(ev, argmax[:, None], 1).sum()
    )


@pytest.mark.parametrize("per_instance", [False, True])
def test_confusion_dollars_and_best_single_class_equal_direct_sums(per_instance):
    k, n = 3, 200
    matrix, p, y, got, v = evaluated_case(11, k, n, per_instance, 10.0)
    decided = np.einsum("ni,nij->nj", p, v).argmax(axis=1)
    dollars = np.zeros((k, k))
    for index in range(n):  # plain loop: each instance's value into its cell
        dollars[y[index], decided[index]] += v[index, y[index], decided[index]]
    np.testing.assert_allclose(got["confusion"]["value"], dollars, rtol=1e-12, atol=1e-9)
    assert np.sum(got["confusion"]["value"]) == pytest.approx(got["total_value"])
    always = [v[np.arange(n), y, j].mean() for j in range(k)]
    best = int(np.argmax(always))
    assert got["best_single_class"] == {
        "class": matrix.classes[best],
        "expected_value": pytest.approx(always[best]),
        "total_value": pytest.approx(always[best] * n),
    }


def test_best_single_class_ties_go_to_the_earlier_class():
    matrix = ValueMatrix(("a", "b", "c"), [[1, 5, 5], [0, 2, 2], [0, 1, 1]])
    got = evaluate(np.array([0, 1, 2]), np.full((3, 3), 1 / 3), matrix, margin=0.0)
    assert got["always"]["b"] == got["always"]["c"]
    assert got["best_single_class"]["class"] == "b"


@pytest.mark.parametrize(
    ("mapping", "field"),
    [
        ({"classes": ["a", "b"], "values": [[1, 2], [3]]}, "cost_matrix.values[1]"),
        ({"classes": ["a", "b"], "values": [[1, 2]]}, "cost_matrix.values"),
        (
            {"classes": ["a", "b"], "values": [[1, float("nan")], [3, 4]]},
            "cost_matrix.values[0][1]",
        ),
        ({"classes": ["a", "b"], "values": [[1, "x"], [3, 4]]}, "cost_matrix.values[0][1]"),
        ({"classes": ["a", "a"], "values": [[1, 2], [3, 4]]}, "cost_matrix.classes"),
        ({"classes": ["a"], "values": [[1]]}, "cost_matrix.classes"),
        ({"classes": ["a", "b"]}, "cost_matrix.values"),
        ({"classes": ["a", "b"], "values": [[1, 2], [3, 4]], "x": 1}, "cost_matrix.x"),
    ],
)
def test_bad_value_matrices_name_the_field(mapping, field):
    with pytest.raises(ValueMatrixError) as info:
        ValueMatrix.from_mapping(mapping)
    assert info.value.field == field


def test_class_names_must_match_the_model():
    matrix = ValueMatrix.from_mapping({"classes": ["a", "b"], "values": [[1, 2], [3, 4]]})
    matrix.check_classes(["a", "b"])
    with pytest.raises(ValueMatrixError, match="does not match the model's classes"):
        matrix.check_classes(["b", "a"])


@pytest.mark.parametrize(
    ("rows", "field", "message"),
    [
        ([[0.5, 0.5], [0.2, 0.3, 0.5]], "scores[1]", "has 3 probabilities but there are 2"),
        ([[0.5, 0.5], [0.2, 0.7]], "scores[1]", "sums to"),
        ([[0.5, float("nan")]], "scores[0][1]", "not a finite number"),
        ([[1.5, -0.5]], "scores[0][0]", "not a probability"),
        ([[0.5, "x"]], "scores[0][1]", "not a number"),
        ([], "scores", "empty"),
    ],
)
def test_bad_probabilities_name_the_row(rows, field, message):
    with pytest.raises(EconomicsError) as info:
        as_probabilities(rows, 2)
    assert info.value.field == field and message in info.value.message


def test_rows_summing_to_one_within_the_tolerance_are_accepted():
    as_probabilities([[0.5, 0.5 + 9e-7]], 2)
    with pytest.raises(EconomicsError):
        as_probabilities([[0.5, 0.5 + 2e-6]], 2)


def test_labels_as_names_or_indices():
    classes = ["low", "mid", "high"]
    np.testing.assert_array_equal(as_class_labels(["high", 0, "mid", 2], classes), [2, 0, 1, 2])
    for bad, field in (([0, "x"], "labels[1]"), ([3], "labels[0]"), ([True], "labels[0]")):
        with pytest.raises(EconomicsError) as info:
            as_class_labels(bad, classes)
        assert info.value.field == field


def test_labels_read_as_text_follow_the_same_rule():
    classes = ["low", "mid", "high"]
    np.testing.assert_array_equal(
        class_labels_from_text(["high", "0", "mid", "2.0"], classes), [2, 0, 1, 2]
    )
    # names first: classes named by numbers are those names, not indices
    np.testing.assert_array_equal(class_labels_from_text(["1", "3"], ["3", "2", "1"]), [2, 0])
    for bad, message in (
        (["plane"], "'plane' is not one of the classes ['low', 'mid', 'high']"),
        (["3"], "3 is not a class index 0..2 nor a class name"),
        (["1.5"], "1.5 is not a class name or index"),
        (["nan"], "nan is not a class name or index"),
        ([" low"], "' low' is not one of the classes"),  # the reader strips cells
    ):
        with pytest.raises(EconomicsError) as info:
            class_labels_from_text(bad, classes)
        assert info.value.field == "labels[0]" and message in info.value.message
