"""The decision rule, its defaults and the model-name pattern, defined once."""

from __future__ import annotations

import math

import numpy as np
import pytest

from costaware import decision
from costaware.card import ModelCard
from service.settings import Settings
from training.variants import NAME_PATTERN


def test_array_and_list_forms_agree():
    scores = np.array([0.0, 0.29999, 0.3, 0.35, 0.5, 1.0])
    assert decision.decide(scores, 0.3).tolist() == decision.decide_each(scores.tolist(), 0.3)
    assert decision.close_to_threshold(scores, 0.3, 0.05).tolist() == decision.close_each(
        scores.tolist(), 0.3, 0.05
    )
    assert decision.decide_each([0.3], 0.3) == [True]  # at the threshold: positive


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, -1e-9, 1.0000001])
def test_only_finite_probabilities_are_decidable(bad):
    assert not decision.is_probability(bad)
    scores = np.array([0.5, bad, 0.0, 1.0], dtype=np.float32)
    assert not decision.all_probabilities(scores)
    assert decision.not_probabilities(scores).tolist() == [1]


def test_finite_probabilities_pass():
    assert decision.all_probabilities(np.array([0.0, 0.5, 1.0], dtype=np.float32))
    assert decision.not_probabilities(np.array([0.0, 1.0])).tolist() == []


def test_one_definition_of_defaults_and_name_pattern():
    fields = ModelCard.model_fields
    assert fields["threshold"].default == decision.DEFAULT_THRESHOLD
    assert fields["margin"].default == decision.DEFAULT_MARGIN
    assert NAME_PATTERN is decision.MODEL_NAME_RE
    assert Settings.model_fields["default_model"].metadata[0].pattern == (
        decision.MODEL_NAME_PATTERN
    )


def test_float32_rounding_just_outside_the_unit_interval_snaps_to_the_bound():
    one_ulp_above = np.float32(1) + np.finfo(np.float32).eps  # 1 + 2**-23
    scores = np.array([one_ulp_above, -(2.0**-24), 0.3, 1.0, 0.0], dtype=np.float32)
    snapped = decision.snap_rounding(scores)
    assert snapped.dtype == np.float32
    assert snapped.tolist() == [1.0, 0.0, np.float32(0.3), 1.0, 0.0]
    assert decision.all_probabilities(snapped)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 1.0 + 2.0**-19, -(2.0**-19), 2.0])
def test_snapping_leaves_what_is_not_rounding_to_be_refused(bad):
    scores = np.array([0.5, bad], dtype=np.float32)
    snapped = decision.snap_rounding(scores)
    assert decision.not_probabilities(snapped).tolist() == [1]


def test_snapping_returns_valid_scores_untouched():
    scores = np.array([[0.2, 0.8], [1.0, 0.0]], dtype=np.float32)
    assert decision.snap_rounding(scores) is scores


@pytest.mark.parametrize("name", ["medical\n", "wine\n", "a\n"])
def test_a_trailing_newline_is_not_part_of_a_model_name(name):
    # Python's `$` matches before a trailing newline; the name check must not.
    from costaware.decision import MODEL_NAME_RE

    assert MODEL_NAME_RE.match(name) is None
    assert MODEL_NAME_RE.match(name.strip()) is not None
