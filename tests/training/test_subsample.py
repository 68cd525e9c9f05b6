"""Negative subsampling, its bias audit and the prior-shift correction, on synthetic data.

Oracles are independent of the code under test: the biased sampler is written
here; the drift ranking must name the feature we biased on; the correction is
checked against the logit-shift identity and against observed base rates.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from training.subsample import (
    SubsampleError,
    audit_subsample,
    correct_scores,
    draw_negatives,
    subsample_negatives,
)

BIASED_FEATURE = 3
N_FEATURES = 8


@pytest.fixture(scope="session")
def unbalanced() -> tuple[np.ndarray, np.ndarray]:
    """About 1% positives, fixed seed."""
    x, y = make_classification(
        n_samples=6000,
        n_features=N_FEATURES,
        n_informative=4,
        n_redundant=2,
        weights=[0.99],
        flip_y=0,
        random_state=7,
    )
    return x, y


@pytest.fixture(scope="session")
def negatives(unbalanced) -> np.ndarray:
    x, y = unbalanced
    return x[y == 0]


@pytest.fixture(scope="session")
def names() -> list[str]:
    return [f"f{j}" for j in range(N_FEATURES)]


def biased_mask(x: np.ndarray, k: int, feature: int, slope: float, seed: int) -> np.ndarray:
    """Select k rows with probability proportional to a logistic function of one feature."""
    z = (x[:, feature] - x[:, feature].mean()) / x[:, feature].std()
    weight = 1.0 / (1.0 + np.exp(-slope * z))
    rng = np.random.default_rng(seed)
    chosen = rng.choice(x.shape[0], size=k, replace=False, p=weight / weight.sum())
    mask = np.zeros(x.shape[0], dtype=bool)
    mask[chosen] = True
    return mask


def test_data_is_unbalanced(unbalanced):
    _, y = unbalanced
    assert 0.005 < y.mean() < 0.02


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_uniform_subsample_passes(unbalanced, names, seed):
    x, y = unbalanced
    n_neg = int((y == 0).sum())
    sub = subsample_negatives(x, y, 600, seed=seed, feature_names=names)
    audit = sub.audit
    assert not audit.biased
    assert audit.p_value > audit.alpha == 0.01
    assert audit.k == 600 and audit.n_negatives == n_neg
    assert sub.beta == pytest.approx(600 / n_neg)
    assert audit.chance_accuracy == pytest.approx(1 - 600 / n_neg)
    assert 0.4 < audit.auc < 0.6
    assert audit.draws == 1 and audit.sampler == "uniform" and audit.seed == seed
    # Every positive is kept, plus exactly k negatives.
    assert set(np.flatnonzero(y == 1)) <= set(sub.keep)
    assert sub.keep.size == int(y.sum()) + 600
    assert (y[sub.keep] == 0).sum() == 600


def test_subsample_preferring_high_feature_is_flagged(negatives, names):
    mask = biased_mask(negatives, 600, BIASED_FEATURE, slope=1.0, seed=11)
    audit = audit_subsample(negatives, mask, feature_names=names, seed=0)
    assert audit.biased
    assert audit.p_value <= 0.01
    assert audit.auc > 0.55
    assert audit.drift[0].feature == f"f{BIASED_FEATURE}"
    stats = [d.statistic for d in audit.drift]
    assert stats == sorted(stats, reverse=True)


def test_audit_dict_has_the_contract_fields(negatives, names):
    mask = biased_mask(negatives, 600, BIASED_FEATURE, slope=1.0, seed=11)
    out = audit_subsample(negatives, mask, feature_names=names, seed=0).to_dict()
    for key in ("biased", "p_value", "auc", "accuracy", "chance_accuracy", "alpha", "k"):
        assert key in out
    assert isinstance(out["biased"], bool)
    assert out["drift"][0].keys() >= {"feature", "statistic", "p_value"}
    assert len(out["drift"]) == N_FEATURES
    # The family-wise weights spend alpha exactly once.
    w = out["method"]["weights"]
    total = 2 * w["per_classifier"]
    total += N_FEATURES * (w["per_feature_ks"] + w["per_feature_mann_whitney"])
    assert total == pytest.approx(1.0)


def test_audit_is_reproducible(negatives, names):
    mask = draw_negatives(negatives.shape[0], 300, np.random.default_rng(5))
    a = audit_subsample(negatives, mask, feature_names=names, seed=3).to_dict()
    b = audit_subsample(negatives, mask, feature_names=names, seed=3).to_dict()
    assert a == b


def test_stratified_draw_keeps_stratum_proportions(negatives):
    rng = np.random.default_rng(0)
    strata = rng.integers(0, 3, size=negatives.shape[0])
    k = 500
    mask = draw_negatives(negatives.shape[0], k, rng, strata)
    assert mask.sum() == k
    for g in range(3):
        share = k * (strata == g).sum() / strata.size
        assert abs((mask & (strata == g)).sum() - share) < 1.0


def test_stratified_subsample_records_sampler(unbalanced, names):
    x, y = unbalanced
    sub = subsample_negatives(
        x, y, 600, seed=4, strata=x[:, 0], stratify_by="f0", feature_names=names
    )
    assert sub.audit.sampler == "stratified" and sub.audit.stratify_by == "f0"
    # f0 is continuous: quantile bins of the negatives get (almost) equal shares.
    kept = x[sub.keep][y[sub.keep] == 0, 0]
    edges = np.quantile(x[y == 0, 0], np.linspace(0, 1, 11)[1:-1])
    per_bin = np.bincount(np.searchsorted(edges, kept, side="right"), minlength=10)
    assert per_bin.max() - per_bin.min() <= 1


def test_redraw_replays_from_the_recorded_seed(unbalanced, names):
    """With a lax alpha some draws fail; the returned draw is reproducible from seed+draws."""
    x, y = unbalanced
    negs = x[y == 0]
    sub = subsample_negatives(x, y, 300, seed=9, max_draws=6, alpha=0.9, feature_names=names)
    rng = np.random.default_rng(9)
    masks = [draw_negatives(negs.shape[0], 300, rng) for _ in range(sub.audit.draws)]
    np.testing.assert_array_equal(masks[-1], sub.selected)
    for earlier in masks[:-1]:
        assert audit_subsample(negs, earlier, alpha=0.9, feature_names=names, seed=9).biased
    assert (not sub.audit.biased) or sub.audit.draws == 6


@pytest.mark.parametrize(
    ("k", "fragment"),
    [(0, "between 2 and"), (1, "between 2 and"), (10**6, "between 2 and")],
)
def test_bad_k_is_refused(unbalanced, k, fragment):
    x, y = unbalanced
    with pytest.raises(SubsampleError, match=fragment):
        subsample_negatives(x, y, k)


def test_bad_mask_is_refused(negatives):
    with pytest.raises(SubsampleError, match="only 0 and 1"):
        audit_subsample(negatives, np.full(negatives.shape[0], 2))
    with pytest.raises(SubsampleError, match="shape"):
        audit_subsample(negatives, np.ones(3, dtype=bool))


# --- the prior-shift correction ---------------------------------------------------


@pytest.fixture(scope="session")
def known_base_rate() -> dict[str, np.ndarray | float]:
    """A logistic population with a base rate near 1%: train and test drawn independently."""
    rng = np.random.default_rng(2024)
    w = np.array([1.2, -0.8, 0.5, 0.0])
    intercept = -5.6

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        x = rng.normal(size=(n, w.size))
        p = 1.0 / (1.0 + np.exp(-(intercept + x @ w)))
        return x, (rng.random(n) < p).astype(int)

    x_train, y_train = draw(60_000)
    x_test, y_test = draw(200_000)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


@pytest.fixture(scope="session")
def subsampled_model(known_base_rate):
    x, y = known_base_rate["x_train"], known_base_rate["y_train"]
    m = int(y.sum())
    neg = np.flatnonzero(y == 0)
    k = 4 * m
    rng = np.random.default_rng(0)
    keep = np.concatenate([np.flatnonzero(y == 1), rng.choice(neg, size=k, replace=False)])
    model = LogisticRegression(C=1e6, max_iter=2000).fit(x[keep], y[keep])
    return model, k / neg.size


def test_base_rate_is_about_one_percent(known_base_rate):
    assert 0.005 < known_base_rate["y_test"].mean() < 0.02


def test_corrected_scores_are_calibrated(known_base_rate, subsampled_model):
    model, beta = subsampled_model
    x, y = known_base_rate["x_test"], known_base_rate["y_test"]
    raw = model.predict_proba(x)[:, 1]
    fixed = correct_scores(raw, beta)
    observed = y.mean()
    assert abs(fixed.mean() - observed) < 0.01
    # The uncorrected scores are badly off: the correction is doing the work.
    assert raw.mean() - observed > 0.05
    brier_fixed = np.mean((fixed - y) ** 2)
    brier_raw = np.mean((raw - y) ** 2)
    assert brier_fixed <= brier_raw


def test_correction_is_a_logit_shift_by_log_beta():
    p = np.linspace(0.001, 0.999, 101)
    beta = 0.037
    logit = np.log(p / (1 - p)) + np.log(beta)
    np.testing.assert_allclose(correct_scores(p, beta), 1 / (1 + np.exp(-logit)), rtol=1e-12)
    np.testing.assert_array_equal(correct_scores(p, 1.0), p)


def test_correction_refuses_bad_beta():
    with pytest.raises(SubsampleError, match="beta"):
        correct_scores(np.array([0.5]), 0.0)
