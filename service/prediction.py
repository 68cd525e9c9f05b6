"""Prediction: instances in, decisions out, on plain Python and numpy inputs (no HTTP).

A prediction's hops: choose the model and its threshold and margin (request, else the
card), turn the instances into a float matrix in the card's feature order, score it (one
onnxruntime call, shared with the other requests of the same event-loop turn when called
through :meth:`Predictor.predict`), decide with :mod:`costaware.decision` (or, by expected
value, :mod:`service.valuation`), count. Refusals are :class:`~service.errors.ServiceError`
subclasses, which carry the status a route answers with. :class:`service.dataplane.DataPlane`
is this and :class:`service.evaluation.Evaluator` over one registry.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import le
from typing import Any, Literal

import numpy as np

from costaware.card import ModelCard
from costaware.decision import (
    all_probabilities,
    close_each,
    decide_each,
    is_probability,
    not_probabilities,
)
from service.batching import BatchScorer
from service.codecs import instances_to_matrix
from service.decisionlog.ids import instance_ids
from service.decisionlog.writer import DecisionLog
from service.errors import InvalidInputError, NonFiniteScoreError, OutOfRangeError
from service.metrics import Metrics
from service.registry import LoadedModel, ModelRegistry
from service.valuation import ValuedPredictions, value_predictions

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
    # The instances' prediction ids (service.decisionlog.ids): the client's own, one per
    # instance, else the request's id (a header) suffixed by the index, else generated.
    ids: Sequence[Any] | None = None
    request_id: str | None = None

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
    # Each instance's prediction id, set by Predictor.predict (service.decisionlog.ids).
    ids: list[str] | None = None

    @property
    def calibrated(self) -> bool:
        return self.probability is not None

    def __len__(self) -> int:
        return len(self.labels)

    def out_of_range_of(self, index: int) -> list[str] | None:
        if self.out_of_range is None:
            return None
        return self.out_of_range.get(index, [])


class Predictor:
    """Predictions over the registry's models; counts what it serves."""

    def __init__(
        self,
        registry: ModelRegistry,
        scorer: BatchScorer | None = None,
        metrics: Metrics | None = None,
        decision_log: DecisionLog | None = None,
    ) -> None:
        self.registry = registry
        self.decision_log = decision_log
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
        return self.identified(
            job, inputs, self.decide(job, await self.scorer.score(job.model, job.x))
        )

    def predict_now(self, inputs: PredictInputs) -> Predictions | ValuedPredictions:
        """:meth:`predict` with a session call of its own, for a caller off the event loop
        (a large body in the thread pool, the benchmark, a batch worker)."""
        job = self.prepare(inputs)
        return self.identified(
            job, inputs, self.decide(job, self.scorer.score_now(job.model, job.x))
        )

    def identified(
        self, job: ScoringJob, inputs: PredictInputs, answer: Predictions | ValuedPredictions
    ) -> Predictions | ValuedPredictions:
        """The answer with its prediction ids, queued for the decision log (if any): the
        one hook of the log into prediction."""
        ids = instance_ids(len(answer), inputs.ids, inputs.request_id, f"{inputs.fields}ids")
        answer = dataclasses.replace(answer, ids=ids)
        if self.decision_log is not None:
            self.decision_log.record(answer, ids, getattr(job.model.card, "cost_matrix", None))
        return answer

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
        predictions = value_predictions(
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
