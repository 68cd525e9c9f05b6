"""Negative subsampling for unbalanced data, the audit that it is unbiased, and the
prior-shift correction of the scores a model trained on it produces.

A subsample of the negatives is biased exactly when some classifier can tell the
selected negatives from the unselected ones better than chance. The audit asks two
classifiers (gradient boosting for non-linear selection, a logistic regression for
selection along a direction in feature space) and, per feature, a Kolmogorov–Smirnov
test (any change of distribution) and a Mann–Whitney test (the feature alone as a
score: a shift). A weighted Bonferroni correction over all of them keeps the
false-alarm rate of the verdict at or below ``alpha`` on a uniform subsample.

Why the classifier p-values come from cross-fitting on two halves and not from the
pooled out-of-fold scores of K folds: pooled out-of-fold scores are not independent
(the model scoring fold f was trained on fold g and vice versa), and a Mann–Whitney
test on them is anti-conservative. We measured a false-alarm rate of 4.7% at a
nominal 1% that way. Each half's scores come from a model that never saw that half,
so its test is exact; the two halves are combined by Bonferroni.

numpy, scipy and scikit-learn only: no TensorFlow here, so the audit is usable
(and testable) without the training stack.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import numpy as np

__all__ = [
    "DEFAULT_ALPHA",
    "AuditResult",
    "ClassifierTest",
    "FeatureDrift",
    "Subsample",
    "SubsampleError",
    "audit_subsample",
    "correct_scores",
    "draw_negatives",
    "subsample_negatives",
]

DEFAULT_ALPHA = 0.01
DEFAULT_SPLITS = 2
# A stratification column with more distinct values than this is treated as
# continuous and cut into quantile bins; fewer are taken as categories.
MAX_CATEGORIES = 20
QUANTILE_BINS = 10

Sampler = Literal["uniform", "stratified", "given"]
_CLASSIFIERS = ("gradient_boosting", "logistic")


class SubsampleError(ValueError):
    """A subsample request that cannot be honoured (sizes, labels, shapes)."""


@dataclass(frozen=True)
class FeatureDrift:
    """One feature, selected vs unselected negatives.

    ``statistic``/``p_value``: two-sample KS. ``auc``/``auc_p_value``: the feature
    alone as a score for "selected" (two-sided Mann–Whitney).
    """

    feature: str
    statistic: float
    p_value: float
    auc: float
    auc_p_value: float


@dataclass(frozen=True)
class ClassifierTest:
    """One classifier two-sample test of "was this negative selected?".

    ``auc`` and ``accuracy`` are over the out-of-fold scores of both halves;
    ``p_value`` is twice the smaller of the halves' one-sided Mann–Whitney p-values.
    """

    name: str
    auc: float
    accuracy: float
    p_value: float


@dataclass(frozen=True)
class AuditResult:
    """The verdict on one subsample of negatives, plus the evidence behind it.

    ``p_value`` is family-wise adjusted (weighted Bonferroni over both classifiers
    and every feature's KS and Mann–Whitney tests), so ``biased = p_value <= alpha`` has a
    false-alarm rate of at most ``alpha``. ``auc`` and ``accuracy`` are those of
    the classifier with the strongest evidence; ``accuracy`` is the seed's
    statistic, to be read against ``chance_accuracy = max(r, 1 - r)`` with
    ``r = k / n_negatives``.
    """

    biased: bool
    p_value: float
    alpha: float
    auc: float
    accuracy: float
    chance_accuracy: float
    n_negatives: int
    k: int
    drift: list[FeatureDrift]
    classifiers: list[ClassifierTest]
    n_splits: int
    seed: int | None = None
    draws: int = 1
    sampler: Sampler = "uniform"
    stratify_by: str | None = None
    weights: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "biased": self.biased,
            "p_value": self.p_value,
            "alpha": self.alpha,
            "auc": self.auc,
            "accuracy": self.accuracy,
            "chance_accuracy": self.chance_accuracy,
            "n_negatives": self.n_negatives,
            "k": self.k,
            "selection_rate": self.k / self.n_negatives,
            "seed": self.seed,
            "draws": self.draws,
            "sampler": self.sampler,
            "stratify_by": self.stratify_by,
            "drift": [asdict(d) for d in self.drift],
            "classifiers": [asdict(c) for c in self.classifiers],
            "method": {
                "two_sample_test": (
                    "classifier two-sample test: selected negatives labelled 1, the rest 0; "
                    f"stratified {self.n_splits}-fold cross-fitting; AUC and accuracy over "
                    "all out-of-fold scores; p-value: one-sided Mann-Whitney U (AUC > 0.5) "
                    "on each fold's scores, Bonferroni over the folds"
                ),
                "classifiers": [c.name for c in self.classifiers],
                "drift": (
                    "per feature, selected vs unselected: two-sample Kolmogorov-Smirnov "
                    "(statistic, p_value) and two-sided Mann-Whitney (auc, auc_p_value)"
                ),
                "combination": (
                    "weighted Bonferroni: p_value = min(1, min_i p_i / w_i), "
                    "sum of weights 1, so P(false alarm) <= alpha"
                ),
                "weights": self.weights,
            },
        }


@dataclass(frozen=True)
class Subsample:
    """A drawn subsample: which rows to train on, the selection rate, and the audit."""

    keep: np.ndarray  # sorted row indices into the input: every positive + selected negatives
    selected: np.ndarray  # bool mask over the negatives (in row order)
    n_positives: int
    beta: float
    audit: AuditResult

    def card_section(self) -> dict[str, Any]:
        """What goes into the model card's ``subsample`` section."""
        return {
            "beta": self.beta,
            "k": self.audit.k,
            "n_negatives": self.audit.n_negatives,
            "n_positives": self.n_positives,
            "seed": self.audit.seed,
            "draws": self.audit.draws,
            "sampler": self.audit.sampler,
            "stratify_by": self.audit.stratify_by,
            "split": "training split only; validation and test data are not subsampled",
            "audit": self.audit.to_dict(),
        }


def correct_scores(scores: np.ndarray, beta: float) -> np.ndarray:
    """Map scores learned on a subsample (negatives kept at rate ``beta``) to the true base rate.

    ``p = beta * p_s / (beta * p_s - p_s + 1)`` (Dal Pozzolo et al., 2015). The
    exported ONNX graph applies the same formula; this is its numpy reference.
    """
    if not 0 < beta <= 1:
        raise SubsampleError(f"beta must be in (0, 1], got {beta}")
    p = np.asarray(scores, dtype=np.float64)
    return beta * p / (beta * p - p + 1.0)


def draw_negatives(
    n_negatives: int,
    k: int,
    rng: np.random.Generator,
    strata: np.ndarray | None = None,
) -> np.ndarray:
    """Choose ``k`` of ``n_negatives`` uniformly, or proportionally within strata.

    Returns a bool mask of length ``n_negatives``. With ``strata`` (one value per
    negative), each stratum gets its proportional share of ``k`` (largest
    remainders round) and is sampled uniformly inside; a stratum column with more
    than ``MAX_CATEGORIES`` distinct values is cut into ``QUANTILE_BINS`` quantile bins.
    """
    _check_k(n_negatives, k)
    mask = np.zeros(n_negatives, dtype=bool)
    if strata is None:
        mask[rng.choice(n_negatives, size=k, replace=False)] = True
        return mask
    groups = _strata_groups(np.asarray(strata))
    if groups.shape != (n_negatives,):
        raise SubsampleError(
            f"stratification column has {groups.shape[0]} values for {n_negatives} negatives"
        )
    labels, counts = np.unique(groups, return_counts=True)
    exact = k * counts / n_negatives
    quota = np.floor(exact).astype(int)
    short = k - int(quota.sum())
    quota[np.argsort(-(exact - quota), kind="stable")[:short]] += 1
    for label, q in zip(labels, quota, strict=True):
        members = np.flatnonzero(groups == label)
        mask[rng.choice(members, size=int(q), replace=False)] = True
    return mask


def _strata_groups(values: np.ndarray) -> np.ndarray:
    if np.unique(values).size <= MAX_CATEGORIES:
        return values
    edges = np.quantile(values, np.linspace(0, 1, QUANTILE_BINS + 1)[1:-1])
    return np.searchsorted(edges, values, side="right")


def _check_k(n_negatives: int, k: int) -> None:
    if n_negatives < 4:
        raise SubsampleError(f"need at least 4 negatives to subsample, found {n_negatives}")
    if not 2 <= k <= n_negatives - 2:
        raise SubsampleError(
            f"number of negatives to keep must be between 2 and {n_negatives - 2} "
            f"(there are {n_negatives} negatives; at least 2 must be left out to audit), got {k}"
        )


def audit_subsample(
    negatives: np.ndarray,
    selected: np.ndarray,
    *,
    alpha: float = DEFAULT_ALPHA,
    feature_names: Sequence[str] | None = None,
    seed: int = 0,
    n_splits: int = DEFAULT_SPLITS,
) -> AuditResult:
    """Audit a subsample: can selected negatives be told from unselected ones?

    ``negatives`` is ``[n_negatives, n_features]``; ``selected`` a bool (or 0/1)
    mask of the same length. ``seed`` fixes the cross-validation shuffle and the
    classifiers, so the audit of a given subsample is reproducible.
    """
    x = np.asarray(negatives, dtype=np.float64)
    if x.ndim != 2:
        raise SubsampleError(f"negatives must be a 2-D array, got shape {x.shape}")
    s = np.asarray(selected)
    if s.shape != (x.shape[0],):
        raise SubsampleError(f"selection mask has shape {s.shape}, expected ({x.shape[0]},)")
    if s.dtype != bool:
        if not np.isin(s, (0, 1)).all():
            raise SubsampleError("selection mask must hold only 0 and 1")
        s = s.astype(bool)
    n, d = x.shape
    k = int(s.sum())
    _check_k(n, k)
    if not 0 < alpha < 1:
        raise SubsampleError(f"alpha must be between 0 and 1, got {alpha}")
    names = list(feature_names) if feature_names is not None else [f"x{j}" for j in range(d)]
    if len(names) != d:
        raise SubsampleError(f"{len(names)} feature names for {d} features")

    splits = max(2, min(n_splits, k, n - k))
    from threadpoolctl import threadpool_limits  # a dependency of scikit-learn

    # One thread: on a shared 2-core machine, OpenMP/BLAS threads waiting on each
    # other at every boosting step cost far more than they save (we measured a
    # 0.6 s fit take 16 s under load with two threads).
    with threadpool_limits(limits=1):
        tests = [_classifier_test(name, x, s, splits, seed) for name in _CLASSIFIERS]
    drift = _drift(x, s, names)

    # Weighted Bonferroni: a quarter of alpha to each classifier (they see all
    # features at once, and interactions), a quarter shared by the d KS tests and a
    # quarter by the d Mann-Whitney tests (most power against a bias in one feature,
    # and they say *where* the bias is).
    w_clf = 0.25
    w_feature = 0.25 / d
    adjusted = [t.p_value / w_clf for t in tests]
    adjusted += [f.p_value / w_feature for f in drift]
    adjusted += [f.auc_p_value / w_feature for f in drift]
    p_value = min(1.0, min(adjusted))
    strongest = min(tests, key=lambda t: (t.p_value, -t.auc))
    rate = k / n
    return AuditResult(
        biased=p_value <= alpha,
        p_value=p_value,
        alpha=alpha,
        auc=strongest.auc,
        accuracy=strongest.accuracy,
        chance_accuracy=max(rate, 1.0 - rate),
        n_negatives=n,
        k=k,
        drift=drift,
        classifiers=tests,
        n_splits=splits,
        seed=seed,
        weights={
            "per_classifier": w_clf,
            "per_feature_ks": w_feature,
            "per_feature_mann_whitney": w_feature,
        },
    )


def _make_classifier(name: str, seed: int) -> Any:
    # Imported here so that importing this module stays cheap.
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if name == "gradient_boosting":
        # Shallow trees and early stopping on a held-out tenth: with no signal the
        # fit stops after a few rounds, which keeps the uniform case fast.
        return HistGradientBoostingClassifier(
            max_iter=100,
            learning_rate=0.1,
            max_leaf_nodes=15,
            min_samples_leaf=40,
            early_stopping=True,
            validation_fraction=0.1,
            n_iter_no_change=5,
            random_state=seed,
        )
    return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))


def _classifier_test(
    name: str, x: np.ndarray, s: np.ndarray, n_splits: int, seed: int
) -> ClassifierTest:
    from sklearn.model_selection import StratifiedKFold

    scores = np.empty(x.shape[0])
    fold_p = []
    folds = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    for train, test in folds.split(x, s):
        model = _make_classifier(name, seed).fit(x[train], s[train])
        scores[test] = model.predict_proba(x[test])[:, 1]
        # Exact for this fold: the model never saw these rows.
        _, p = _mann_whitney(scores[test], s[test], "greater")
        fold_p.append(p)
    auc, _ = _mann_whitney(scores, s, "greater")
    return ClassifierTest(
        name=name,
        auc=auc,
        accuracy=float(np.mean((scores >= 0.5) == s)),
        p_value=min(1.0, n_splits * min(fold_p)),
    )


def _mann_whitney(scores: np.ndarray, s: np.ndarray, alternative: str) -> tuple[float, float]:
    """(AUC of ``scores`` for ``s``, Mann–Whitney p-value); p = 1 when every score ties."""
    from scipy.stats import mannwhitneyu

    sel, rest = scores[s], scores[~s]
    result = mannwhitneyu(sel, rest, alternative=alternative, method="asymptotic", axis=0)
    auc = np.asarray(result.statistic, dtype=np.float64) / (sel.shape[0] * rest.shape[0])
    p = np.nan_to_num(np.asarray(result.pvalue, dtype=np.float64), nan=1.0)
    if auc.ndim == 0:
        return float(auc), float(p)
    return auc, p


def _drift(x: np.ndarray, s: np.ndarray, names: list[str]) -> list[FeatureDrift]:
    from scipy.stats import ks_2samp

    ks = ks_2samp(x[s], x[~s], axis=0)
    ks_stat = np.atleast_1d(ks.statistic)
    ks_p = np.nan_to_num(np.atleast_1d(ks.pvalue), nan=1.0)
    auc, auc_p = _mann_whitney(x, s, "two-sided")
    rows = [
        FeatureDrift(
            feature=names[j],
            statistic=float(ks_stat[j]),
            p_value=float(ks_p[j]),
            auc=float(np.atleast_1d(auc)[j]),
            auc_p_value=float(np.atleast_1d(auc_p)[j]),
        )
        for j in range(x.shape[1])
    ]
    rows.sort(key=lambda r: (-r.statistic, r.p_value))
    return rows


def subsample_negatives(
    x: np.ndarray,
    y: np.ndarray,
    k: int,
    *,
    seed: int = 0,
    strata: np.ndarray | None = None,
    stratify_by: str | None = None,
    max_draws: int = 1,
    alpha: float = DEFAULT_ALPHA,
    feature_names: Sequence[str] | None = None,
) -> Subsample:
    """Keep every positive and ``k`` negatives, audited; re-draw up to ``max_draws`` times.

    ``strata`` (one value per row of ``x``) switches to a stratified draw. Draws
    come one after another from ``numpy.random.default_rng(seed)``, so ``seed`` and
    the recorded number of draws reproduce the kept subsample. If no draw passes,
    the last draw is returned with its (biased) audit; the caller decides.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise SubsampleError(f"features {x.shape} and labels {y.shape} do not match")
    if not np.isin(y, (0, 1)).all():
        raise SubsampleError("labels must be 0 or 1")
    if max_draws < 1:
        raise SubsampleError(f"max draws must be at least 1, got {max_draws}")
    negatives = np.flatnonzero(y == 0)
    positives = np.flatnonzero(y == 1)
    _check_k(negatives.size, k)
    neg_strata = None if strata is None else np.asarray(strata)[negatives]
    rng = np.random.default_rng(seed)
    draws = 0
    while True:
        draws += 1
        selected = draw_negatives(negatives.size, k, rng, neg_strata)
        audit = audit_subsample(
            x[negatives], selected, alpha=alpha, feature_names=feature_names, seed=seed
        )
        if not audit.biased or draws == max_draws:
            break
    audit = _with_provenance(audit, draws, strata is not None, stratify_by)
    keep = np.sort(np.concatenate([positives, negatives[selected]]))
    return Subsample(
        keep=keep,
        selected=selected,
        n_positives=int(positives.size),
        beta=k / negatives.size,
        audit=audit,
    )


def _with_provenance(
    audit: AuditResult, draws: int, stratified: bool, stratify_by: str | None
) -> AuditResult:
    return replace(
        audit,
        draws=draws,
        sampler="stratified" if stratified else "uniform",
        stratify_by=stratify_by,
    )
