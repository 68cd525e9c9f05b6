"""Realized value: what decisions earned once their outcomes are known, against what the
model stated they were expected to earn (pure numpy; the service's decision log computes
the same figures with SQL aggregates, and the tests hold it to these functions).

A decision ``d`` taken on class probabilities ``p`` (calibrated when the model has a map;
binary as ``[1 - p, p]``) under a value matrix ``M`` (row = truth, column = decision; a
binary cost matrix as ``[[tn, fp], [fn, tp]]``) is expected to be worth
``E = sum_i p_i M[i, d]`` with variance ``V = sum_i p_i M[i, d]^2 - E^2``; once the truth
``y`` is known it realized ``M[y, d]``. Over the decisions of a window with an outcome,
the gap ``sum realized - sum E`` has standard error ``sqrt(sum V)`` if the probabilities
are right; the alert is a realized sum more than 3 standard errors below the expected one.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

ALERT_STANDARD_ERRORS = 3.0


def decision_moments(
    probabilities: ArrayLike, matrices: ArrayLike, decisions: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Each decision's expected value and variance: ``probabilities`` [N, K], ``matrices``
    [N, K, K] (or one [K, K]), ``decisions`` [N] class indices."""
    p = np.asarray(probabilities, dtype=np.float64)
    d = np.asarray(decisions, dtype=np.int64)
    m = np.broadcast_to(np.asarray(matrices, dtype=np.float64), (len(p), p.shape[1], p.shape[1]))
    column = np.take_along_axis(m, d[:, None, None], axis=2)[:, :, 0]
    expected = (p * column).sum(axis=1)
    variance = np.maximum((p * column**2).sum(axis=1) - expected**2, 0.0)
    return expected, variance


def realized_values(matrices: ArrayLike, decisions: ArrayLike, labels: ArrayLike) -> NDArray:
    """``M[y, d]`` per decision (``labels`` y, class indices)."""
    d = np.asarray(decisions, dtype=np.int64)
    y = np.asarray(labels, dtype=np.int64)
    m = np.asarray(matrices, dtype=np.float64)
    if m.ndim == 2:
        return m[y, d]
    return m[np.arange(len(d)), y, d]


def window_figures(
    decisions: int,
    with_outcome: int,
    realized: float,
    expected: float,
    variance: float,
    estimated: float,
) -> dict[str, Any]:
    """One window's (and version's) figures from its sums: the gap, its standard error
    and the alert."""
    gap = realized - expected
    se = math.sqrt(max(variance, 0.0))
    return {
        "decisions": int(decisions),
        "with_outcome": int(with_outcome),
        "realized_value": realized,
        "expected_value": expected,
        "gap": gap,
        "gap_standard_error": se,
        "estimated_value_without_outcome": estimated,
        "alert": bool(with_outcome > 0 and gap < -ALERT_STANDARD_ERRORS * se),
    }


def report(
    times_ms: ArrayLike,
    versions: ArrayLike,
    probabilities: ArrayLike,
    matrices: ArrayLike,
    decisions: ArrayLike,
    labels: ArrayLike,
    start_ms: int,
    end_ms: int,
    window_ms: int,
) -> dict[tuple[int, str], dict[str, Any]]:
    """The figures per (window index, version) of the decisions logged in
    ``[start_ms, end_ms)``; ``labels`` -1 where no outcome is known yet."""
    t = np.asarray(times_ms, dtype=np.int64)
    v = np.asarray(versions)
    y = np.asarray(labels, dtype=np.int64)
    expected, variance = decision_moments(probabilities, matrices, decisions)
    has = y >= 0
    realized = np.where(has, realized_values(matrices, decisions, np.where(has, y, 0)), 0.0)
    inside = (t >= start_ms) & (t < end_ms)
    window = (t - start_ms) // window_ms
    out = {}
    pairs = zip(window[inside].tolist(), v[inside].tolist(), strict=True)
    for w, version in sorted({(int(a), str(b)) for a, b in pairs}):
        chosen = inside & (window == w) & (v == version)
        known = chosen & has
        out[(w, version)] = window_figures(
            int(chosen.sum()),
            int(known.sum()),
            float(realized[known].sum()),
            float(expected[known].sum()),
            float(variance[known].sum()),
            float(expected[chosen & ~has].sum()),
        )
    return out
