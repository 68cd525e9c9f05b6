"""Per-instance binary decisions from a cost matrix, in pure numpy.

With a calibrated score ``p`` (the probability of the positive class) and the dollar
value of each outcome, the expected value of each action is

- treat (decide 1):      ``EV_1 = p*v_tp + (1-p)*v_fp``
- not treat (decide 0):  ``EV_0 = p*v_fn + (1-p)*v_tn``

and the best action is to treat iff ``p*(v_tp - v_fn) >= (1-p)*(v_tn - v_fp)`` (ties:
treat). With one matrix for every instance this is thresholding at Elkan's t*; with
per-instance values (a fraud amount, say) every instance has its own threshold.

The decision is *close* when the two expected values are closer than a margin **in the
matrix's value unit (dollars per instance)**: ``|EV_1 - EV_0| < margin``. Since
``EV_1 - EV_0 = (a + b)(p - t*)`` with ``a = v_tn - v_fp``, ``b = v_tp - v_fn``, a score
margin ``m`` (the threshold mode's unit) corresponds to the value margin ``m*(a + b)``;
:func:`value_margin_from_score_margin` gives it, so a model card's score margin can serve
as the default.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from costaware.economics import CostMatrix, EconomicsError, as_scores, elkan_threshold

# Action names in answers: the label the action stands for.
NOT_TREAT = "0"
TREAT = "1"


@dataclass(frozen=True)
class BinaryDecisions:
    """Per instance: the decision (True = treat), each action's expected value, the gap
    between them and whether it is under the margin."""

    treat: NDArray[np.bool_]
    value_treat: NDArray[np.float64]
    value_not_treat: NDArray[np.float64]
    close: NDArray[np.bool_]

    @property
    def gap(self) -> NDArray[np.float64]:
        """``|EV_1 - EV_0|`` in the matrix's value unit."""
        return np.abs(self.value_treat - self.value_not_treat)


def _margin(margin: ArrayLike, n: int, field: str) -> NDArray[np.float64]:
    array = np.asarray(margin, dtype=np.float64)
    if array.ndim > 1 or (array.ndim == 1 and len(array) != n):
        raise EconomicsError(field, f"expected a number or {n} numbers")
    if not np.isfinite(array).all():
        raise EconomicsError(field, "is not a finite number")
    if (array < 0).any():
        raise EconomicsError(field, "must be >= 0")
    return np.broadcast_to(array, (n,))


def value_margin_from_score_margin(
    score_margin: float, costs: CostMatrix, n: int
) -> NDArray[np.float64]:
    """The value margin (dollars, per instance) equivalent to ``|p - t*_i| < score_margin``:
    ``score_margin * |(v_tn - v_fp) + (v_tp - v_fn)|``."""
    gain_pos, gain_neg = costs.treat_gain()
    width = np.abs(np.asarray(gain_pos, dtype=np.float64) + gain_neg)
    return np.broadcast_to(float(score_margin) * width, (n,)).astype(np.float64)


def decide_binary(scores: ArrayLike, costs: CostMatrix, margin: ArrayLike) -> BinaryDecisions:
    """The action with the higher expected value for each instance (ties: treat).

    ``scores``: probabilities of the positive class; ``costs``: scalars or one value per
    instance; ``margin``: dollars per instance (a number, or one per instance).
    """
    s = as_scores(scores)
    costs.check_length(len(s))
    if costs.per_instance:
        gain_pos, gain_neg = costs.treat_gain()
        treat = s * gain_pos >= (1.0 - s) * gain_neg
    else:
        # The same rule, as the threshold it reduces to: a score exactly at t* (as a float)
        # is treated, as thresholding at t* treats it, whatever the products round to.
        treat = elkan_threshold(costs).decide(s)
    value_treat = s * costs.tp + (1.0 - s) * costs.fp
    value_not = s * costs.fn + (1.0 - s) * costs.tn
    value_treat = np.broadcast_to(np.asarray(value_treat, dtype=np.float64), s.shape)
    value_not = np.broadcast_to(np.asarray(value_not, dtype=np.float64), s.shape)
    close = np.abs(value_treat - value_not) < _margin(margin, len(s), "margin")
    return BinaryDecisions(
        treat=np.asarray(treat, dtype=bool),
        value_treat=value_treat,
        value_not_treat=value_not,
        close=close,
    )
