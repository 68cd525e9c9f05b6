"""The data plane: predictions and evaluations on plain Python and numpy inputs.

No HTTP here. Routes decode a request into :class:`PredictInputs` or
:class:`EvaluateInputs`, call :class:`DataPlane`, and encode the result object it returns;
the load benchmark, the batch engine and tests call the same methods without a server.
The two parts are one module each: :mod:`service.prediction` (instances in, decisions
out) and :mod:`service.evaluation` (decisions valued against labels); this module joins
them over one registry and keeps the names other code imports from it.
"""

from __future__ import annotations

from service.evaluation import (
    EvaluateInputs,
    Evaluation,
    EvaluationSource,
    Evaluator,
    MulticlassEvaluateInputs,
    MulticlassEvaluation,
    Plot,
    Target,
    calibration_head,
    held_out_targets,
    summarize,
)
from service.prediction import (
    OnOutOfRange,
    OutOfRange,
    PredictInputs,
    Predictions,
    Predictor,
    ScoringJob,
    ValuedRequest,
    checked_outputs,
    non_finite_error,
    out_of_range_error,
)
from service.valuation import ValuedPredictions

__all__ = [
    "DataPlane",
    "EvaluateInputs",
    "Evaluation",
    "EvaluationSource",
    "MulticlassEvaluateInputs",
    "MulticlassEvaluation",
    "OnOutOfRange",
    "OutOfRange",
    "Plot",
    "PredictInputs",
    "Predictions",
    "ScoringJob",
    "Target",
    "ValuedPredictions",
    "ValuedRequest",
    "calibration_head",
    "checked_outputs",
    "held_out_targets",
    "non_finite_error",
    "out_of_range_error",
    "summarize",
]


class DataPlane(Predictor, Evaluator):
    """Predictions and evaluations over the registry's models; counts what it serves."""
