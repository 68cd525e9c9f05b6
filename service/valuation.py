"""Predictions decided by expected value: a binary model with a posted cost matrix, and
every multiclass model.

No HTTP here (the data plane calls it, the codecs encode what it returns). The numbers
come from the K-class core, :func:`costaware.core.decide`.

Margins in this mode are in the matrix's **value unit (dollars per instance)**: a
prediction is a close confusion when its best two actions' expected values differ by
less than the margin. Defaults when the request gives none:

- binary: the card's score margin ``m`` times ``|(v_tn - v_fp) + (v_tp - v_fn)|`` for each
  instance, which flags exactly the instances with ``|score - t*_i| < m`` (``t*_i`` the
  instance's own Elkan threshold);
- multiclass: the card's margin (already in dollars) with the card's matrix, else 5% of
  the posted matrix's largest regret (``costaware.core.default_margin``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from costaware.card import MulticlassCard
from costaware.core import (
    BINARY_CLASSES,
    MAX_ABS_VALUE,
    ORIENTATION,
    ValueMatrix,
    as_scores,
    binary_probabilities,
    decide,
    default_margin,
    value_margin,
)
from costaware.economics import OUTCOMES, CostMatrix, EconomicsError
from service.errors import InvalidInputError
from service.registry import LoadedModel

MatrixSource = Literal["request", "card"]
BINARY_RULE = "treat (decision 1) iff p*(v_tp - v_fn) >= (1 - p)*(v_tn - v_fp)"
MULTICLASS_RULE = "the class j with the highest sum_i p(i|x) * values[i][j] (ties: earlier class)"


@dataclass(frozen=True)
class ValuedPredictions:
    """One request's answer when decisions are taken by expected value.

    ``outputs``: the binary scores (float32 [N]) or the class probabilities (float32
    [N, K]) as the graph gave them; ``decisions``: class indices; ``expected_values``:
    [N, K], the value of deciding each class (``BINARY_CLASSES`` order for a binary model).
    ``margin`` is None when each instance has its own default margin (binary).
    """

    model: str
    version: str
    classes: tuple[str, ...]
    multiclass: bool
    outputs: np.ndarray
    decisions: list[int]
    expected_values: np.ndarray
    close: list[bool]
    matrix_source: MatrixSource
    margin: float | None
    margin_note: str
    # Names of the features outside the training [min, max] by instance index (instances
    # that have any); None when the card records no training ranges.
    out_of_range: dict[int, list[str]] | None = None
    # The graph's calibrated output (binary [N], multiclass [N, K], float32), which the
    # decisions and expected values were taken on; None for a model without a map, whose
    # raw ``outputs`` were taken as probabilities (and its answers say so).
    calibrated: np.ndarray | None = None
    # The value matrix decided under (row = truth, column = decision; a binary cost
    # matrix as [[tn, fp], [fn, tp]]): [K, K], or [N, K, K] with per-instance values.
    matrix: np.ndarray | None = None
    # Each instance's prediction id (service.decisionlog.ids), set by Predictor.predict.
    ids: list[str] | None = None

    def out_of_range_of(self, index: int) -> list[str] | None:
        if self.out_of_range is None:
            return None
        return self.out_of_range.get(index, [])

    def __len__(self) -> int:
        return len(self.decisions)

    def id_of(self, index: int) -> str | None:
        return None if self.ids is None else self.ids[index]

    @property
    def labels(self) -> list[bool]:
        """For the prediction metrics: the positive decision (binary), or any decision
        other than the first class (multiclass)."""
        return [d != 0 for d in self.decisions]

    def head(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "classes": list(self.classes),
            "decision_rule": MULTICLASS_RULE if self.multiclass else BINARY_RULE,
            "cost_matrix": self.matrix_source,
            "margin": self.margin,
            "margin_unit": "value (dollars per instance): close_confusion when the best two "
            "actions' expected values differ by less",
            "margin_note": self.margin_note,
            "calibrated": self.calibrated is not None,
        }

    def records(self) -> list[dict[str, Any]]:
        """One JSON object per instance."""
        evs = self.expected_values.tolist()
        out = []
        if self.multiclass:
            # ``probabilities``: what the decision was taken on (the calibrated output, else
            # the raw one as before); a calibrated model's raw output is kept as ``scores``.
            decided = self.outputs if self.calibrated is None else self.calibrated
            probabilities = _shortest(decided)
            raw = None if self.calibrated is None else _shortest(self.outputs)
            for p, d, ev, close in zip(probabilities, self.decisions, evs, self.close, strict=True):
                record = {
                    "id": self.id_of(len(out)),
                    "probabilities": dict(zip(self.classes, p, strict=True)),
                    "decision": self.classes[d],
                    "expected_values": dict(zip(self.classes, ev, strict=True)),
                    "close_confusion": close,
                    "out_of_range": self.out_of_range_of(len(out)),
                }
                if raw is not None:
                    record["scores"] = dict(zip(self.classes, raw[len(out)], strict=True))
                out.append(record)
            return out
        scores = _shortest(self.outputs)
        probability = (
            [None] * len(scores) if self.calibrated is None else _shortest(self.calibrated)
        )
        for s, p, d, ev, close in zip(
            scores, probability, self.decisions, evs, self.close, strict=True
        ):
            out.append(
                {
                    "id": self.id_of(len(out)),
                    "score": s,
                    "probability": p,
                    "label": d,
                    "decision": d,
                    "expected_values": dict(zip(BINARY_CLASSES, ev, strict=True)),
                    "close_confusion": close,
                    "out_of_range": self.out_of_range_of(len(out)),
                }
            )
        return out

    def csv_rows(self) -> list[list[str]]:
        """Binary: ``score,decision,ev_0,ev_1,close_confusion``; multiclass:
        ``p_1..p_K,decision,ev_1..ev_K,close_confusion`` (classes in the card's order, the
        probabilities decided on: calibrated ones when the model has a map); the encoder
        adds the ``out_of_range`` column, then :meth:`csv_extra`."""
        decided = (
            self.outputs if self.calibrated is None or not self.multiclass else self.calibrated
        )
        outputs = np.asarray(decided, dtype=np.float32)
        firsts = outputs.reshape(len(self), -1).astype(str).tolist()
        rows = []
        for first, d, ev, close in zip(
            firsts, self.decisions, self.expected_values.tolist(), self.close, strict=True
        ):
            decision = self.classes[d] if self.multiclass else str(d)
            rows.append([*first, decision, *(repr(float(v)) for v in ev), _BOOL[close]])
        return rows

    def csv_extra(self) -> list[list[str]] | None:
        """The columns a calibrated model's CSV answer adds at the end of each row (so an
        uncalibrated model's rows keep their columns): binary ``probability``; multiclass
        the raw ``s_1..s_K``. None without a map."""
        if self.calibrated is None:
            return None
        extra = self.outputs if self.multiclass else self.calibrated
        return np.asarray(extra, dtype=np.float32).reshape(len(self), -1).astype(str).tolist()


_BOOL = ("false", "true")


def _shortest(values: np.ndarray) -> list[Any]:
    """Each float32 value as the float64 of its shortest decimal (what converts back to it)."""
    return np.asarray(values, dtype=np.float32).astype(str).astype(np.float64).tolist()


def _non_negative(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInputError(f"{field}: {value!r} is not a number")
    number = float(value)
    if not (math.isfinite(number) and number >= 0):
        raise InvalidInputError(f"{field}: {value!r} must be a finite number >= 0 (dollars)")
    return number


def binary_matrix(raw: Any, n: int, field: str = "cost_matrix") -> CostMatrix:
    """A posted binary cost matrix (scalars, or one value per instance)."""
    try:
        costs = CostMatrix.from_mapping(raw, n=n, prefix=field)
    except EconomicsError as exc:
        raise InvalidInputError(str(exc)) from None
    for name in OUTCOMES:
        value = np.abs(np.asarray(getattr(costs, name)))
        if (value > MAX_ABS_VALUE).any():
            index = f"[{int(np.argmax(value > MAX_ABS_VALUE))}]" if value.ndim else ""
            raise InvalidInputError(
                f"{field}.{name}{index}: beyond ±{MAX_ABS_VALUE:g}; the expected values of "
                "the two actions could overflow"
            )
    return costs


def multiclass_matrix(raw: Any, card: MulticlassCard, field: str = "cost_matrix") -> ValueMatrix:
    """A posted value matrix, checked against the model's classes."""
    if isinstance(raw, dict) and not {"classes", "values"} & set(raw) and set(raw) & set(OUTCOMES):
        raise InvalidInputError(
            f"{field}: model {card.name!r} has {len(card.classes)} classes "
            f'{card.classes}; send {{"classes": [...], "values": [[...], ...]}} '
            f"({ORIENTATION})"
        )
    try:
        matrix = ValueMatrix.from_mapping(raw, prefix=field)
        matrix.check_classes(card.classes, f"{field}.classes")
    except EconomicsError as exc:
        raise InvalidInputError(str(exc)) from None
    return matrix


def card_matrix(card: MulticlassCard) -> ValueMatrix:
    return ValueMatrix(tuple(card.classes), np.asarray(card.value_matrix.values))


@dataclass(frozen=True)
class _Terms:
    """What one request decides under: the matrix and where it came from, the rows of
    class probabilities decided on, the margin (dollars; one per instance or one for all)
    and how the answer states it."""

    matrix: ValueMatrix
    source: MatrixSource
    probabilities: np.ndarray  # N x K float64
    margin: Any
    shown: float | None
    note: str


def _binary_terms(
    model: LoadedModel, scores: np.ndarray, raw: Any, margin: Any, field: str, probability: Any
) -> _Terms:
    """A binary model's: the posted ``tp/fp/tn/fn`` (its own parser) as the K = 2 value
    matrix; the default margin is the card's score margin in dollars per instance."""
    n = len(scores)
    costs = binary_matrix(raw, n)
    matrix = costs.value_matrix()
    decided_on = scores if probability is None else probability
    if margin is None:
        score_margin = float(model.card.margin)
        margins: Any = value_margin(score_margin, matrix, n)
        what = "score" if probability is None else "probability"
        note = (
            f"default: the card's score margin {score_margin:g} x |(v_tn - v_fp) + (v_tp - "
            f"v_fn)| per instance, i.e. close when |{what} - t*| < {score_margin:g}"
        )
        shown = None if costs.per_instance else float(margins[0]) if n else None
    else:
        margins = shown = _non_negative(margin, field)
        note = "posted"
    try:
        rows = binary_probabilities(as_scores(decided_on.astype(np.float64)))
    except EconomicsError as exc:
        raise InvalidInputError(str(exc)) from None
    return _Terms(matrix, "request", rows, margins, shown, note)


def _multiclass_terms(
    model: LoadedModel,
    probabilities: np.ndarray,
    raw: Any,
    margin: Any,
    field: str,
    calibrated: Any,
) -> _Terms:
    """A multiclass model's: the posted value matrix, or the card's; the default margin is
    the card's (dollars), or 5% of a posted matrix's largest regret."""
    card = model.card
    assert isinstance(card, MulticlassCard)
    if raw is None:
        matrix, source = card_matrix(card), "card"
        default, note = card.margin, "default: the card's margin"
    else:
        matrix, source = multiclass_matrix(raw, card), "request"
        default = default_margin(matrix)
        note = "default: 5% of the posted matrix's largest regret"
    if margin is None:
        value = default
    else:
        value, note = _non_negative(margin, field), "posted"
    rows = (probabilities if calibrated is None else calibrated).astype(np.float64)
    return _Terms(matrix, source, rows, value, float(value), note)


def value_predictions(
    model: LoadedModel,
    outputs: np.ndarray,
    raw_matrix: Any | None,
    margin: Any,
    margin_field: str = "margin",
    out_of_range: dict[int, list[str]] | None = None,
    calibrated: np.ndarray | None = None,
) -> ValuedPredictions:
    """The action with the highest expected value per instance (the core's K-class rule,
    :func:`costaware.core.decide`), on the model's calibrated output when it has one (else
    on its raw output, as the answer's ``"calibrated": false`` says). ``outputs``: the
    graph's raw output (binary [N], multiclass [N, K]); ``raw_matrix``: the posted matrix
    (None: a multiclass card's own; a binary model needs one)."""
    terms = (_multiclass_terms if model.multiclass else _binary_terms)(
        model, outputs, raw_matrix, margin, margin_field, calibrated
    )
    decided = decide(terms.probabilities, terms.matrix, margin=terms.margin)
    return ValuedPredictions(
        model=model.name,
        version=model.card.version,
        classes=terms.matrix.classes,
        multiclass=model.multiclass,
        outputs=outputs,
        decisions=decided.index.tolist(),
        expected_values=decided.expected_values,
        close=decided.close.tolist(),
        matrix_source=terms.source,
        margin=terms.shown,
        margin_note=terms.note,
        out_of_range=out_of_range,
        calibrated=calibrated,
        matrix=terms.matrix.values,
    )
