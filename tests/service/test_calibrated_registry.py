"""A calibrated model folder is served with both graph outputs from one session call; a card
whose calibrated output is missing, or whose map disagrees with the graph, is refused with
the reason while the other folders serve."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from _calibrated import SIGMOID, TEMPERATURE, graph_outputs, write_calibrated, write_uncalibrated
from _servicekit import SHIPPED
from sklearn.datasets import load_breast_cancer

from service.batching import BatchScorer
from service.lifecycle import warm_up
from service.registry import ModelRefusedError, ModelRegistry, load_model, session_options


def loaded(folder: Path):
    model = load_model(folder, session_options())
    warm_up(model)
    return model


def test_a_calibrated_model_gives_score_and_probability_from_one_call(tmp_path):
    folder = tmp_path / "medical"
    write_calibrated(folder)
    model = loaded(folder)
    x = load_breast_cancer().data[:50]
    calls = []
    run = model._run[0]
    model.__dict__["_run"] = (
        lambda *args: calls.append(1) or run(*args),
        *model._run[1:],
    )
    raw, probability = model.split(model.outputs(x))
    assert len(calls) == 1
    expected = graph_outputs(folder, x)
    assert model.calibrated
    assert np.array_equal(raw, expected["score"].reshape(-1))
    assert np.array_equal(probability, expected["probability"].reshape(-1))
    assert np.array_equal(model.raw_scores(x), raw)  # the raw output as before


def test_a_calibrated_multiclass_model_gives_both_class_rows(tmp_path):
    folder = tmp_path / "wine"
    write_calibrated(folder, "wine")
    model = loaded(folder)
    x = np.asarray(
        [[(r["p0_5"] + r["p99_5"]) / 2 for r in model.card.model_dump()["feature_ranges"]]] * 3
    )
    raw, calibrated = model.split(model.outputs(x))
    expected = graph_outputs(folder, x)
    assert np.array_equal(raw, expected["scores"])
    assert np.array_equal(calibrated, expected["probabilities"])


def test_an_uncalibrated_model_is_served_as_before(tmp_path):
    write_uncalibrated(tmp_path / "medical", "medical")
    model = loaded(tmp_path / "medical")
    x = load_breast_cancer().data[:5]
    assert not model.calibrated
    raw, probability = model.split(model.outputs(x))
    assert probability is None
    assert np.array_equal(raw, graph_outputs(SHIPPED / "medical", x)["score"].reshape(-1))


def test_the_shipped_models_are_calibrated_and_serve_their_graphs_probability():
    for name in ("builtin", "custom-5to1", "medical", "tuned", "wine"):
        model = loaded(SHIPPED / name)
        assert model.calibrated, name
    model = loaded(SHIPPED / "medical")
    x = load_breast_cancer().data[:5]
    raw, probability = model.split(model.outputs(x))
    expected = graph_outputs(SHIPPED / "medical", x)
    assert np.array_equal(raw, expected["score"].reshape(-1))
    assert np.array_equal(probability, expected["probability"].reshape(-1))


def test_a_card_whose_probability_output_is_missing_is_refused(tmp_path):
    folder = tmp_path / "medical"
    write_calibrated(folder, with_output=False)
    with pytest.raises(ModelRefusedError, match="graph has no output named 'probability'"):
        loaded(folder)


@pytest.mark.parametrize(
    ("source", "graph_map", "method"),
    [
        ("medical", {**SIGMOID, "b": SIGMOID["b"] + 0.01}, "sigmoid"),
        ("medical", {**SIGMOID, "a": -SIGMOID["a"]}, "sigmoid"),
        ("wine", {**TEMPERATURE, "temperature": 1.0}, "temperature"),
    ],
)
def test_a_graph_whose_map_disagrees_with_its_card_is_refused(tmp_path, source, graph_map, method):
    folder = tmp_path / source
    write_calibrated(folder, source, graph_map=graph_map)
    with pytest.raises(ModelRefusedError, match=f"disagrees with the card's {method} calibration"):
        loaded(folder)


def test_at_start_up_the_refused_folders_say_why_and_the_others_serve(tmp_path):
    write_calibrated(tmp_path / "medical")
    write_calibrated(tmp_path / "missing", with_output=False)
    write_calibrated(tmp_path / "wrong", graph_map={**SIGMOID, "b": 0.0})
    write_uncalibrated(tmp_path / "builtin")
    registry = ModelRegistry.load(tmp_path, "medical", accept=lambda files, model: warm_up(model))
    assert registry.names() == ["builtin", "medical"]
    assert registry.get("medical").calibrated and not registry.get("builtin").calibrated
    assert "no output named 'probability'" in registry.refused[str(tmp_path / "missing")]
    assert "disagrees with the card's sigmoid" in registry.refused[str(tmp_path / "wrong")]


def test_batched_requests_get_their_own_rows_of_both_outputs(tmp_path):
    folder = tmp_path / "medical"
    write_calibrated(folder)
    model = loaded(folder)
    x = load_breast_cancer().data[:9]
    calls: list[int] = []
    scorer = BatchScorer(observe_call=lambda name, rows: calls.append(rows))
    scorer._company = True  # every request waits for the turn's company

    async def together() -> list[np.ndarray]:
        parts = [x[0:2], x[2:3], x[3:9]]
        return await asyncio.gather(*(scorer.score(model, part) for part in parts))

    results = asyncio.run(together())
    assert calls == [9]  # one session call for the three requests
    expected = graph_outputs(folder, x)
    raw, probability = model.split(np.concatenate(results))
    assert np.array_equal(raw, expected["score"].reshape(-1))
    assert np.array_equal(probability, expected["probability"].reshape(-1))
