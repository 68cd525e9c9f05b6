"""``/evaluate`` on a calibrated model: Elkan's t* row and the per-instance optimal decisions
are taken on the probability (the card's held-out probabilities; the graph's for posted
instances), the threshold figures stay on the score; posted scores are taken as given."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _calibrated import EVEN, graph_outputs
from sklearn.datasets import load_breast_cancer

from costaware import economics
from costaware.economics import CostMatrix


def value_of(labels: np.ndarray, treat: np.ndarray, m: dict[str, float]) -> float:
    """Mean dollar value of the decisions ``treat`` against ``labels``."""
    values = np.where(
        treat, np.where(labels == 1, m["tp"], m["fp"]), np.where(labels == 1, m["fn"], m["tn"])
    )
    return float(values.mean())


def entry(answer: dict, name: str) -> dict:
    return next(r for r in answer["results"] if r["model"] == name)


def test_held_out_elkan_row_is_decided_on_the_cards_probabilities(
    calibrated_client, calibrated_dir
):
    card = json.loads((calibrated_dir / "medical" / "model-card.json").read_bytes())
    labels = np.asarray(card["held_out"]["labels"])
    p = np.asarray(card["held_out"]["probabilities"])
    s = np.asarray(card["held_out"]["scores"])
    answer = calibrated_client.post("/evaluate", json={"cost_matrix": EVEN}).json()
    medical, builtin = entry(answer, "medical"), entry(answer, "builtin")
    assert medical["calibrated"] is True and builtin["calibrated"] is False
    assert medical["elkan_threshold"]["applied_to"] == "probability"
    assert builtin["elkan_threshold"]["applied_to"] == "score"
    expected = value_of(labels, p >= 0.5, EVEN)
    assert medical["elkan_threshold"]["expected_value"] == pytest.approx(expected, abs=1e-9)
    assert value_of(labels, s >= 0.5, EVEN) != pytest.approx(expected)  # the test can tell
    # The threshold figures stay on the score.
    single = economics.evaluate(labels, s, CostMatrix.from_mapping(EVEN), card["threshold"])
    assert medical["confusion"] == single["confusion"]
    assert medical["best_threshold"] == single["best_threshold"]


def test_posted_instances_are_decided_on_the_graphs_probability(calibrated_client, calibrated_dir):
    data = load_breast_cancer()
    x, labels = data.data[::3], (data.target[::3] == 0).astype(int)
    out = graph_outputs(calibrated_dir / "medical", x)
    p = out["probability"].astype(np.float64).reshape(-1)
    per_instance = {**EVEN, "fn": np.linspace(-50, -200, len(x)).tolist()}
    answer = calibrated_client.post(
        "/evaluate",
        json={
            "models": ["medical"],
            "instances": x.tolist(),
            "labels": labels.tolist(),
            "cost_matrix": per_instance,
        },
    ).json()
    optimal = entry(answer, "medical")["optimal_decision"]
    fn = np.asarray(per_instance["fn"])
    oracle = p * 0.0 + (1 - p) * -100.0 >= p * fn  # treat when its expected value is higher
    assert optimal["decisions"] == oracle.astype(int).tolist()
    s = out["score"].astype(np.float64).reshape(-1)
    assert (oracle != (s * 0.0 + (1 - s) * -100.0 >= s * fn)).sum() >= 3


def test_posted_scores_are_taken_as_given(calibrated_client):
    scores, labels = [0.1, 0.4, 0.6, 0.9], [0, 1, 0, 1]
    answer = calibrated_client.post(
        "/evaluate", json={"scores": scores, "labels": labels, "cost_matrix": EVEN}
    ).json()
    (result,) = answer["results"]
    assert result["calibrated"] is None
    assert result["elkan_threshold"]["applied_to"] == "score"
    expected = value_of(np.asarray(labels), np.asarray(scores) >= 0.5, EVEN)
    assert result["elkan_threshold"]["expected_value"] == pytest.approx(expected)


def test_batch_evaluate_decides_elkans_row_on_the_probability(
    cluster, calibrated_dir, calibrated_client, tmp_path
):
    from service.batch.jobs import EvaluateOptions, Inputs, evaluate_files

    data = load_breast_cancer()
    x, labels = data.data, (data.target == 0).astype(int)
    lines = [f"{y}," + ",".join(map(repr, row.tolist())) for y, row in zip(labels, x, strict=True)]
    path = tmp_path / "plain.csv"  # as /evaluate takes it: no header, the label first
    path.write_text("\n".join(lines) + "\n")
    with_header = tmp_path / "labeled.csv"  # as the batch takes it: named columns
    features = json.loads((calibrated_dir / "medical" / "model-card.json").read_bytes())["features"]
    with_header.write_text("\n".join([",".join(["label", *features]), *lines]) + "\n")
    costs = CostMatrix.from_mapping(EVEN)
    inputs = Inputs([str(with_header)], model_dir=calibrated_dir, partition_bytes=20_000)
    batch = evaluate_files(cluster, inputs, costs, EvaluateOptions(models=["medical"]))
    (result,) = batch["results"]
    p = graph_outputs(calibrated_dir / "medical", x)["probability"].astype(np.float64).reshape(-1)
    assert result["calibrated"] is True
    assert result["elkan_threshold"]["applied_to"] == "probability"
    expected = value_of(labels, p >= 0.5, EVEN)
    assert result["elkan_threshold"]["expected_value"] == pytest.approx(expected, abs=1e-9)
    single = calibrated_client.post(
        "/evaluate?models=medical&" + "&".join(f"{k}={v}" for k, v in EVEN.items()),
        content=path.read_bytes(),
        headers={"content-type": "text/csv"},
    ).json()
    assert result["elkan_threshold"] == pytest.approx(entry(single, "medical")["elkan_threshold"])


@pytest.mark.parametrize("output_format", ["parquet", "csv"])
def test_batch_part_files_carry_the_probability(cluster, calibrated_dir, tmp_path, output_format):
    import pyarrow.parquet as pq

    from service.batch.jobs import Inputs, score_files

    x = load_breast_cancer().data[::2]
    features = json.loads((calibrated_dir / "medical" / "model-card.json").read_bytes())["features"]
    source = tmp_path / "rows.csv"
    rows = [",".join(map(repr, row.tolist())) for row in x]
    source.write_text("\n".join([",".join(features), *rows]) + "\n")
    out = tmp_path / "out"
    inputs = Inputs([str(source)], model_dir=calibrated_dir, partition_bytes=20_000)
    score_files(cluster, inputs, str(out), model="medical", output_format=output_format)
    expected = graph_outputs(calibrated_dir / "medical", x)["probability"].reshape(-1)
    if output_format == "parquet":
        parts = [pq.read_table(p) for p in sorted(out.glob("part-*.parquet"))]
        assert all(part.column_names[-1] == "probability" for part in parts)
        got = np.concatenate([part.column("probability").to_numpy() for part in parts])
        assert np.array_equal(got, expected)
    else:
        got = []
        for part in sorted(out.glob("part-*.csv")):
            header, *lines = part.read_text().splitlines()
            assert header == "score,label,close_confusion,out_of_range,probability"
            got += [np.float32(line.rsplit(",", 1)[1]) for line in lines]
        assert np.array_equal(np.asarray(got, dtype=np.float32), expected)
