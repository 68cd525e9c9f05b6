"""Cost tuning: choose the loss weights and the threshold for a cost matrix by cross-validation.

Two levers move a model's decisions: the loss weights it is trained with and the
threshold it is used at. For each loss setting of a grid, stratified K-fold
cross-validation on the *training split only* fits the setting on each fold's
training part and applies each candidate threshold rule to its validation part:
the in-sample best threshold of the fold's training part (the rule the issue
names), and fixed thresholds (0 = treat everyone, a log-spaced range, Elkan's t*
of the matrix, 0.5). A (setting, rule) pair is scored by the mean expected value
over the validation parts, so the threshold is a hyperparameter chosen on data
the choice never saw, like the loss weights.

The winner (``selection``): by default the threshold is Elkan's t* of the matrix and
the loss setting with the best CV value at t* wins; the other rules are scored for
comparison. Picking the best of all (setting, rule) pairs (``best``) favoured
thresholds that the folds happened to reward and lost on new data (docs/TUNING.md).
The winner is refitted on the whole training split, its rule applied there, and
exported like any other model with the search in the card's ``tuning`` section.

The held-out split cannot influence the choice: :func:`tune` seals it in a
:class:`SealedSplit`, which raises on any read until the search is over.

``python -m training tune`` is :mod:`training.tuning_cli`, which imports this module;
this module imports no command-line code.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from costaware.decision import DEFAULT_MARGIN
from costaware.economics import CostMatrix, best_threshold, elkan_threshold, expected_value
from training.calibrate import fit_binary, make_plan
from training.data import Dataset, Split
from training.fit import FittedModel, Progress, fit_variant
from training.variants import (
    DEFAULT_EPOCHS,
    DEFAULT_SEED,
    VariantError,
    VariantSpec,
    weights_from_cost_matrix,
)

DEFAULT_K = 5
DEFAULT_NAME = "tuned"
# fn_cost/fp_cost with fp_cost = 1: seven points log-spaced over 1..1000 (half-decades).
DEFAULT_RATIOS: tuple[float, ...] = tuple(float(r) for r in np.geomspace(1.0, 1000.0, 7))
IN_SAMPLE = "in-sample"
ELKAN = "elkan"
IN_SAMPLE_RULE = (
    "in-sample best threshold (costaware.economics.best_threshold) of the model's scores "
    "on the rows it was fitted on, placed midway into the gap below it"
)
# The rules searched by default: the in-sample rule, then fixed thresholds from
# "treat everyone" (0) up to the models' default 0.5, with Elkan's t* among them.
DEFAULT_RULES_TEXT = "in-sample,0,1e-5,1e-4,1e-3,elkan,0.01,0.1,0.5"

# How the winner is picked from the cross-validated (setting, rule) pairs.
SELECT_BEST = "best"
SELECT_ELKAN = "elkan"
SELECTIONS = {
    SELECT_ELKAN: (
        "the threshold is Elkan's t* of the cost matrix; the loss setting with the highest "
        "mean validation expected value at t* wins (the other rules are cross-validated and "
        "reported for comparison only)"
    ),
    SELECT_BEST: "the (loss setting, threshold rule) pair with the highest mean validation "
    "expected value wins",
}

SettingSource = Literal["builtin", "ratio", "matrix"]
# Called after every fit of the search: (fits done, fits in all, setting, fold number).
FitCallback = Callable[[int, int, "LossSetting", int], None]
# Runs the fold fits: called like the builtin ``map(function, *iterables)``, it must give
# the results in order (lazily or not).
MapFunction = Callable[..., Iterable[Any]]


class TuningError(ValueError):
    """Bad tuning options (grid, K, cost matrix); the message names the option."""


class HeldOutAccessError(RuntimeError):
    """Something read the held-out split while the search was running."""


# ---------------------------------------------------------------------------
# The guard


class SealedSplit:
    """A train/test split whose held-out part cannot be read until :meth:`unseal`.

    The search gets this object, never the :class:`Split` itself, so reading
    ``x_test``/``y_test`` during the search raises :class:`HeldOutAccessError`.
    ``attempts`` counts those reads even when a caller swallows the exception.
    """

    def __init__(self, data: Split) -> None:
        self._data = data
        self._sealed = True
        self.attempts = 0

    @property
    def sealed(self) -> bool:
        return self._sealed

    @property
    def x_train(self) -> np.ndarray:
        return self._data.x_train

    @property
    def y_train(self) -> np.ndarray:
        return self._data.y_train

    @property
    def test_size(self) -> float:
        return self._data.test_size

    @property
    def seed(self) -> int:
        return self._data.seed

    def _refuse(self, what: str) -> None:
        if self._sealed:
            self.attempts += 1
            raise HeldOutAccessError(
                f"{what} read while the held-out split is sealed: the search must use the "
                "training split only"
            )

    @property
    def x_test(self) -> np.ndarray:
        self._refuse("x_test")
        return self._data.x_test

    @property
    def y_test(self) -> np.ndarray:
        self._refuse("y_test")
        return self._data.y_test

    def unseal(self) -> Split:
        """The whole split, for the export and the report once the choice is made."""
        self._sealed = False
        return self._data


# ---------------------------------------------------------------------------
# The grid


@dataclass(frozen=True)
class LossSetting:
    """One point of the grid: a loss and its weights."""

    label: str
    loss: Literal["builtin", "custom"]
    fn_cost: float = 1.0
    fp_cost: float = 1.0
    source: SettingSource = "ratio"

    @property
    def ratio(self) -> float | None:
        """fn_cost/fp_cost, or None for cross-entropy (which has no weights)."""
        if self.loss == "builtin":
            return None
        return math.inf if self.fp_cost == 0 else self.fn_cost / self.fp_cost

    def spec(self, name: str, *, epochs: int, seed: int, **options: Any) -> VariantSpec:
        return VariantSpec(
            name=name,
            loss=self.loss,
            fn_cost=self.fn_cost,
            fp_cost=self.fp_cost,
            epochs=epochs,
            seed=seed,
            **options,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "loss": self.loss,
            "fn_cost": self.fn_cost,
            "fp_cost": self.fp_cost,
            "ratio": self.ratio,
            "source": self.source,
        }


BUILTIN = LossSetting("builtin", "builtin", source="builtin")


def ratio_setting(fn_cost: float, fp_cost: float = 1.0) -> LossSetting:
    try:
        VariantSpec("check", loss="custom", fn_cost=fn_cost, fp_cost=fp_cost)
    except VariantError as exc:
        detail = str(exc).replace("variant check: ", "")
        raise TuningError(f"--grid: {fn_cost:g}:{fp_cost:g}: {detail}") from None
    label = f"{fn_cost:.4g}:1" if fp_cost == 1 else f"{fn_cost:.6g}:{fp_cost:.6g}"
    return LossSetting(label, "custom", float(fn_cost), float(fp_cost), "ratio")


def matrix_setting(costs: CostMatrix) -> LossSetting:
    """The weights the cost matrix itself implies, at their own scale.

    Unnormalised on purpose: this is exactly what ``--variant name=..,tp=..,fp=..``
    trains, and the scale multiplies SGD's step, so it is a different model from
    the same ratio at ``fp_cost = 1``.
    """
    try:
        fn_cost, fp_cost = weights_from_cost_matrix(costs)
    except VariantError as exc:
        raise TuningError(f"--cost-matrix: {exc}") from None
    return LossSetting(f"matrix {fn_cost:.6g}:{fp_cost:.6g}", "custom", fn_cost, fp_cost, "matrix")


def default_grid(costs: CostMatrix, ratios: Sequence[float] = DEFAULT_RATIOS) -> list[LossSetting]:
    """Cross-entropy, ``fn_cost:1`` for each ratio, and the matrix's own weights."""
    return [BUILTIN, *(ratio_setting(r) for r in ratios), matrix_setting(costs)]


def parse_grid(text: str, costs: CostMatrix) -> list[LossSetting]:
    """``builtin,1,10,100,matrix,5:2``: entries are ``builtin``, ``matrix``, a ratio
    ``R`` (fn_cost R, fp_cost 1) or ``F:P``."""
    grid: list[LossSetting] = []
    for raw in text.split(","):
        item = raw.strip()
        if item == "builtin":
            setting = BUILTIN
        elif item == "matrix":
            setting = matrix_setting(costs)
        else:
            fn_text, sep, fp_text = item.partition(":")
            try:
                fn_cost = float(fn_text)
                fp_cost = float(fp_text) if sep else 1.0
            except ValueError:
                raise TuningError(
                    f"--grid: {item!r} is not 'builtin', 'matrix', a ratio R or F:P"
                ) from None
            setting = ratio_setting(fn_cost, fp_cost)
        if any(s.label == setting.label for s in grid):
            raise TuningError(f"--grid: {item!r} given twice")
        grid.append(setting)
    return grid


# ---------------------------------------------------------------------------
# Threshold rules


@dataclass(frozen=True)
class ThresholdRule:
    """How a fitted model's threshold is set: the in-sample rule, or a fixed value."""

    name: str
    fixed: float | None = None  # None for the in-sample rule

    @property
    def description(self) -> str:
        if self.fixed is None:
            return IN_SAMPLE_RULE
        if self.fixed == 0.0:
            return "threshold 0: treat everyone (the score does not change the decision)"
        return f"fixed threshold {self.fixed:.6g}"

    def threshold(self, labels: np.ndarray, scores: np.ndarray, costs: CostMatrix) -> float:
        if self.fixed is None:
            return choose_threshold(labels, scores, costs)
        return self.fixed


IN_SAMPLE_BEST = ThresholdRule(IN_SAMPLE)


def fixed_rule(value: float, name: str | None = None) -> ThresholdRule:
    if not 0.0 <= value <= 1.0:  # also refuses NaN
        raise TuningError(f"--thresholds: {value!r} is not a threshold in [0, 1]")
    return ThresholdRule(name or ("0 (treat all)" if value == 0 else f"{value:.4g}"), value)


def elkan_rule(costs: CostMatrix) -> ThresholdRule:
    """Elkan's t* of the matrix as a fixed threshold (optimal for calibrated scores)."""
    elkan = elkan_threshold(costs)
    if elkan.kind == "threshold":
        return fixed_rule(float(elkan.value), f"t* {elkan.value:.4g}")
    if elkan.kind == "always_positive":
        return fixed_rule(0.0, "t* (treat all)")
    if elkan.kind == "always_negative":
        return fixed_rule(1.0, "t* (treat none)")
    raise TuningError(f"--thresholds: elkan: the cost matrix has no Elkan threshold ({elkan.note})")


def parse_rules(text: str, costs: CostMatrix) -> list[ThresholdRule]:
    """``in-sample,0,1e-4,elkan,0.5``: the in-sample rule, Elkan's t*, or fixed values."""
    rules: list[ThresholdRule] = []
    for raw in text.split(","):
        item = raw.strip()
        if item == IN_SAMPLE:
            rule = IN_SAMPLE_BEST
        elif item == ELKAN:
            rule = elkan_rule(costs)
        else:
            try:
                value = float(item)
            except ValueError:
                raise TuningError(
                    f"--thresholds: {item!r} is not 'in-sample', 'elkan' or a number in [0, 1]"
                ) from None
            rule = fixed_rule(value)
        if any(r.fixed == rule.fixed for r in rules):
            raise TuningError(f"--thresholds: {item!r} given twice (or equal to another entry)")
        rules.append(rule)
    return rules


def find_elkan_rule(rules: Sequence[ThresholdRule], costs: CostMatrix) -> ThresholdRule | None:
    """The rule among ``rules`` whose fixed threshold is Elkan's t* of ``costs`` (whatever
    its name: a t* of 0 may have come in as ``0``), or None."""
    try:
        elkan = elkan_rule(costs)
    except TuningError:
        return None  # the matrix has no t*
    return next((r for r in rules if r.fixed is not None and r.fixed == elkan.fixed), None)


def resolve_selection(
    selection: str | None, rules: Sequence[ThresholdRule], costs: CostMatrix
) -> str:
    """``selection`` checked against the rules; None means ``elkan`` when the rules hold
    Elkan's t* and ``best`` otherwise (a matrix without a t*, or ``--thresholds`` without it)."""
    if selection is None:
        return SELECT_ELKAN if find_elkan_rule(rules, costs) else SELECT_BEST
    if selection not in SELECTIONS:
        raise TuningError(f"--select {selection!r}: choose one of {', '.join(SELECTIONS)}")
    if selection == SELECT_ELKAN and find_elkan_rule(rules, costs) is None:
        raise TuningError(
            "--select elkan: the threshold rules do not include Elkan's t* of the cost matrix "
            "(add 'elkan' to --thresholds, or use --select best)"
        )
    return selection


def default_rules(costs: CostMatrix) -> list[ThresholdRule]:
    """The in-sample rule and the fixed thresholds of :data:`DEFAULT_RULES_TEXT`; without
    Elkan's t* when the matrix has none (or when it equals another entry)."""
    rules: list[ThresholdRule] = []
    for item in DEFAULT_RULES_TEXT.split(","):
        try:
            (rule,) = parse_rules(item, costs)
        except TuningError:
            continue  # elkan on a matrix without a threshold
        if all(r.fixed != rule.fixed for r in rules):
            rules.append(rule)
    return rules


# ---------------------------------------------------------------------------
# Thresholds


def choose_threshold(labels: np.ndarray, scores: np.ndarray, costs: CostMatrix) -> float:
    """The in-sample best threshold, placed midway into the gap below it.

    Every cut in that gap has the same in-sample value; the middle keeps the
    decision of the row at the best threshold from flipping when onnxruntime's
    score differs from Keras's in the last float32 digits, and is the widest
    margin either side. Treating no one becomes a cut above the highest score.
    """
    scores = np.asarray(scores, dtype=np.float64)
    best = best_threshold(labels, scores, costs)
    if best.threshold is None:
        top = float(scores.max())
        return (top + 1.0) / 2.0 if top < 1.0 else 1.0
    below = scores[scores < best.threshold]
    lower = float(below.max()) if below.size else 0.0
    return (best.threshold + lower) / 2.0


# ---------------------------------------------------------------------------
# The search


@dataclass(frozen=True)
class FoldResult:
    """One fold of one setting: each rule's threshold and what it was worth.

    Every threshold is set from the fold's training part only (the in-sample rule
    reads its labels and scores; fixed rules read nothing) and applied to its
    validation part.
    """

    fold: int
    train_index: np.ndarray  # positions in the training split
    val_index: np.ndarray
    thresholds: dict[str, float]  # by rule name: chosen on the fold's training part ...
    train_values: dict[str, float]  # ... where it is worth this (in sample)
    val_values: dict[str, float]  # ... and applied to the validation part
    train_scores: np.ndarray = field(repr=False)
    val_scores: np.ndarray = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "fold": self.fold,
            "n_train": len(self.train_index),
            "n_validation": len(self.val_index),
            "thresholds": self.thresholds,
            "train_expected_values": self.train_values,
            "validation_expected_values": self.val_values,
        }


@dataclass(frozen=True, eq=False)
class Candidate:
    """A (loss setting, threshold rule) pair and its validation values over the folds."""

    setting: LossSetting
    rule: ThresholdRule
    folds: tuple[FoldResult, ...]

    @property
    def label(self) -> str:
        return f"{self.setting.label} @ {self.rule.name}"

    @property
    def values(self) -> np.ndarray:
        return np.array([f.val_values[self.rule.name] for f in self.folds])

    @property
    def mean(self) -> float:
        return float(self.values.mean())

    @property
    def std(self) -> float:
        """Sample standard deviation of the fold values (the spread over folds)."""
        return float(self.values.std(ddof=1)) if len(self.folds) > 1 else 0.0

    @property
    def mean_threshold(self) -> float:
        return float(np.mean([f.thresholds[self.rule.name] for f in self.folds]))

    def same_as(self, other: Candidate) -> bool:
        return self.setting == other.setting and self.rule == other.rule

    def stats(self) -> dict[str, float]:
        return {
            "cv_mean": self.mean,
            "cv_std": self.std,
            "cv_min": float(self.values.min()),
            "cv_max": float(self.values.max()),
            "mean_fold_threshold": self.mean_threshold,
        }


@dataclass(frozen=True)
class SettingResult:
    setting: LossSetting
    rules: tuple[ThresholdRule, ...]
    folds: tuple[FoldResult, ...]

    @property
    def candidates(self) -> tuple[Candidate, ...]:
        return tuple(Candidate(self.setting, rule, self.folds) for rule in self.rules)

    def candidate(self, rule: ThresholdRule | str) -> Candidate:
        name = rule if isinstance(rule, str) else rule.name
        (found,) = (c for c in self.candidates if c.rule.name == name)
        return found

    @property
    def in_sample(self) -> Candidate | None:
        """The in-sample rule's candidate, when the search has that rule."""
        return next((c for c in self.candidates if c.rule.fixed is None), None)

    @property
    def best(self) -> Candidate:
        """This setting's best rule; ties go to the earlier rule."""
        return max(self.candidates, key=lambda c: c.mean)  # max keeps the first of equals

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.setting.to_dict(),
            "rules": {c.rule.name: c.stats() for c in self.candidates},
            "best_rule": self.best.rule.name,
            "folds": [f.to_dict() for f in self.folds],
        }


@dataclass(frozen=True)
class SearchResult:
    costs: CostMatrix
    k: int
    seed: int
    epochs: int
    rules: tuple[ThresholdRule, ...]
    settings: tuple[SettingResult, ...]
    selection: str = SELECT_BEST

    @property
    def candidates(self) -> tuple[Candidate, ...]:
        """Every (setting, rule) pair, settings in grid order, rules in their order."""
        return tuple(c for s in self.settings for c in s.candidates)

    @property
    def selected_rule(self) -> ThresholdRule | None:
        """The rule the selection fixes (Elkan's t* for ``elkan``), None for ``best``."""
        if self.selection == SELECT_ELKAN:
            return find_elkan_rule(self.rules, self.costs)
        return None

    @property
    def eligible(self) -> tuple[Candidate, ...]:
        """The pairs the selection chooses among."""
        rule = self.selected_rule
        if rule is None:
            return self.candidates
        return tuple(c for c in self.candidates if c.rule == rule)

    @property
    def winner(self) -> Candidate:
        """Highest mean validation value among the eligible pairs; ties go to the earlier
        setting, then rule."""
        return max(self.eligible, key=lambda c: c.mean)  # max keeps the first of equals

    def to_dict(self) -> dict[str, Any]:
        winner = self.winner
        return {
            "cost_matrix": {k: float(v) for k, v in self.costs.to_dict().items()},
            "k": self.k,
            "seed": self.seed,
            "epochs": self.epochs,
            "cv": (
                f"StratifiedKFold(n_splits={self.k}, shuffle=True, random_state={self.seed}) "
                "on the training split only; per fold, every threshold rule sets its threshold "
                "from the fold's training part and is applied to its validation part"
            ),
            "threshold_rules": {r.name: r.description for r in self.rules},
            "score": "mean validation expected value per instance over the folds",
            "selection": self.selection,
            "selection_rule": SELECTIONS[self.selection],
            "winner": winner.setting.label,
            "winner_rule": winner.rule.name,
            "winner_cv": winner.stats(),
            "grid": [r.to_dict() for r in self.settings],
        }


def check_k(labels: np.ndarray, k: int) -> None:
    """Every fold needs a row of each class in its validation part."""
    if k < 2:
        raise TuningError(f"--k {k}: cross-validation needs at least 2 folds")
    smallest = int(np.bincount(np.asarray(labels, dtype=np.int64), minlength=2).min())
    if k > smallest:
        raise TuningError(
            f"--k {k}: the training split has only {smallest} rows of its rarer class; "
            f"K must be at most {smallest}"
        )


def cv_folds(labels: np.ndarray, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified K-fold (shuffled with ``seed``) as (train positions, validation positions)."""
    from sklearn.model_selection import StratifiedKFold

    check_k(labels, k)
    folds = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return list(folds.split(np.zeros((len(labels), 1)), labels))


def evaluate_fold(
    spec: VariantSpec,
    x_train: np.ndarray,
    y_train: np.ndarray,
    fold: int,
    train_index: np.ndarray,
    val_index: np.ndarray,
    costs: CostMatrix,
    rules: Sequence[ThresholdRule],
) -> FoldResult:
    """Fit on the fold's training part, set each rule's threshold there, apply it to
    validation."""
    fitted = fit_variant(spec, x_train[train_index], y_train[train_index], progress=None)
    train_scores = fitted.predict(x_train[train_index])
    val_scores = fitted.predict(x_train[val_index])
    y_fit, y_val = y_train[train_index], y_train[val_index]
    thresholds = {r.name: r.threshold(y_fit, train_scores, costs) for r in rules}
    ts = thresholds.items()
    return FoldResult(
        fold=fold,
        train_index=train_index,
        val_index=val_index,
        thresholds=thresholds,
        train_values={n: expected_value(y_fit, train_scores, t, costs) for n, t in ts},
        val_values={n: expected_value(y_val, val_scores, t, costs) for n, t in ts},
        train_scores=train_scores,
        val_scores=val_scores,
    )


@dataclass(frozen=True)
class CostSearch:
    """The search's parameters, given once (like a scikit-learn estimator's): the cost
    matrix, the loss settings (``grid``, default :func:`default_grid`), the threshold rules
    (``rules``, default :func:`default_rules`), the ``selection`` (default: see
    :func:`resolve_selection`), K folds, the seed of the folds and of every fit, the epochs
    per fit; ``on_fit`` is called after every fit and ``map_fn`` runs the fold fits.

    :meth:`run` searches, :func:`choose` also refits the winner, :func:`tune` also exports.
    """

    costs: CostMatrix
    grid: Sequence[LossSetting] | None = None
    rules: Sequence[ThresholdRule] | None = None
    selection: str | None = None
    k: int = DEFAULT_K
    seed: int = DEFAULT_SEED
    epochs: int = DEFAULT_EPOCHS
    on_fit: FitCallback | None = None
    map_fn: MapFunction = map

    def run(self, x_train: np.ndarray, y_train: np.ndarray) -> SearchResult:
        """Cross-validate every (setting, rule) pair of the grid x the rules on the training
        rows it is given.

        All settings share the folds and the fit seed, so they differ only in the loss;
        all rules of a setting share its fits, so they differ only in the threshold.
        ``map_fn`` runs the fold fits (``map`` here; ``client.map`` on a Dask cluster, see
        :func:`training.tuning_cli.dask_map`): every fit seeds itself, so where it runs does
        not change its result.
        """
        costs = self.costs
        grid = tuple(self.grid if self.grid is not None else default_grid(costs))
        if not grid:
            raise TuningError("--grid: no loss settings to search")
        rules = tuple(self.rules if self.rules is not None else default_rules(costs))
        if not rules:
            raise TuningError("--thresholds: no threshold rules to search")
        selection = resolve_selection(self.selection, rules, costs)
        y_train = np.asarray(y_train)
        folds = cv_folds(y_train, self.k, self.seed)
        total = len(grid) * len(folds)
        specs = [
            setting.spec(f"cv-{s}", epochs=self.epochs, seed=self.seed)
            for s, setting in enumerate(grid)
        ]
        jobs = [(s, f) for s in range(len(grid)) for f in range(len(folds))]
        fits = self.map_fn(
            evaluate_fold,
            [specs[s] for s, _ in jobs],
            [x_train] * total,
            [y_train] * total,
            [f + 1 for _, f in jobs],
            [folds[f][0] for _, f in jobs],
            [folds[f][1] for _, f in jobs],
            [costs] * total,
            [rules] * total,
        )
        by_setting: list[list[FoldResult]] = [[] for _ in grid]
        for done, ((s, f), fold_result) in enumerate(zip(jobs, fits, strict=True), start=1):
            by_setting[s].append(fold_result)
            if self.on_fit:
                self.on_fit(done, total, grid[s], f + 1)
        results = [
            SettingResult(setting, rules, tuple(found))
            for setting, found in zip(grid, by_setting, strict=True)
        ]
        return SearchResult(
            costs=costs,
            k=self.k,
            seed=self.seed,
            epochs=self.epochs,
            rules=rules,
            settings=tuple(results),
            selection=selection,
        )


# ---------------------------------------------------------------------------
# The winner


@dataclass(frozen=True)
class TunedFit:
    """The winning setting refitted on the whole training split, with its rule's threshold."""

    search: SearchResult
    fitted: FittedModel
    threshold: float
    train_value: float
    train_scores: np.ndarray = field(repr=False)

    def card_section(self) -> dict[str, Any]:
        return {
            **self.search.to_dict(),
            "chosen_threshold": self.threshold,
            "chosen_threshold_train_expected_value": self.train_value,
            "winner_mean_fold_threshold": self.search.winner.mean_threshold,
        }


def fit_winner(
    result: SearchResult,
    x_train: np.ndarray,
    y_train: np.ndarray,
    *,
    name: str = DEFAULT_NAME,
    progress: Progress | None = None,
) -> TunedFit:
    """Refit the winning setting on all training rows; set its threshold by the winning
    rule, as each fold did, so the CV value estimates exactly this choice."""
    winner = result.winner
    mean, std = winner.mean, winner.std
    spec = winner.setting.spec(
        name,
        epochs=result.epochs,
        seed=result.seed,
        cost_matrix=result.costs,
        description=(
            f"cost-tuned: loss {winner.setting.label} and threshold rule {winner.rule.name} "
            f"chosen by {result.k}-fold CV (mean validation EV {mean:,.2f} ± {std:,.2f})"
        ),
    )
    fitted = fit_variant(spec, x_train, y_train, progress=progress)
    scores = fitted.predict(x_train)
    threshold = winner.rule.threshold(y_train, scores, result.costs)
    return TunedFit(
        search=result,
        fitted=fitted,
        threshold=threshold,
        train_value=expected_value(y_train, scores, threshold, result.costs),
        train_scores=scores,
    )


def winner_out_of_fold(result: SearchResult) -> np.ndarray:
    """The winning setting's validation scores, each training row scored by the fold fit
    that did not see it."""
    folds = result.winner.folds
    scores = np.zeros(sum(len(f.val_index) for f in folds))
    for fold in folds:
        scores[fold.val_index] = fold.val_scores
    return scores


@dataclass(frozen=True)
class TuneOutcome:
    tuned: TunedFit
    split: Split
    export: Any  # training.export.ExportResult


def choose(
    search: CostSearch,
    x_train: np.ndarray,
    y_train: np.ndarray,
    *,
    name: str = DEFAULT_NAME,
    progress: Progress | None = None,
) -> TunedFit:
    """The whole choice on the training rows: the search, then the winner refitted with its
    threshold. :func:`tune` exports it; bench/tuning.py scores it on random splits."""
    result = search.run(x_train, y_train)
    return fit_winner(result, x_train, y_train, name=name, progress=progress)


def tune(
    dataset: Dataset,
    data: Split | SealedSplit,
    search: CostSearch,
    models_dir: Path,
    *,
    name: str = DEFAULT_NAME,
    margin: float = DEFAULT_MARGIN,
    progress: Progress | None = None,
    calibration: str = "sigmoid",
) -> TuneOutcome:
    """Search, refit the winner, then (and only then) unseal the held-out split to export.

    The calibration map (``calibration``: sigmoid, isotonic or none) is fitted on the
    winner's out-of-fold scores from the search itself: its K fold fits are the same recipe
    as the refit (same loss, seed and epochs), so no extra fit is needed."""
    from training.export import export_model

    sealed = data if isinstance(data, SealedSplit) else SealedSplit(data)
    tuned = choose(search, sealed.x_train, sealed.y_train, name=name, progress=progress)
    plan = make_plan(calibration, "binary", folds=search.k)
    calibrator = None
    if plan.enabled:
        calibrator = fit_binary(plan, winner_out_of_fold(tuned.search), sealed.y_train)
    split = sealed.unseal()
    exported = export_model(
        tuned.fitted,
        dataset,
        split,
        models_dir,
        threshold=tuned.threshold,
        margin=margin,
        cost_matrix=search.costs,
        extra_sections={"tuning": tuned.card_section()},
        calibration=calibrator,
    )
    return TuneOutcome(tuned=tuned, split=split, export=exported)
