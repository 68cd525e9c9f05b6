"""Evaluation: each chosen model's decisions valued under a cost matrix (binary) or a
value matrix (multiclass), on posted scores, posted instances or each card's held-out
split; the answer's summary and its figures (no HTTP). The numbers are the core's
(:mod:`costaware.economics`, :mod:`costaware.core`); instances are scored by the rule of a
prediction (:func:`service.prediction.checked_outputs`).
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from costaware import economics, figures
from costaware.card import HeldOut, MulticlassCard
from costaware.core import ORIENTATION, ValueMatrix, default_margin
from costaware.core import evaluate as evaluate_k_class
from costaware.decision import DEFAULT_MARGIN, DEFAULT_THRESHOLD
from costaware.economics import CostMatrix, EconomicsError
from costaware.multiclass import as_class_labels, as_probabilities
from service.codecs import instances_to_matrix
from service.errors import InvalidInputError, NotFoundError, NotReadyError
from service.registry import LoadedModel, ModelRegistry

# ---------------------------------------------------------------------------------------
# Evaluation inputs and results

EvaluationSource = Literal["held_out", "instances", "scores", "csv"]
Plot = Literal["distribution", "value"]

NOTES = {
    "held_out": "no data posted: each model is evaluated on the held-out split stored in "
    "its card (data it was not trained on)",
    "instances": "posted instances, scored here by each model",
    "scores": "posted scores produced elsewhere; no model is involved",
    "csv": "posted text/csv instances (label in the first column), scored here by each model",
}
TITLES = {
    "held_out": "held-out split",
    "instances": "posted instances",
    "scores": "posted scores",
    "csv": "posted CSV",
}


@dataclass(frozen=True)
class _EvaluationData:
    """What an evaluation request says of its data, binary or multiclass alike: posted
    ``scores`` with ``labels``, posted ``instances`` with ``labels``, or neither (each
    card's held-out split); ``models`` None means every loaded model of the kind."""

    models: list[str] | None = None
    instances: np.ndarray | list[Any] | None = None
    scores: list[Any] | None = None
    labels: list[Any] | np.ndarray | None = None
    threshold: float | None = None
    margin: float | None = None
    # How errors name the list of models (``models``, ``query.models``) and the rows, and
    # what the posted instances were (``instances``, ``csv``).
    models_field: str = "models"
    instances_source: EvaluationSource = "instances"
    row_name: Callable[[int], str] | None = None

    def name_row(self, index: int) -> str:
        return f"instances[{index}]" if self.row_name is None else self.row_name(index)


@dataclass(frozen=True)
class EvaluateInputs(_EvaluationData):
    """An evaluation request.

    The data is, in order: ``scores`` produced elsewhere (with ``labels``, no model);
    ``instances`` scored here by each model (a list of rows as for a prediction, or a
    float matrix, with ``labels``); or neither, for each model's held-out split from its
    card. ``models`` None means every loaded model. ``threshold`` and ``margin`` None mean
    each card's (the defaults for posted scores). ``prevalence`` values the decisions at
    that share of positives (None: the data's); ``curve`` adds the value by threshold.
    """

    cost_matrix: CostMatrix = dataclasses.field(kw_only=True)
    prevalence: float | None = None
    curve: bool = False


@dataclass(frozen=True)
class MulticlassEvaluateInputs(_EvaluationData):
    """A multiclass evaluation request: ``matrix`` (K x K, row = truth, column = decision)
    and the data as for :class:`EvaluateInputs`; ``scores`` are N x K probabilities and
    ``labels`` class names or indices. ``matrix_field``: how errors name the matrix."""

    matrix: ValueMatrix = dataclasses.field(kw_only=True)
    matrix_field: str = "cost_matrix"


@dataclass(frozen=True)
class Target:
    """One thing to evaluate: a model's (or nobody's) scores against labels."""

    model: LoadedModel | None
    labels: np.ndarray
    scores: np.ndarray
    threshold: float
    margin: float
    # The calibrated P(positive) of each instance (a calibrated model's ``probability``:
    # its card's held-out probabilities, or its graph's output for posted instances); None
    # for posted scores (the user's own numbers, taken as probabilities as given) and for
    # a model without a map (its scores taken as probabilities, and the entry says so).
    probabilities: np.ndarray | None = None

    @property
    def name(self) -> str | None:
        return None if self.model is None else self.model.name


# Rendered held-out figures, least recently used first (shared by every app in the
# process; keyed by model name and version, so a reloaded model never hits a stale one).
_FIGURES: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()
_FIGURE_CACHE_SIZE = 64
_FIGURES_LOCK = threading.Lock()


@dataclass(frozen=True)
class Evaluation:
    """The targets of one evaluation and the cost matrix they are valued under."""

    source: EvaluationSource
    targets: list[Target]
    costs: CostMatrix
    prevalence: float | None = None
    curve: bool = False

    def summary(self) -> dict[str, Any]:
        """The JSON-ready answer: each target's economics, the ranking, the best model and
        the best decision."""
        entries = [
            _entry(target, self.costs, self.prevalence, self.curve) for target in self.targets
        ]
        return summarize(entries, self.costs, self.source, NOTES[self.source])

    def figure(self, plot: Plot) -> bytes:
        """A PNG of the one target: the close-confusion histogram or the value curve."""
        if len(self.targets) != 1:
            raise InvalidInputError(
                f"models: a figure shows one model, this request has {len(self.targets)} "
                f"({', '.join(str(t.name) for t in self.targets)}); name one"
            )
        target = self.targets[0]
        costs = self.costs
        # A held-out figure is fixed by the model, the plot, the threshold and margin, the
        # prevalence and (for the value curve) the costs; drawing one takes 0.2-0.5 s, so
        # repeats are served from a small cache.
        key = None
        if self.source == "held_out" and target.model is not None and not costs.per_instance:
            outcome_values = tuple(costs.to_dict().values()) if plot == "value" else None
            card = target.model.card
            key = (
                card.name,
                card.version,
                plot,
                target.threshold,
                target.margin,
                self.prevalence,
                outcome_values,
            )
            with _FIGURES_LOCK:  # figures are drawn in the thread pool
                cached = _FIGURES.get(key)
                if cached is not None:
                    _FIGURES.move_to_end(key)
                    return cached
        image = self._draw(target, plot)
        if key is not None:
            with _FIGURES_LOCK:
                _FIGURES[key] = image
                while len(_FIGURES) > _FIGURE_CACHE_SIZE:
                    _FIGURES.popitem(last=False)
        return image

    def _draw(self, target: Target, plot: Plot) -> bytes:
        costs = self.costs
        title = f"{target.name or 'posted scores'}: {TITLES[self.source]}"
        if plot == "distribution":
            return figures.distribution_png(
                target.labels, target.scores, target.threshold, target.margin, title=title
            )
        try:
            sweep = economics.threshold_sweep(
                target.labels, target.scores, costs, prevalence=self.prevalence
            )
            best = economics.best_threshold(target.labels, target.scores, costs, self.prevalence)
        except EconomicsError as exc:
            raise _invalid(exc) from None
        # Elkan's t* is a probability; the curve's axis is the score, so t* is marked on
        # it only when the scores are taken as probabilities (no calibration map).
        elkan = (
            None
            if costs.per_instance or target.probabilities is not None
            else economics.elkan_threshold(costs)
        )
        return figures.value_curve_png(
            sweep,
            None if elkan is None else elkan.value,
            best.threshold,
            title=f"Expected value by threshold: {title}",
            best_value=best.expected_value,
        )


def summarize(
    entries: list[dict[str, Any]], costs: CostMatrix, data: str, note: str
) -> dict[str, Any]:
    """``/evaluate``'s answer around ``entries`` (one per model, as
    ``costaware.economics.evaluate`` gives them, with the model's name and version in
    front): the ranking, the best model and the best decision. The batch engine builds its
    entries from merged partial results and wraps them here too."""
    ranking = sorted(entries, key=lambda entry: -entry["expected_value"])
    best = max(entries, key=lambda entry: entry["best_threshold"]["expected_value"])
    return {
        "data": data,
        "note": note,
        "cost_matrix": costs.to_dict() if not costs.per_instance else "per_instance",
        "warnings": costs.warnings(),
        "results": entries,
        "ranking": [
            {
                "rank": rank,
                "model": entry["model"],
                "threshold": entry["threshold"],
                "expected_value": entry["expected_value"],
                "total_value": entry["total_value"],
                "per_1000_decisions": entry["per_1000_decisions"],
            }
            for rank, entry in enumerate(ranking, start=1)
        ],
        "best_model": ranking[0]["model"],
        "best_decision": {"model": best["model"], **best["best_threshold"]},
    }


def held_out_targets(
    models: list[LoadedModel], threshold: float | None, margin: float | None
) -> list[Target]:
    """Each model's held-out split (labels and scores stored in its card)."""
    targets = []
    for model in models:
        held_out = model.card.held_out
        assert isinstance(held_out, HeldOut)
        probabilities = held_out.probabilities
        targets.append(
            _target(
                model,
                np.asarray(held_out.labels, dtype=np.int8),
                np.asarray(held_out.scores, dtype=np.float64),
                threshold,
                margin,
                None if probabilities is None else np.asarray(probabilities, dtype=np.float64),
            )
        )
    return targets


def _target(
    model: LoadedModel,
    labels: np.ndarray,
    scores: np.ndarray,
    threshold: float | None,
    margin: float | None,
    probabilities: np.ndarray | None = None,
) -> Target:
    return Target(
        model=model,
        labels=labels,
        scores=scores,
        threshold=model.card.threshold if threshold is None else threshold,
        margin=model.card.margin if margin is None else margin,
        probabilities=probabilities,
    )


def _posted_alone(instances: Any, models: Any, what: str) -> None:
    """Posted scores (or probabilities) come without instances and without models."""
    if instances is not None:
        raise InvalidInputError("scores: send either instances or scores, not both")
    if models is not None:
        raise InvalidInputError(
            f"models: posted {what} were produced elsewhere; leave models out "
            "or post instances instead"
        )


def _invalid(exc: EconomicsError) -> InvalidInputError:
    return InvalidInputError(str(exc))


def _check_cost_length(costs: CostMatrix, target: Target) -> None:
    if costs.n is not None and costs.n != len(target.labels):
        whose = f"the held-out split of model {target.name!r}" if target.model else "the data"
        field = next(k for k in economics.OUTCOMES if isinstance(getattr(costs, k), np.ndarray))
        raise InvalidInputError(
            f"cost_matrix.{field}: has {costs.n} per-instance values but {whose} "
            f"has {len(target.labels)} instances"
        )


def _checked_list(
    raw: Any, field: str, expected: str, convert: Callable[[Any], np.ndarray]
) -> np.ndarray:
    if isinstance(raw, np.ndarray):
        raw = raw.tolist()
    if not isinstance(raw, list):
        raise InvalidInputError(f"{field}: expected {expected}")
    try:
        return convert(raw)
    except EconomicsError as exc:
        raise _invalid(exc) from None


def _labels(raw: Any, n: int, what: str) -> np.ndarray:
    if raw is None:
        raise InvalidInputError(f"labels: required with {what}")
    labels = _checked_list(raw, "labels", "a list of 0/1", economics.as_labels)
    if len(labels) != n:
        raise InvalidInputError(f"labels: has {len(labels)} labels but there are {n} {what}")
    return labels


def _entry(
    target: Target, costs: CostMatrix, prevalence: float | None, curve: bool
) -> dict[str, Any]:
    # The card's threshold is marked on the curve even when the request chose another.
    marks = [] if target.model is None else [target.model.card.threshold]
    try:
        result = economics.evaluate(
            target.labels,
            target.scores,
            costs,
            target.threshold,
            target.margin,
            prevalence=prevalence,
            curve=curve,
            curve_marks=marks,
            probabilities=target.probabilities,
        )
    except EconomicsError as exc:
        raise _invalid(exc) from None
    result.pop("warnings")
    head: dict[str, Any] = {"model": target.name}
    if target.model is not None:
        head["version"] = target.model.card.version
    return head | calibration_head(target.model) | result


def calibration_head(model: LoadedModel | None) -> dict[str, bool | None]:
    """What an evaluation entry says of its probabilities: ``calibrated`` true (Elkan's
    threshold and the per-instance decisions on the model's calibrated probability), false
    (a model without a map: on its raw score), or null (posted numbers, taken as given)."""
    return {"calibrated": None if model is None else model.calibrated}


def _rows_for(model: LoadedModel, instances: np.ndarray | list[Any]) -> np.ndarray:
    """Posted instances as ``model``'s float matrix: decoded CSV rows (already a matrix)
    must have its width; a JSON list is checked and ordered by its features."""
    features = model.card.features
    if isinstance(instances, np.ndarray):
        if instances.shape[1] != len(features):
            raise InvalidInputError(
                f"body: model {model.name!r} takes {len(features)} features, "
                f"the rows have {instances.shape[1]}"
            )
        return instances
    return instances_to_matrix(instances, features, "instances")


# ---------------------------------------------------------------------------------------
# Multiclass evaluation

MULTICLASS_NOTES = {
    "held_out": "no data posted: each model is evaluated on the held-out split stored in "
    "its card (data it was not trained on)",
    "instances": "posted instances, scored here by each model",
    "scores": "posted class probabilities produced elsewhere; no model is involved",
    "csv": "posted text/csv instances (label in the first column), scored here by each model",
}


@dataclass(frozen=True)
class MulticlassTarget:
    model: LoadedModel | None
    labels: np.ndarray  # class indices
    probabilities: np.ndarray  # [N, K] float64

    @property
    def name(self) -> str | None:
        return None if self.model is None else self.model.name


@dataclass(frozen=True)
class MulticlassEvaluation:
    source: str
    targets: list[MulticlassTarget]
    matrix: ValueMatrix
    margin: float

    def summary(self) -> dict[str, Any]:
        entries = []
        for target in self.targets:
            head: dict[str, Any] = {"model": target.name}
            if target.model is not None:
                head["version"] = target.model.card.version
            # Decided on calibrated probabilities (true), a model's raw output (false), or
            # posted probabilities as given (null).
            head["calibrated"] = None if target.model is None else target.model.calibrated
            result = evaluate_k_class(
                target.labels, target.probabilities, self.matrix, margin=self.margin
            )
            result.pop("warnings")
            entries.append(head | result)
        ranking = sorted(entries, key=lambda entry: -entry["expected_value"])
        return {
            "data": self.source,
            "note": MULTICLASS_NOTES[self.source],
            "cost_matrix": {**self.matrix.to_dict(), "orientation": ORIENTATION},
            "margin": self.margin,
            "margin_unit": "value (dollars per instance)",
            "warnings": self.matrix.warnings(),
            "results": entries,
            "ranking": [
                {
                    "rank": rank,
                    "model": entry["model"],
                    "expected_value": entry["expected_value"],
                    "total_value": entry["total_value"],
                    "argmax_probability_expected_value": entry["argmax_probability"][
                        "expected_value"
                    ],
                }
                for rank, entry in enumerate(ranking, start=1)
            ],
            "best_model": ranking[0]["model"],
        }


def posted_probabilities(raw: Any, k: int, field: str = "scores") -> np.ndarray:
    if not isinstance(raw, list):
        raise InvalidInputError(f"{field}: expected a list of rows of {k} class probabilities")
    try:
        return as_probabilities(raw, k, field)
    except EconomicsError as exc:
        raise InvalidInputError(str(exc)) from None


def class_labels(raw: Any, classes: Sequence[str], n: int, what: str) -> np.ndarray:
    if raw is None:
        raise InvalidInputError(f"labels: required with {what}")
    try:
        labels = as_class_labels(raw, classes, "labels")
    except EconomicsError as exc:
        raise InvalidInputError(str(exc)) from None
    if len(labels) != n:
        raise InvalidInputError(f"labels: has {len(labels)} labels but there are {n} {what}")
    return labels


def held_out_multiclass(model: LoadedModel) -> MulticlassTarget:
    """The card's held-out split: its calibrated probabilities when it has a map."""
    card = model.card
    assert isinstance(card, MulticlassCard)
    calibrated = card.held_out.calibrated_probabilities
    return MulticlassTarget(
        model=model,
        labels=np.asarray(card.held_out.labels, dtype=np.int64),
        probabilities=np.asarray(
            card.held_out.probabilities if calibrated is None else calibrated, dtype=np.float64
        ),
    )


def normalised(probabilities: np.ndarray) -> np.ndarray:
    """A model's class probabilities (already checked to be finite numbers in [0, 1]) in
    float64, each row summing to 1: float32 softmax rows sum to 1 only within float32
    rounding."""
    out = probabilities.astype(np.float64)
    return out / out.sum(axis=1, keepdims=True)


class Evaluator:
    """Evaluations over the registry's models (:class:`service.dataplane.DataPlane` gives
    it the registry and the scoring of a prediction, ``_score``)."""

    registry: ModelRegistry
    _score: Callable[..., tuple[np.ndarray, np.ndarray | None]]

    def evaluate(self, inputs: EvaluateInputs) -> Evaluation:
        """Each chosen model's (or the posted scores') decisions valued under the cost
        matrix; see :class:`EvaluateInputs` for where the data comes from."""
        if inputs.scores is not None:
            targets = [self._posted_scores_target(inputs)]
            source = "scores"
        else:
            models = self.binary_models(inputs.models, inputs.models_field)
            if inputs.instances is None:
                if inputs.labels is not None:
                    raise InvalidInputError(
                        "labels: given without instances or scores to go with them"
                    )
                targets = held_out_targets(models, inputs.threshold, inputs.margin)
                source = "held_out"
            else:
                targets = self._scored_targets(models, inputs)
                source = inputs.instances_source
        for target in targets:
            _check_cost_length(inputs.cost_matrix, target)
        return Evaluation(
            source=source,
            targets=targets,
            costs=inputs.cost_matrix,
            prevalence=inputs.prevalence,
            curve=inputs.curve,
        )

    def binary_models(self, names: Sequence[str] | None, field: str) -> list[LoadedModel]:
        """The named models (each binary), or every loaded binary model."""
        models = self.select_models(names, field)
        if names is None:
            models = [model for model in models if not model.multiclass]
            if not models:
                raise InvalidInputError(
                    "cost_matrix: no binary model is loaded; for a multiclass model post a "
                    'value matrix {"classes": [...], "values": [[...], ...]}'
                )
        for index, model in enumerate(models):
            if model.multiclass:
                raise InvalidInputError(
                    f"{field}[{index}]: model {model.name!r} is multiclass "
                    f"({', '.join(model.card.classes)}); post a value matrix "
                    '{"classes": [...], "values": [[...], ...]} as cost_matrix'
                )
        return models

    def evaluate_multiclass(self, inputs: MulticlassEvaluateInputs) -> MulticlassEvaluation:
        """Multiclass models (or posted class probabilities) valued under a K x K matrix:
        on posted ``scores`` (N x K) with labels, on posted instances with labels, or on
        each card's held-out split."""
        matrix = inputs.matrix
        if inputs.threshold is not None:
            raise InvalidInputError(
                "threshold: multiclass decisions take no threshold (each instance gets the "
                "class with the highest expected value)"
            )
        margin = default_margin(matrix) if inputs.margin is None else inputs.margin
        if inputs.scores is not None:
            _posted_alone(inputs.instances, inputs.models, "probabilities")
            probabilities = posted_probabilities(inputs.scores, matrix.k)
            labels = class_labels(inputs.labels, matrix.classes, len(probabilities), "scores")
            targets = [MulticlassTarget(None, labels, probabilities)]
            return MulticlassEvaluation("scores", targets, matrix, margin)
        models = self.multiclass_models(
            inputs.models, matrix, inputs.models_field, inputs.matrix_field
        )
        instances = inputs.instances
        if instances is None:
            if inputs.labels is not None:
                raise InvalidInputError("labels: given without instances or scores to go with them")
            targets = [held_out_multiclass(model) for model in models]
            return MulticlassEvaluation("held_out", targets, matrix, margin)
        if not isinstance(instances, np.ndarray | list) or not len(instances):
            raise InvalidInputError("instances: expected a non-empty list of instances")
        labels = class_labels(inputs.labels, matrix.classes, len(instances), "instances")
        targets = []
        for model in models:
            x = _rows_for(model, instances)
            # No value from probabilities that are not finite numbers in [0, 1], as for a
            # prediction (422 non_finite_score).
            raw, calibrated = self._score(model, x, inputs.name_row)
            targets.append(
                MulticlassTarget(
                    model, labels, normalised(raw if calibrated is None else calibrated)
                )
            )
        return MulticlassEvaluation(inputs.instances_source, targets, matrix, margin)

    def multiclass_models(
        self,
        names: Sequence[str] | None,
        matrix: ValueMatrix,
        field: str = "models",
        matrix_field: str = "cost_matrix",
    ) -> list[LoadedModel]:
        """The named models (each multiclass, with the matrix's classes), or every loaded
        multiclass model with the matrix's classes; errors name ``field`` (the models)
        and ``matrix_field`` (the matrix)."""
        models = self.select_models(names, field)
        if names is None:
            models = [m for m in models if m.multiclass and tuple(m.card.classes) == matrix.classes]
            if not models:
                raise InvalidInputError(
                    f"{matrix_field}.classes: no loaded multiclass model has the classes "
                    f"{list(matrix.classes)}"
                )
        for index, model in enumerate(models):
            if not model.multiclass:
                raise InvalidInputError(
                    f"{field}[{index}]: model {model.name!r} is binary; post a cost matrix "
                    "with tp, fp, tn and fn"
                )
            if tuple(model.card.classes) != matrix.classes:
                raise InvalidInputError(
                    f"{matrix_field}.classes: {list(matrix.classes)} does not match the classes "
                    f"of model {model.name!r} {model.card.classes} (same names, same order)"
                )
        return models

    def select_models(
        self, names: Sequence[str] | None, field: str = "models"
    ) -> list[LoadedModel]:
        """The named models in the order given, or every loaded model by name."""
        registry = self.registry
        if names is None:
            if not registry.ready:
                raise NotReadyError(f"no model is loaded from {registry.model_dir}")
            return registry.loaded()  # one consistent set, even while a model is unloaded
        if not isinstance(names, list) or not names:
            raise InvalidInputError(f"{field}: expected a non-empty list of model names")
        chosen: list[LoadedModel] = []
        for index, name in enumerate(names):
            where = f"{field}[{index}]"
            if not isinstance(name, str):
                raise InvalidInputError(f"{where}: {json.dumps(name)} is not a model name")
            if any(model.name == name for model in chosen):
                raise InvalidInputError(f"{where}: {name!r} is listed twice")
            try:
                chosen.append(registry.get(name))
            except NotFoundError as exc:
                raise NotFoundError(f"{where}: {exc.detail}") from None
        return chosen

    def _posted_scores_target(self, inputs: EvaluateInputs) -> Target:
        _posted_alone(inputs.instances, inputs.models, "scores")
        values = _checked_list(
            inputs.scores, "scores", "a list of probabilities in [0, 1]", economics.as_scores
        )
        return Target(
            model=None,
            labels=_labels(inputs.labels, len(values), "scores"),
            scores=values,
            threshold=DEFAULT_THRESHOLD if inputs.threshold is None else inputs.threshold,
            margin=DEFAULT_MARGIN if inputs.margin is None else inputs.margin,
        )

    def _scored_targets(self, models: list[LoadedModel], inputs: EvaluateInputs) -> list[Target]:
        instances = inputs.instances
        if isinstance(instances, np.ndarray):
            labels = _labels(inputs.labels, len(instances), "instances")
        else:
            if not isinstance(instances, list) or not instances:
                raise InvalidInputError("instances: expected a non-empty list of instances")
            labels = _labels(inputs.labels, len(instances), "instances")
        matrices: dict[tuple[str, ...], np.ndarray] = {}
        targets = []
        for model in models:
            features = tuple(model.card.features)
            if features not in matrices:
                matrices[features] = _rows_for(model, instances)
            scores, probabilities = self._score(model, matrices[features], inputs.name_row)
            targets.append(
                _target(model, labels, scores, inputs.threshold, inputs.margin, probabilities)
            )
        return targets
