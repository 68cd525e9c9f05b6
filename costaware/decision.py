"""The decision rule and its defaults, defined once for training, the service and batch.

A score is the model's probability of the positive class (1). The decision is
``label = score >= threshold``; a decision is a close confusion when
``|score - threshold| < margin``. Only a finite score in [0, 1] can be decided on: a NaN
compares false with every threshold, so ``score >= threshold`` would quietly answer
"negative" for a score that carries no information.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

DEFAULT_THRESHOLD = 0.5
DEFAULT_MARGIN = 0.1
# A model's name: what a card, a model folder, the settings' default and a request use.
# MODEL_NAME_PATTERN is for JSON Schema and pydantic, whose `$` is the end of the text;
# Python's `$` also matches before a trailing newline, so MODEL_NAME_RE ends at `\Z`.
MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
MODEL_NAME_RE = re.compile(MODEL_NAME_PATTERN.removesuffix("$") + r"\Z")


def decide(scores: ArrayLike, threshold: float) -> NDArray[np.bool_]:
    """``label = score >= threshold`` for an array of scores."""
    return np.asarray(scores) >= threshold


def close_to_threshold(scores: ArrayLike, threshold: float, margin: float) -> NDArray[np.bool_]:
    """``|score - threshold| < margin``: decisions a small change in the score would flip."""
    return np.abs(np.asarray(scores) - threshold) < margin


def decide_each(scores: Sequence[float], threshold: float) -> list[bool]:
    """:func:`decide` on Python floats: on a one-instance request every numpy call costs
    more than the comparison it stands for."""
    return [score >= threshold for score in scores]


def close_each(scores: Sequence[float], threshold: float, margin: float) -> list[bool]:
    """:func:`close_to_threshold` on Python floats."""
    return [abs(score - threshold) < margin for score in scores]


def is_probability(score: float) -> bool:
    """True for a finite number in [0, 1], the only kind of score a decision is made on."""
    return 0.0 <= score <= 1.0  # false for NaN; +-inf fall outside


def not_probabilities(scores: ArrayLike) -> NDArray[np.intp]:
    """Indices of the scores that are not a finite number in [0, 1] (NaN, +-inf, or
    outside the unit interval)."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    return np.flatnonzero(~((s >= 0.0) & (s <= 1.0)))


# A graph's float32 sigmoid or softmax may land a few units in the last place outside
# [0, 1] (1 + 2**-23 was seen from onnxruntime on some CPUs for a confidently positive
# row): that is a probability of 1, not a refusal. 2**-20 is 8 such units at 1.0.
FLOAT32_ROUNDING = 2.0**-20


def snap_rounding(scores: NDArray[np.floating]) -> NDArray[np.floating]:
    """``scores`` with values within :data:`FLOAT32_ROUNDING` outside [0, 1] set to the
    bound they missed; NaN, infinities and values further outside are left as they are
    (and refused by the rule)."""
    if all_probabilities(scores):
        return scores
    low, high = -FLOAT32_ROUNDING, 1.0 + FLOAT32_ROUNDING
    snapped = np.where((scores > 1.0) & (scores <= high), 1.0, scores)
    return np.where((snapped < 0.0) & (snapped >= low), 0.0, snapped).astype(scores.dtype)


def all_probabilities(scores: NDArray[np.floating]) -> bool:
    """One pass for the common case: every score is a finite number in [0, 1]. The ufuncs'
    own reduce, because on a one-element array ``ndarray.min`` costs more than the check."""
    if scores.size == 0:
        return True
    low = float(np.minimum.reduce(scores, axis=None))
    high = float(np.maximum.reduce(scores, axis=None))
    # minimum/maximum propagate NaN, which fails both comparisons.
    return low >= 0.0 and high <= 1.0
