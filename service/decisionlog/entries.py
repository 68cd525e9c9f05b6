"""One request's answer as decision-log rows (run by the writer thread, off the request
path)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from costaware.realized import decision_moments
from service.valuation import ValuedPredictions, _shortest

if TYPE_CHECKING:
    from service.dataplane import Predictions


def value_matrices(
    predictions: Predictions | ValuedPredictions, card_matrix: Any
) -> tuple[np.ndarray | None, str]:
    """[N, K, K] (row = truth, column = decision) or None, and where it came from."""
    n = len(predictions)
    if isinstance(predictions, ValuedPredictions):
        matrix = np.asarray(predictions.matrix, dtype=np.float64)
        if matrix.ndim == 2:
            matrix = np.broadcast_to(matrix, (n, *matrix.shape))
        return matrix, predictions.matrix_source
    if card_matrix is None:
        return None, "none"
    c = card_matrix
    single = np.array([[c.tn, c.fp], [c.fn, c.tp]], dtype=np.float64)
    return np.broadcast_to(single, (n, 2, 2)), "card"


def probabilities_of(predictions: Predictions | ValuedPredictions) -> np.ndarray:
    """[N, K] float64: the probabilities the expected values are taken on (calibrated when
    the model has a map), binary as [1 - p, p]."""
    if isinstance(predictions, ValuedPredictions):
        decided = predictions.outputs if predictions.calibrated is None else predictions.calibrated
    else:
        decided = predictions.scores if predictions.probability is None else predictions.probability
    # As the answer shows them (the shortest decimal of each float32), so that what a
    # client computes from its answers is what the log holds.
    p = np.asarray(_shortest(decided), dtype=np.float64)
    if p.ndim == 1:
        p = np.column_stack([1.0 - p, p])
    return p


def rows(
    predictions: Predictions | ValuedPredictions,
    ids: list[str],
    time_ms: int,
    card_matrix: Any,
) -> list[dict[str, Any]]:
    """The log's rows of one answer: ``card_matrix`` is the binary card's cost matrix (the
    one a threshold decision is valued under), None when it has none."""
    n = len(predictions)
    p = probabilities_of(predictions)
    if isinstance(predictions, ValuedPredictions):
        decision = np.asarray(predictions.decisions, dtype=np.int64)
        scores = None if predictions.multiclass else np.asarray(predictions.outputs, np.float64)
    else:
        decision = np.asarray(predictions.labels, dtype=np.int64)
        scores = np.asarray(predictions.scores, dtype=np.float64)
    matrix, source = value_matrices(predictions, card_matrix)
    if matrix is not None:
        expected, variance = decision_moments(p, matrix, decision)
        expected_list, variance_list = expected.tolist(), variance.tolist()
        matrices: list[Any] = matrix.tolist()
    else:
        expected_list = variance_list = matrices = [None] * n
    flagged = predictions.out_of_range or {}
    score_list = [None] * n if scores is None else scores.tolist()
    return [
        {
            "id": ids[i],
            "time_ms": time_ms,
            "model": predictions.model,
            "version": predictions.version,
            "score": score_list[i],
            "probabilities": p[i].tolist(),
            "decision": int(decision[i]),
            "matrix": matrices[i],
            "matrix_source": source,
            "expected_value": expected_list[i],
            "variance": variance_list[i],
            "out_of_range": bool(flagged.get(i)),
        }
        for i in range(n)
    ]
