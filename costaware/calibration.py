"""Calibration maps and calibration quality, in pure numpy.

A cost-weighted loss moves a network's score away from P(positive | x) on purpose
(weighting false negatives ``w`` times moves the optimum to ``s = w p / (w p + 1 - p)``), and
even a cross-entropy network is only roughly calibrated. Every dollar figure the service
states rests on a probability, so each exported graph carries a calibration map as a second
output (``probability`` ``[N, 1]`` for a binary model, ``probabilities`` ``[N, K]`` for a
multiclass one) and the card states the map's parameters (``costaware.card.Calibration``).

This module is the one definition of what each map computes. Training fits the map with
scikit-learn and checks the graph against it; the service checks, when it loads a model,
that the graph's probability output is this function of its raw output (a graph whose map
disagrees with its card is refused). The quality figures (ECE on equal-mass bins, Brier score,
log loss, the reliability curve) are written into the card and drawn by the figures.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from costaware.card import CalibrationMap

# Scores are clipped to [LOGIT_EPS, 1 - LOGIT_EPS] before a logit (and probabilities before
# a log), since float32 graphs give exact 0 and 1 for confident rows.
LOGIT_EPS = 1e-7
# Equal-mass bins of the expected calibration error the cards report.
ECE_BINS = 15
# How far (absolute, in probability) a graph's float32 probability output may be from the
# card's map applied to the graph's own raw output before the load is refused.
GRAPH_MAP_TOLERANCE = 1e-5

BINARY_OUTPUT = "probability"
MULTICLASS_OUTPUT = "probabilities"


def logit(scores: np.ndarray) -> np.ndarray:
    """``log(s) - log(1 - s)`` of the clipped scores, in float64."""
    s = np.clip(np.asarray(scores, dtype=np.float64), LOGIT_EPS, 1.0 - LOGIT_EPS)
    return np.log(s) - np.log1p(-s)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _log_probabilities(probabilities: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(probabilities, dtype=np.float64), LOGIT_EPS, 1.0))


def apply_map(calibration: CalibrationMap, raw: np.ndarray) -> np.ndarray:
    """The map's probability for raw graph output, in float64: ``[N]`` binary scores to
    ``[N]`` probabilities, ``[N, K]`` class scores to ``[N, K]`` probabilities.

    - ``sigmoid`` (Platt on the logit, scikit-learn's ``_SigmoidCalibration``):
      ``1 / (1 + exp(a * logit(s) + b))``;
    - ``isotonic`` (scikit-learn's ``IsotonicRegression(out_of_bounds="clip")``): linear
      interpolation of ``y_thresholds`` over ``x_thresholds``, the score clipped to their
      range;
    - ``temperature``: ``softmax(log(q) / temperature)``;
    - ``vector``: ``softmax(weights * log(q) + biases)``, per class.
    """
    method = calibration.method
    if method == "sigmoid":
        f = logit(raw)
        return 1.0 / (1.0 + np.exp(calibration.a * f + calibration.b))
    if method == "isotonic":
        x = np.asarray(calibration.x_thresholds, dtype=np.float64)
        y = np.asarray(calibration.y_thresholds, dtype=np.float64)
        s = np.clip(np.asarray(raw, dtype=np.float64), x[0], x[-1])
        return np.interp(s, x, y)
    if method == "temperature":
        return _softmax(_log_probabilities(raw) / calibration.temperature)
    if method == "vector":
        weights = np.asarray(calibration.weights, dtype=np.float64)
        biases = np.asarray(calibration.biases, dtype=np.float64)
        return _softmax(_log_probabilities(raw) * weights + biases)
    raise ValueError(f"unknown calibration method {method!r}")


def prior_shift_inverse(scores: np.ndarray, weight: float) -> np.ndarray:
    """The analytic inverse of a loss that weights false negatives ``weight`` times false
    positives: ``s = w p / (w p + 1 - p)`` solved for ``p``. A baseline the card records
    beside the fitted map, not the map itself."""
    s = np.asarray(scores, dtype=np.float64)
    return s / (weight - s * (weight - 1.0))


# ---------------------------------------------------------------------------
# Quality of probabilities


def _as_binary(probabilities: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    if len(p) != len(y) or len(p) == 0:
        raise ValueError(f"{len(p)} probabilities for {len(y)} labels")
    return p, y


def _top_label(probabilities: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """Multiclass rows as (confidence of the most probable class, whether it is right)."""
    q = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    if q.ndim != 2 or len(q) != len(y) or len(q) == 0:
        raise ValueError(f"probabilities of shape {list(q.shape)} for {len(y)} labels")
    return q.max(axis=1), (q.argmax(axis=1) == y).astype(np.float64)


def reliability(probabilities: Any, labels: Any, bins: int = ECE_BINS) -> list[dict[str, Any]]:
    """Equal-mass bins of the predicted probability: per bin the mean probability, the
    observed rate of positives and the count (fewer bins when there are fewer rows).
    ``probabilities`` ``[N]`` with 0/1 labels, or ``[N, K]`` with class indices (top-label:
    the most probable class's probability against whether it is right)."""
    q = np.asarray(probabilities)
    p, y = _top_label(q, labels) if q.ndim == 2 else _as_binary(q, labels)
    order = np.argsort(p, kind="stable")
    out = []
    for chunk in np.array_split(order, min(bins, len(p))):
        out.append(
            {
                "mean_probability": float(p[chunk].mean()),
                "observed_rate": float(y[chunk].mean()),
                "count": len(chunk),
            }
        )
    return out


def expected_calibration_error(probabilities: Any, labels: Any, bins: int = ECE_BINS) -> float:
    """The count-weighted mean of ``|mean probability - observed rate|`` over
    :func:`reliability`'s equal-mass bins."""
    curve = reliability(probabilities, labels, bins)
    total = sum(item["count"] for item in curve)
    return float(
        sum(item["count"] * abs(item["mean_probability"] - item["observed_rate"]) for item in curve)
        / total
    )


def brier_score(probabilities: Any, labels: Any) -> float:
    """Mean squared error of the probabilities: ``(p - y)^2`` for a binary model, the sum
    over classes of ``(q_k - [y = k])^2`` for a multiclass one."""
    q = np.asarray(probabilities, dtype=np.float64)
    if q.ndim == 2:
        y = np.asarray(labels, dtype=np.int64).reshape(-1)
        onehot = np.eye(q.shape[1])[y]
        return float(((q - onehot) ** 2).sum(axis=1).mean())
    p, y = _as_binary(q, labels)
    return float(((p - y) ** 2).mean())


def log_loss(probabilities: Any, labels: Any) -> float:
    """Mean negative log probability of the true class (probabilities clipped to
    ``[LOGIT_EPS, 1 - LOGIT_EPS]``)."""
    q = np.asarray(probabilities, dtype=np.float64)
    if q.ndim == 2:
        y = np.asarray(labels, dtype=np.int64).reshape(-1)
        true = q[np.arange(len(y)), y]
    else:
        p, y = _as_binary(q, labels)
        true = np.where(y == 1, p, 1.0 - p)
    return float(-np.log(np.clip(true, LOGIT_EPS, 1.0 - LOGIT_EPS)).mean())


def quality(probabilities: Any, labels: Any) -> dict[str, Any]:
    """ECE, Brier score, log loss and the reliability curve: the card's
    ``calibration.held_out.before`` / ``after`` entries."""
    return {
        "ece": expected_calibration_error(probabilities, labels),
        "brier": brier_score(probabilities, labels),
        "log_loss": log_loss(probabilities, labels),
        "reliability": reliability(probabilities, labels),
    }
