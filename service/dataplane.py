"""The data plane: predictions and evaluations on plain Python and numpy inputs.

No HTTP here. Routes decode a request into :class:`PredictInputs` or
:class:`EvaluateInputs`, call :class:`DataPlane`, and encode the result object it returns;
the load benchmark, the batch engine and tests call the same methods without a server.
Refusals are :class:`~service.errors.ServiceError` subclasses, which carry the status a
route answers with.

A prediction's hops: choose the model and its threshold and margin (request, else the
card), turn the instances into a float matrix in the card's feature order, score it (one
onnxruntime call, shared with the other requests of the same event-loop turn when called
through :meth:`DataPlane.predict`), decide with :mod:`costaware.decision`, count.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import le
from typing import Any, Literal

import numpy as np

from costaware import economics, figures
from costaware.card import HeldOut, ModelCard
from costaware.core import ValueMatrix, default_margin
from costaware.decision import (
    DEFAULT_MARGIN,
    DEFAULT_THRESHOLD,
    all_probabilities,
    close_each,
    decide_each,
    is_probability,
    not_probabilities,
)
from costaware.economics import CostMatrix, EconomicsError
from service.batching import BatchScorer
from service.codecs import instances_to_matrix
from service.errors import (
    InvalidInputError,
    NonFiniteScoreError,
    NotFoundError,
    NotReadyError,
    OutOfRangeError,
)
from service.metrics import Metrics
from service.registry import LoadedModel, ModelRegistry
from service.valuation import (
    MulticlassEvaluation,
    MulticlassTarget,
    ValuedPredictions,
    class_labels,
    held_out_multiclass,
    normalised,
    posted_probabilities,
    value_binary,
    value_multiclass,
)

# ---------------------------------------------------------------------------------------
# Predictions

OnOutOfRange = Literal["flag", "refuse"]
# Out-of-range features by instance index, only for instances that have any.
OutOfRange = dict[int, list[str]]


@dataclass(frozen=True)
class PredictInputs:
    """What to score and how to decide.

    ``instances``: a float matrix ``[N, F]`` already in the model's feature order (CSV and
    JSON lines are decoded against the model's features), or a list of rows, each an array
    of F numbers or an object keyed by feature name (JSON). ``None`` for ``model``,
    ``threshold`` or ``margin`` means the default model and the card's values.
    """

    instances: np.ndarray | Sequence[Any]
    model: str | None = None
    threshold: float | None = None
    margin: float | None = None
    # Instances with features outside the training range: flagged in the answer, or the
    # request refused (OutOfRangeError).
    on_out_of_range: OnOutOfRange = "flag"
    # Decide by expected value under this matrix (service.valuation): a binary matrix
    # (tp, fp, tn, fn: scalars or one value per instance) or a multiclass value matrix.
    # A multiclass model always decides by expected value (the card's matrix by default).
    cost_matrix: Any = None
    # How errors name the instances: ``instances[3]`` by default; CSV and JSON lines name
    # the line (``body, row 4``, ``body line 4``); and the body's fields (``body.``).
    source: str = "instances"
    row_name: Callable[[int], str] | None = None
    fields: str = ""

    def name_row(self, index: int) -> str:
        if self.row_name is not None:
            return self.row_name(index)
        return f"{self.source}[{index}]"


@dataclass(frozen=True)
class ValuedRequest:
    """How a request decides by expected value: the posted matrix (None: the card's) and
    margin (None: the default), and how errors name the margin."""

    matrix: Any
    margin: float | None
    margin_field: str


@dataclass(frozen=True)
class ScoringJob:
    """A request ready to score: the model, the rows, and how to decide on the scores."""

    model: LoadedModel
    x: np.ndarray  # raw feature rows [N, F], float64
    threshold: float
    margin: float
    row_name: Callable[[int], str]
    out_of_range: OutOfRange | None  # None: the card records no training ranges
    # Set when the decision is by expected value (service.valuation); one field, because
    # every field of a frozen dataclass costs a setattr on each one-instance request.
    valued: ValuedRequest | None = None


@dataclass(frozen=True)
class Predictions:
    """One request's answer.

    Lists, not arrays, for the decisions: a request usually carries one instance, and on
    a one-element array every numpy call costs more than the Python comparison it stands
    for. ``scores`` is the graph's float32 output as it came, which the encoders show as
    the shortest decimal that converts back to it.
    """

    model: str
    version: str
    threshold: float
    margin: float
    scores: np.ndarray  # 1-D float32
    labels: list[bool]  # score >= threshold
    close: list[bool]  # |score - threshold| < margin
    # Names of the features outside the training [min, max], by instance index, for the
    # instances that have any; None when the model's card records no training ranges.
    out_of_range: OutOfRange | None
    # The graph's calibrated ``probability`` output (1-D float32); None for a model without
    # a calibration map, whose answers say ``"calibrated": false``.
    probability: np.ndarray | None = None

    @property
    def calibrated(self) -> bool:
        return self.probability is not None

    def __len__(self) -> int:
        return len(self.labels)

    def out_of_range_of(self, index: int) -> list[str] | None:
        if self.out_of_range is None:
            return None
        return self.out_of_range.get(index, [])


class DataPlane:
    """Predictions and evaluations over the registry's models; counts what it serves."""

    def __init__(
        self,
        registry: ModelRegistry,
        scorer: BatchScorer | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.registry = registry
        self.scorer = scorer or BatchScorer(enabled=False)
        self.metrics = metrics
        # Keyed by the card's id and holding the card, so that a card loaded later (a
        # replaced model) can never reuse a stale entry under a recycled id.
        self._bounds: dict[int, tuple[ModelCard, tuple[np.ndarray, np.ndarray] | None]] = {}
        self._bound_lists: dict[int, tuple[Any, tuple[list[float], list[float]] | tuple[()]]] = {}

    def model(self, name: str | None = None) -> LoadedModel:
        """The named model, or the default one (NotFoundError, NotReadyError)."""
        return self.registry.get(name)

    def prepare(self, inputs: PredictInputs) -> ScoringJob:
        """Choose the model, threshold and margin and check the instances."""
        model = self.registry.get(inputs.model)
        instances = inputs.instances
        inside = False
        if isinstance(instances, np.ndarray):
            x = instances
            if x.ndim != 2 or x.shape[1] != model.n_features:
                raise InvalidInputError(
                    f"{inputs.source}: model {model.name!r} takes {model.n_features} "
                    f"features per instance, got {x.shape[-1] if x.ndim else 0}"
                )
        elif self._few_inside(model, instances):
            # Nothing to flag; inside the training range also means finite and within
            # float32, the checks instances_to_matrix and _check_ranges would make.
            x = np.array(instances, dtype=np.float64)
            inside = True
        else:
            x = instances_to_matrix(instances, model.card.features, inputs.source)
        card = model.card
        valued = model.multiclass or inputs.cost_matrix is not None
        if valued:
            if inputs.threshold is not None:
                raise InvalidInputError(
                    f"{inputs.fields}threshold: decisions by expected value under a cost "
                    "matrix take no threshold (each instance gets the better action)"
                    if not model.multiclass
                    else f"{inputs.fields}threshold: model {model.name!r} is multiclass; it "
                    "decides by expected value under its value matrix, with no threshold"
                )
            return ScoringJob(
                model=model,
                x=x,
                threshold=float("nan"),
                margin=float("nan"),
                row_name=inputs.name_row,
                out_of_range={} if inside else self._check_ranges(model, x, inputs),
                valued=ValuedRequest(inputs.cost_matrix, inputs.margin, f"{inputs.fields}margin"),
            )
        if inputs.margin is not None and inputs.margin > 1:
            raise InvalidInputError(f"{inputs.fields}margin: {inputs.margin} is outside [0, 1]")
        return ScoringJob(
            model=model,
            x=x,
            threshold=card.threshold if inputs.threshold is None else inputs.threshold,
            margin=card.margin if inputs.margin is None else inputs.margin,
            row_name=inputs.name_row,
            out_of_range={} if inside else self._check_ranges(model, x, inputs),
        )

    def _few_inside(self, model: LoadedModel, instances: Any) -> bool:
        """True for a short list of arrays of plain numbers, all inside the model's
        training range: the usual request, checked with Python comparisons in C
        (``map``) instead of the half-dozen numpy calls the general checks make, each of
        which costs more than the comparisons on one instance. Anything else (objects, odd
        values, a feature outside, many instances) takes the general path."""
        card = model.card
        cached = self._bound_lists.get(id(card))
        if cached is None or cached[0] is not card:
            cached = self._bound_lists[id(card)] = (card, _bound_lists(card))
        bounds = cached[1]
        if not bounds or not isinstance(instances, list) or not 0 < len(instances) <= _FEW_ROWS:
            return False
        low, high = bounds
        width = model.n_features
        if len(low) != width:
            return False
        return all(
            type(row) is list
            and len(row) == width
            and _NUMBER_TYPES.issuperset(map(type, row))
            and all(map(le, low, row))
            and all(map(le, row, high))
            for row in instances
        )

    def training_bounds(self, model: LoadedModel) -> tuple[np.ndarray, np.ndarray] | None:
        """The card's per-feature training minimum and maximum as arrays (cached)."""
        card = model.card
        cached = self._bounds.get(id(card))
        # The card is kept with its bounds, so its id cannot be reused by another card
        # (a model loaded again) while the entry exists.
        if cached is None or cached[0] is not card:
            ranges = card.feature_ranges
            bounds = (
                None
                if ranges is None
                else (
                    np.array([item.min for item in ranges]),
                    np.array([item.max for item in ranges]),
                )
            )
            cached = self._bounds[id(card)] = (card, bounds)
        return cached[1]

    def _check_ranges(
        self, model: LoadedModel, x: np.ndarray, inputs: PredictInputs
    ) -> OutOfRange | None:
        bounds = self.training_bounds(model)
        if bounds is None:
            return None
        low, high = bounds
        # Most requests carry one instance with nothing outside: a Python loop over its
        # values costs a third of the four numpy calls below.
        if len(x) <= _FEW_ROWS and not _any_outside(x.tolist(), low.tolist(), high.tolist()):
            return {}
        outside = np.less(x, low)
        np.logical_or(outside, np.greater(x, high), out=outside)
        # The ufunc's own reduce: most requests have one instance and nothing outside.
        if not np.logical_or.reduce(outside, axis=None):
            return {}
        features = model.card.features
        found = {
            int(row): [features[c] for c in np.flatnonzero(outside[row])]
            for row in np.flatnonzero(outside.any(axis=1))
        }
        if self.metrics is not None:
            self.metrics.observe_out_of_range(model.name, len(found))
        if inputs.on_out_of_range == "refuse":
            raise out_of_range_error(model, x, found, low, high, inputs.name_row)
        return found

    async def predict(self, inputs: PredictInputs) -> Predictions | ValuedPredictions:
        """Score and decide; the session call is shared with the other requests decoded in
        this turn of the event loop (service.batching)."""
        job = self.prepare(inputs)
        return self.decide(job, await self.scorer.score(job.model, job.x))

    def predict_now(self, inputs: PredictInputs) -> Predictions | ValuedPredictions:
        """:meth:`predict` with a session call of its own, for a caller off the event loop
        (a large body in the thread pool, the benchmark, a batch worker)."""
        job = self.prepare(inputs)
        return self.decide(job, self.scorer.score_now(job.model, job.x))

    def decide(self, job: ScoringJob, outputs: np.ndarray) -> Predictions | ValuedPredictions:
        """Label the scores in ``outputs`` (the job's model's ``outputs`` for ``job.x``: raw,
        and calibrated when it has a map) and count them; NonFiniteScoreError when any
        score or probability is not a finite number in [0, 1]."""
        scores, probability = job.model.split(outputs)
        for found in (scores, probability):
            # The rule of costaware.decision (a finite number in [0, 1]); for a few binary
            # scores on the Python floats, where each numpy call costs more than the
            # comparisons.
            if found is None:
                continue
            decidable = (
                all(is_probability(value) for value in found.tolist())
                if found.ndim == 1 and len(found) <= _FEW_ROWS
                else all_probabilities(found)
            )
            if not decidable:
                raise self.refuse_non_finite(job.model.name, found, job.row_name)
        if job.valued is not None:
            return self.decide_by_value(job, scores, probability)
        # The threshold decision stays on the raw score (the card's threshold was chosen on
        # it); the probability is stated beside it.
        values = scores.tolist()
        predictions = Predictions(
            model=job.model.name,
            version=job.model.card.version,
            threshold=job.threshold,
            margin=job.margin,
            scores=scores,
            labels=decide_each(values, job.threshold),
            close=close_each(values, job.threshold, job.margin),
            out_of_range=job.out_of_range,
            probability=probability,
        )
        if self.metrics is not None:
            self.metrics.observe_predictions(
                predictions.model, predictions.labels, predictions.close
            )
        return predictions

    def decide_by_value(
        self, job: ScoringJob, outputs: np.ndarray, calibrated: np.ndarray | None = None
    ) -> ValuedPredictions:
        """The action with the highest expected value for each instance (service.valuation),
        taken on the model's calibrated probabilities when it has them."""
        model = job.model
        valued = job.valued
        assert valued is not None
        value = value_multiclass if model.multiclass else value_binary
        predictions = value(
            model,
            outputs,
            valued.matrix,
            valued.margin,
            valued.margin_field,
            job.out_of_range,
            calibrated,
        )
        if self.metrics is not None:
            self.metrics.observe_predictions(
                predictions.model, predictions.labels, predictions.close
            )
        return predictions

    # -----------------------------------------------------------------------------------
    # Evaluation

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

    def _score(
        self, model: LoadedModel, x: np.ndarray, row_name: Callable[[int], str]
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """The model's raw and calibrated outputs for ``x`` (one session call), float64."""
        return checked_outputs(
            model, x, lambda found: self.refuse_non_finite(model.name, found, row_name)
        )

    def refuse_non_finite(
        self, model: str, scores: np.ndarray, row_name: Callable[[int], str]
    ) -> NonFiniteScoreError:
        """The refusal of ``scores`` (binary [N], or multiclass [N, K] probabilities) of
        which some are not finite numbers in [0, 1]; counted in the metrics."""
        shown = scores
        if scores.ndim == 2:  # a multiclass model: name the rows, show a bad value each
            inside = (scores >= 0.0) & (scores <= 1.0)
            bad = np.flatnonzero(~inside.all(axis=1))
            shown = np.zeros(len(scores))
            for row in bad:
                shown[row] = scores[row][~inside[row]][0]
        else:
            bad = not_probabilities(scores)
        if self.metrics is not None:
            self.metrics.observe_non_finite(model, len(bad))
        return non_finite_error(model, shown, bad, row_name)

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


def checked_outputs(
    model: LoadedModel, x: np.ndarray, refuse: Callable[[np.ndarray], Exception]
) -> tuple[np.ndarray, np.ndarray | None]:
    """The model's raw and calibrated outputs for ``x`` (one session call), float64, by the
    rule of a prediction: no decision, and so no value, from a number that is not a finite
    number in [0, 1] (``refuse(found)`` is raised for such an output). The data plane and
    the batch engine both evaluate through it."""
    outputs = model.split(model.outputs(x))
    for found in outputs:
        if found is not None and not all_probabilities(found):
            raise refuse(found)
    raw, calibrated = outputs
    return raw.astype(np.float64), None if calibrated is None else calibrated.astype(np.float64)


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


# Up to this many instances, the checks run on Python floats; more go to numpy at once.
_FEW_ROWS = 8
_NUMBER_TYPES = frozenset({float, int})  # exactly: a bool is an int subclass
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _bound_lists(card: Any) -> tuple[list[float], list[float]] | tuple[()]:
    """The card's training minimum and maximum per feature as Python floats, held within
    float32's range (so that inside them a value is also a valid input); () when the card
    records no ranges."""
    ranges = card.feature_ranges
    if ranges is None:
        return ()
    return (
        [max(float(item.min), -_FLOAT32_MAX) for item in ranges],
        [min(float(item.max), _FLOAT32_MAX) for item in ranges],
    )


def out_of_range_error(
    model: LoadedModel,
    x: np.ndarray,
    found: OutOfRange,
    low: np.ndarray,
    high: np.ndarray,
    row_name: Callable[[int], str],
) -> OutOfRangeError:
    """The refusal of instances outside the training range (``on_out_of_range: refuse``);
    names up to five instances, and for each the first feature with its value and range."""
    features = model.card.features
    parts = []
    for row, names in list(found.items())[:5]:
        c = features.index(names[0])
        more = ""
        if len(names) > 1:
            shown = ", ".join(names[1:4]) + (", ..." if len(names) > 4 else "")
            more = f" (and {len(names) - 1} more: {shown})"
        parts.append(
            f"{row_name(row)}: {names[0]} = {float(x[row, c])!r} is outside "
            f"[{float(low[c])!r}, {float(high[c])!r}]{more}"
        )
    rest = f"; and {len(found) - 5} more instances" if len(found) > 5 else ""
    return OutOfRangeError(
        f"{'; '.join(parts)}{rest}: outside model {model.name!r}'s training range, and the "
        "request asked for on_out_of_range=refuse"
    )


def non_finite_error(
    model: str, scores: np.ndarray, bad: np.ndarray, row_name: Callable[[int], str]
) -> NonFiniteScoreError:
    """The refusal of a request whose model gave scores that are not finite numbers in
    [0, 1] for the instances at ``bad``; names up to five of them and their scores."""
    shown = "; ".join(f"{row_name(int(i))} ({float(scores[i])!r})" for i in bad[:5])
    more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
    return NonFiniteScoreError(
        f"{shown}{more}: model {model!r} gives no finite score in [0, 1] for "
        f"{len(bad)} of {len(scores)} instances, so no decision is made; such inputs are "
        "usually far outside what the model was trained on"
    )


def _any_outside(rows: list[list[float]], low: list[float], high: list[float]) -> bool:
    for row in rows:
        for value, lo, hi in zip(row, low, high, strict=True):
            if value < lo or value > hi:
                return True
    return False


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
class EvaluateInputs:
    """An evaluation request.

    The data is, in order: ``scores`` produced elsewhere (with ``labels``, no model);
    ``instances`` scored here by each model (a list of rows as for a prediction, or a
    float matrix, with ``labels``); or neither, for each model's held-out split from its
    card. ``models`` None means every loaded model. ``threshold`` and ``margin`` None mean
    each card's (the defaults for posted scores). ``prevalence`` values the decisions at
    that share of positives (None: the data's); ``curve`` adds the value by threshold.
    """

    cost_matrix: CostMatrix
    models: list[str] | None = None
    instances: np.ndarray | list[Any] | None = None
    scores: list[Any] | None = None
    labels: list[Any] | np.ndarray | None = None
    threshold: float | None = None
    margin: float | None = None
    prevalence: float | None = None
    curve: bool = False
    # How errors name the list of models (``models``, ``query.models``) and what the
    # posted instances were (``instances``, ``csv``).
    models_field: str = "models"
    instances_source: EvaluationSource = "instances"
    row_name: Callable[[int], str] | None = None

    def name_row(self, index: int) -> str:
        return f"instances[{index}]" if self.row_name is None else self.row_name(index)


@dataclass(frozen=True)
class MulticlassEvaluateInputs:
    """A multiclass evaluation request: ``matrix`` (K x K, row = truth, column = decision)
    and the data as for :class:`EvaluateInputs`; ``scores`` are N x K probabilities and
    ``labels`` class names or indices."""

    matrix: ValueMatrix
    models: list[str] | None = None
    instances: np.ndarray | list[Any] | None = None
    scores: list[Any] | None = None
    labels: list[Any] | None = None
    threshold: float | None = None
    margin: float | None = None
    # As for EvaluateInputs: how errors name the models, the matrix and the rows, and
    # what the rows were.
    models_field: str = "models"
    matrix_field: str = "cost_matrix"
    instances_source: EvaluationSource = "instances"
    row_name: Callable[[int], str] | None = None

    def name_row(self, index: int) -> str:
        return f"instances[{index}]" if self.row_name is None else self.row_name(index)


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
