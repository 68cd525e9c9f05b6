"""The log's rows of binary answers (entries' Python path) against the numpy rule
(costaware.realized.decision_moments) on the same probabilities, matrices and decisions."""

from __future__ import annotations

import numpy as np
import pytest

from costaware.realized import decision_moments
from service.dataplane import DataPlane, PredictInputs
from service.decisionlog import entries
from service.lifecycle import ModelLifecycle
from service.registry import session_options
from service.settings import Settings


@pytest.fixture(scope="module")
def plane() -> DataPlane:
    settings = Settings(decision_log="off")
    lifecycle = ModelLifecycle.start_up(
        settings.resolved_model_dir(), settings.default_model, session_options(1, 1)
    )
    return DataPlane(lifecycle.registry)


def _instances(plane: DataPlane, n: int) -> list[list[float]]:
    card = plane.registry.get("medical").card
    low = np.array([r.min for r in card.feature_ranges])
    high = np.array([r.max for r in card.feature_ranges])
    rng = np.random.default_rng(7)
    return (low + (high - low) * rng.random((n, len(low)))).tolist()


@pytest.mark.parametrize(
    "cost_matrix",
    [
        None,  # a threshold decision, valued under the card's matrix
        {"tp": 500.0, "fp": -120.5, "tn": 0.0, "fn": -3000.0},
        {"tp": [500.0, 10.0, 0.0], "fp": [-1.0, -2.0, -3.0], "tn": 0.0, "fn": [-9.0, -8.0, -7.5]},
    ],
)
def test_binary_rows_equal_the_numpy_rule(plane, cost_matrix):
    inputs = PredictInputs(instances=_instances(plane, 3), model="medical", cost_matrix=cost_matrix)
    answer = plane.predict_now(inputs)
    card_matrix = getattr(plane.registry.get("medical").card, "cost_matrix", None)
    rows = entries.rows(answer, ["a", "b", "c"], 1, card_matrix)
    matrix, source = entries.value_matrices(answer, card_matrix)
    assert matrix is not None
    p = entries.probabilities_of(answer)
    decisions = [row["decision"] for row in rows]
    expected, variance = decision_moments(p, matrix, decisions)
    assert [row["probabilities"] for row in rows] == p.tolist()
    assert [row["matrix"] for row in rows] == np.asarray(matrix).tolist()
    assert [row["expected_value"] for row in rows] == expected.tolist()
    assert [row["variance"] for row in rows] == variance.tolist()
    assert {row["matrix_source"] for row in rows} == {source}
