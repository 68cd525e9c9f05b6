import numpy as np
import pytest

from training.losses import cost_weighted_loss


def _loss(fn_cost, fp_cost, y, p):
    import keras

    value = cost_weighted_loss(fn_cost, fp_cost)(
        keras.ops.convert_to_tensor(np.asarray(y, dtype=np.float32).reshape(-1, 1)),
        keras.ops.convert_to_tensor(np.asarray(p, dtype=np.float32).reshape(-1, 1)),
    )
    return float(keras.ops.convert_to_numpy(value))


@pytest.mark.parametrize(
    ("fn_cost", "fp_cost", "y", "p", "expected"),
    [
        # one positive scored 0.8 misses 0.2 of the way: 0.2*5; one negative at 0.3: 0.3*1
        (5, 1, [1, 0], [0.8, 0.3], (0.2 * 5 + 0.3 * 1) / 2),
        # perfect scores cost nothing
        (200, 1, [1, 0, 1], [1.0, 0.0, 1.0], 0.0),
        # all wrong, maximally: every positive at 0 costs fn, every negative at 1 costs fp
        (200, 1, [1, 0, 0, 0], [0.0, 1.0, 1.0, 1.0], (200 + 1 + 1 + 1) / 4),
        # equal weights: the mean absolute error
        (1, 1, [1, 0, 1, 0], [0.9, 0.2, 0.4, 0.5], (0.1 + 0.2 + 0.6 + 0.5) / 4),
        # fn_cost 0: positives are free whatever their score
        (0, 2, [1, 1, 0], [0.0, 0.3, 0.25], (0 + 0 + 0.5) / 3),
    ],
)
def test_hand_computed_cases(fn_cost, fp_cost, y, p, expected):
    assert _loss(fn_cost, fp_cost, y, p) == pytest.approx(expected, abs=1e-6)


def test_is_an_unweighted_mean_over_the_batch():
    # duplicating the batch leaves the loss unchanged; a sum would double it
    y, p = [1, 0, 1], [0.7, 0.4, 0.1]
    assert _loss(5, 1, y * 2, p * 2) == pytest.approx(_loss(5, 1, y, p), abs=1e-7)


def test_random_batch_matches_the_formula():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 64)
    p = rng.uniform(size=64)
    formula = np.mean(y * np.abs(1 - p) * 7.5 + (1 - y) * np.abs(p) * 0.5)
    assert _loss(7.5, 0.5, y, p) == pytest.approx(formula, rel=1e-5)
