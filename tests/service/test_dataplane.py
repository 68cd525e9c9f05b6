"""The data plane without HTTP: plain inputs in, result objects out, the same answers the
routes give, and no web framework imported by it or by the registry."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import numpy as np
import pytest
from _servicekit import FEATURES, SHIPPED

from costaware.economics import CostMatrix
from service.dataplane import DataPlane, EvaluateInputs, PredictInputs
from service.errors import InvalidInputError, NotFoundError
from service.registry import ModelRegistry, session_options


@pytest.fixture(scope="module")
def dataplane(model_dir) -> DataPlane:
    return DataPlane(ModelRegistry.load(model_dir, "medical", session_options()))


@pytest.mark.parametrize("module", ["service.dataplane", "service.registry", "costaware.decision"])
def test_imports_no_web_framework(module):
    code = (
        f"import sys, {module}\n"
        "print(sorted(m for m in ('fastapi', 'starlette') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_predict_equals_the_oracle_for_arrays_objects_and_matrices(dataplane, specs, instances):
    expected = specs["builtin"].expected_scores(instances)
    as_objects = [dict(zip(FEATURES, row, strict=True)) for row in instances.tolist()]
    for given in (instances, instances.tolist(), as_objects):
        result = dataplane.predict_now(PredictInputs(instances=given, model="builtin"))
        np.testing.assert_allclose(result.scores, expected, rtol=1e-5, atol=1e-6)
        assert result.labels == [bool(s >= 0.5) for s in result.scores.tolist()]
        assert result.close == [abs(s - 0.5) < 0.1 for s in result.scores.tolist()]
        assert (result.model, result.threshold, result.margin) == ("builtin", 0.5, 0.1)


def test_predict_through_the_batch_scorer_equals_predict_now(dataplane, instances):
    inputs = PredictInputs(instances=instances[:3].tolist(), threshold=0.2, margin=0.3)
    alone = dataplane.predict_now(inputs)
    shared = asyncio.run(dataplane.predict(inputs))
    assert alone.model == shared.model == "medical"  # the default model
    np.testing.assert_array_equal(alone.scores, shared.scores)
    assert (alone.labels, alone.close) == (shared.labels, shared.close)
    assert (shared.threshold, shared.margin) == (0.2, 0.3)


def test_refusals_are_service_errors_naming_where(dataplane):
    with pytest.raises(InvalidInputError, match=r"instances\[0\]: expected 30 values, got 2"):
        dataplane.predict_now(PredictInputs(instances=[[1.0, 2.0]]))
    with pytest.raises(InvalidInputError, match="takes 30 features per instance, got 2"):
        dataplane.predict_now(PredictInputs(instances=np.zeros((1, 2))))
    with pytest.raises(NotFoundError, match="'nope'"):
        dataplane.predict_now(PredictInputs(instances=[[0.0] * 30], model="nope"))


def test_evaluate_posted_scores_and_held_out(dataplane):
    costs = CostMatrix(tp=10.0, fp=-1.0, tn=0.0, fn=-20.0)
    posted = dataplane.evaluate(
        EvaluateInputs(cost_matrix=costs, scores=[0.9, 0.2, 0.6], labels=[1, 0, 0])
    ).summary()
    assert posted["data"] == "scores"
    (entry,) = posted["results"]
    # 0.9 -> tp (+10), 0.2 -> tn (0), 0.6 -> fp (-1) at the default threshold 0.5
    assert entry["total_value"] == pytest.approx(9.0)
    held = dataplane.evaluate(EvaluateInputs(cost_matrix=costs)).summary()
    assert held["data"] == "held_out"
    assert [r["model"] for r in held["results"]] == ["builtin", "custom-5to1", "medical"]


@pytest.mark.parametrize(
    "case", ["one inside", "eight inside", "nine inside", "ints", "one outside", "bool", "short"]
)
def test_the_quick_check_of_a_few_instances_agrees_with_the_general_one(case, monkeypatch):
    """DataPlane._few_inside answers the usual request without numpy; whatever it takes,
    the job (matrix, flags) or the refusal equals the general path's."""
    from sklearn.datasets import load_breast_cancer

    from service.registry import ModelRegistry

    data = load_breast_cancer().data
    rows = {
        "one inside": data[:1].tolist(),
        "eight inside": data[:8].tolist(),
        "nine inside": data[:9].tolist(),
        "ints": [[round(v) + 1 for v in data[0].tolist()]],
        "one outside": [data[0].tolist(), [*data[1].tolist()[:-1], 1e6]],
        "bool": [[True, *data[0].tolist()[1:]]],
        "short": [data[0].tolist()[:-1]],
    }[case]
    dataplane = DataPlane(ModelRegistry.load(SHIPPED, "medical"))
    inputs = PredictInputs(instances=rows)

    def prepared():
        try:
            job = dataplane.prepare(inputs)
        except Exception as exc:
            return type(exc), str(exc)
        # The whole job but the row namer (a bound method); repr so that NaN equals NaN.
        fields = {k: v for k, v in vars(job).items() if k not in ("x", "row_name")}
        return job.x.dtype, job.x.tolist(), repr(fields)

    quick = prepared()
    monkeypatch.setattr(DataPlane, "_few_inside", lambda *_args: False)
    assert prepared() == quick
