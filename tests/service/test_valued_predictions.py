"""Decisions by expected value in the service: a binary model with a posted cost matrix,
and the shipped multiclass model (models/wine), on /predict, /invocations and /evaluate.

Expected figures are computed here with numpy from the graph's own outputs (onnxruntime on
models/<name>/model.onnx) or the card's held-out rows, independently of
costaware.core (binary and K-class decisions). The shipped models are calibrated: every
decision by expected value is taken on the calibrated probability output, the threshold
label on the raw score."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from _servicekit import DATA, SHIPPED
from fastapi.testclient import TestClient

from costaware.card import read_any_card
from service.app import create_app
from service.settings import Settings

QALY = {"tp": -35280.0, "fp": -1287.67, "tn": 0.0, "fn": -252000.0}
WINE = read_any_card(SHIPPED / "wine")
CLASSES = WINE.classes
VALUES = np.asarray(WINE.value_matrix.values)


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(Settings(model_dir=SHIPPED))) as client:
        yield client


@pytest.fixture(scope="module")
def cancer_rows():
    from sklearn.datasets import load_breast_cancer

    return load_breast_cancer().data[::7].tolist()  # 82 rows, both classes


@pytest.fixture(scope="module")
def wine_rows():
    from sklearn.datasets import load_wine

    data = load_wine()
    return data.data[::3].tolist(), data.target[::3].tolist()


def post(client, path, body, **headers):
    response = client.post(path, json=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def graph_outputs(name, rows):
    """The shipped graph's own outputs for ``rows``, by output name, float32 as it gives
    them (binary: ``score`` and ``probability``, [N, 1]; multiclass: ``scores`` and
    ``probabilities``, [N, K])."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(SHIPPED / name / "model.onnx"))
    x = np.asarray(rows, dtype=np.float32)
    names = [output.name for output in session.get_outputs()]
    outputs = session.run(None, {session.get_inputs()[0].name: x})
    return dict(zip(names, outputs, strict=True))


def as_float32(values):
    """Answer numbers (each the shortest decimal of a float32) back to float32."""
    return np.asarray(values, dtype=np.float64).astype(np.float32)


# ---------------------------------------------------------------------------------------
# Binary, per request


def test_constant_matrix_decides_at_elkans_threshold(client, cancer_rows):
    answer = post(
        client, "/predict", {"model": "medical", "instances": cancer_rows, "cost_matrix": QALY}
    )
    assert answer["calibrated"] is True
    a, b = QALY["tn"] - QALY["fp"], QALY["tp"] - QALY["fn"]
    t_star = a / (a + b)
    graph = graph_outputs("medical", cancer_rows)
    scores = graph["score"].ravel().astype(np.float64)
    probability = graph["probability"].ravel().astype(np.float64)
    predictions = answer["predictions"]
    # the answer shows the graph's two outputs, each as its float32
    np.testing.assert_array_equal(
        as_float32([p["score"] for p in predictions]), graph["score"].ravel()
    )
    np.testing.assert_array_equal(
        as_float32([p["probability"] for p in predictions]), graph["probability"].ravel()
    )
    decisions = np.array([p["decision"] for p in predictions])
    assert 0 < (probability >= t_star).sum() < len(probability)  # the rows decide both ways
    # the decision is on the probability, and the score would decide some rows otherwise
    np.testing.assert_array_equal(decisions, probability >= t_star)
    assert (decisions != (scores >= t_star)).any()
    for p, q in zip(predictions, probability, strict=True):
        assert p["label"] == p["decision"]
        assert p["expected_values"]["1"] == pytest.approx(q * QALY["tp"] + (1 - q) * QALY["fp"])
        assert p["expected_values"]["0"] == pytest.approx(q * QALY["fn"] + (1 - q) * QALY["tn"])
    # default margin: the card's score margin in dollars, i.e. |probability - t*| < 0.1
    close = np.array([p["close_confusion"] for p in predictions])
    edge = np.abs(np.abs(probability - t_star) - 0.1) > 1e-6
    np.testing.assert_array_equal(close[edge], (np.abs(probability - t_star) < 0.1)[edge])
    assert answer["cost_matrix"] == "request" and answer["margin_unit"].startswith("value")
    assert "|probability - t*| < 0.1" in answer["margin_note"]


def test_per_instance_matrix_equals_a_search_over_both_actions(client, cancer_rows):
    rng = np.random.default_rng(5)
    n = len(cancer_rows)
    costs = {k: rng.uniform(-1000, 1000, n).round(2).tolist() for k in ("tp", "fp", "tn", "fn")}
    body = {"model": "builtin", "instances": cancer_rows, "cost_matrix": costs, "margin": 50}
    answer = post(client, "/predict", body)
    assert answer["calibrated"] is True
    probability = graph_outputs("builtin", cancer_rows)["probability"].ravel()
    for i, (p, q) in enumerate(zip(answer["predictions"], probability.tolist(), strict=True)):
        assert np.float32(p["probability"]) == np.float32(q)
        treat = q * costs["tp"][i] + (1 - q) * costs["fp"][i]
        not_treat = q * costs["fn"][i] + (1 - q) * costs["tn"][i]
        assert p["decision"] == int(treat >= not_treat)
        assert p["expected_values"]["1"] == pytest.approx(treat)
        assert p["expected_values"]["0"] == pytest.approx(not_treat)
        assert p["close_confusion"] == (abs(treat - not_treat) < 50)


def test_invocations_json_and_csv_carry_the_same_decisions(client, cancer_rows):
    body = {"model": "medical", "instances": cancer_rows[:5], "cost_matrix": QALY}
    by_predict = post(client, "/predict", body)["predictions"]
    response = client.post("/invocations", json=body, headers={"Accept": "text/csv"})
    assert response.status_code == 200, response.text
    rows = list(csv.reader(io.StringIO(response.text)))
    # score,decision,ev_0,ev_1,close_confusion,out_of_range,probability (a calibrated model)
    assert [len(r) for r in rows] == [7] * 5
    graph = graph_outputs("medical", cancer_rows[:5])
    for i, (row, p) in enumerate(zip(rows, by_predict, strict=True)):
        assert float(row[0]) == p["score"] and int(row[1]) == p["decision"]
        assert float(row[2]) == p["expected_values"]["0"]
        assert float(row[3]) == p["expected_values"]["1"]
        assert row[4] == str(p["close_confusion"]).lower()
        assert row[5] == ";".join(p["out_of_range"])
        assert float(row[6]) == p["probability"]
        assert np.float32(row[6]) == graph["probability"][i, 0]
        assert np.float32(row[0]) == graph["score"][i, 0]


def test_without_a_matrix_the_binary_answer_is_unchanged(client, cancer_rows):
    # a threshold answer: the card's threshold on the raw score, the probability beside it
    card = read_any_card(SHIPPED / "medical")
    answer = post(client, "/predict", {"model": "medical", "instances": cancer_rows})
    head = {"model", "version", "threshold", "margin", "calibrated", "predictions"}
    assert set(answer) == head and answer["calibrated"] is True  # the shipped model has a map
    assert answer["threshold"] == card.threshold and answer["margin"] == card.margin
    # ... and each prediction's id (issue 26), nothing else added
    fields = {"id", "score", "probability", "label", "close_confusion", "out_of_range"}
    assert all(set(p) == fields for p in answer["predictions"])
    graph = graph_outputs("medical", cancer_rows)
    scores = graph["score"].ravel()
    predictions = answer["predictions"]
    np.testing.assert_array_equal(as_float32([p["score"] for p in predictions]), scores)
    np.testing.assert_array_equal(
        as_float32([p["probability"] for p in predictions]), graph["probability"].ravel()
    )
    s = scores.astype(np.float64)
    labels = np.array([p["label"] for p in predictions])
    np.testing.assert_array_equal(labels, s >= card.threshold)
    close = np.array([p["close_confusion"] for p in predictions])
    edge = np.abs(np.abs(s - card.threshold) - card.margin) > 1e-6
    np.testing.assert_array_equal(close[edge], (np.abs(s - card.threshold) < card.margin)[edge])


# ---------------------------------------------------------------------------------------
# Multiclass


def expected_values(probabilities, values=VALUES):
    return np.asarray(probabilities) @ values


def test_multiclass_predict_decides_by_the_cards_matrix(client, wine_rows):
    rows, _ = wine_rows
    answer = post(client, "/predict", {"model": "wine", "instances": rows})
    assert answer["classes"] == CLASSES and answer["cost_matrix"] == "card"
    assert answer["margin"] == WINE.margin
    p = np.array([[q["probabilities"][c] for c in CLASSES] for q in answer["predictions"]])
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-6)
    ev = expected_values(p)
    got = [[q["expected_values"][c] for c in CLASSES] for q in answer["predictions"]]
    # the shown probabilities are the shortest decimals of float32 values: ~1e-8 apart
    np.testing.assert_allclose(got, ev, rtol=1e-6, atol=1e-5)
    assert [q["decision"] for q in answer["predictions"]] == [CLASSES[j] for j in ev.argmax(axis=1)]
    top = np.sort(ev, axis=1)
    close = [q["close_confusion"] for q in answer["predictions"]]
    assert close == (top[:, -1] - top[:, -2] < WINE.margin).tolist()


def test_multiclass_predictions_flag_features_outside_the_training_range(client, wine_rows):
    rows = [list(r) for r in wine_rows[0][:2]]
    rows[1][0] = 99.0  # alcohol far above anything in training
    answer = post(client, "/predict", {"model": "wine", "instances": rows})
    assert [q["out_of_range"] for q in answer["predictions"]] == [[], ["alcohol"]]
    refused = client.post(
        "/predict", json={"model": "wine", "instances": rows, "on_out_of_range": "refuse"}
    )
    assert refused.status_code == 422 and refused.json()["error"] == "out_of_range"


def test_multiclass_predict_with_a_posted_matrix(client, wine_rows):
    rows, _ = wine_rows
    values = [[0, -5, -5], [-1, 0, -1], [-1, -1, 0]]
    body = {
        "model": "wine",
        "instances": rows,
        "cost_matrix": {"classes": CLASSES, "values": values},
        "margin": 0.2,
    }
    answer = post(client, "/predict", body)
    p = np.array([[q["probabilities"][c] for c in CLASSES] for q in answer["predictions"]])
    ev = expected_values(p, np.array(values, dtype=float))
    assert [q["decision"] for q in answer["predictions"]] == [CLASSES[j] for j in ev.argmax(axis=1)]
    assert answer["cost_matrix"] == "request" and answer["margin"] == 0.2


def test_multiclass_csv_output(client, wine_rows):
    rows, _ = wine_rows
    body = "\n".join(",".join(map(repr, r)) for r in rows[:4]) + "\n"
    headers = {
        "Content-Type": "text/csv",
        "Accept": "text/csv",
        "X-Amzn-SageMaker-Target-Model": "wine",
    }
    response = client.post("/invocations", content=body, headers=headers)
    assert response.status_code == 200, response.text
    by_predict = post(client, "/predict", {"model": "wine", "instances": rows[:4]})["predictions"]
    graph = graph_outputs("wine", rows[:4])
    lines = list(csv.reader(io.StringIO(response.text)))
    for i, (line, q) in enumerate(zip(lines, by_predict, strict=True)):
        # p_1..p_K (calibrated), decision, ev_1..ev_K, close_confusion, out_of_range,
        # then the raw s_1..s_K of a calibrated model
        assert len(line) == 3 + 1 + 3 + 1 + 1 + 3
        assert [float(v) for v in line[:3]] == [q["probabilities"][c] for c in CLASSES]
        np.testing.assert_array_equal(as_float32(line[:3]), graph["probabilities"][i])
        assert line[3] == q["decision"]
        assert [float(v) for v in line[4:7]] == [q["expected_values"][c] for c in CLASSES]
        assert line[7] == str(q["close_confusion"]).lower()
        assert line[8] == ";".join(q["out_of_range"])
        assert [float(v) for v in line[9:12]] == [q["scores"][c] for c in CLASSES]
        np.testing.assert_array_equal(as_float32(line[9:12]), graph["scores"][i])


def direct_evaluation(labels, probabilities, values, margin):
    labels = np.asarray(labels)
    ev = np.asarray(probabilities) @ values
    decided = ev.argmax(axis=1)
    k = values.shape[0]
    confusion = np.zeros((k, k), dtype=int)
    np.add.at(confusion, (labels, decided), 1)
    realised = values[labels, decided]
    argmax = np.asarray(probabilities).argmax(axis=1)
    return {
        "confusion": confusion.tolist(),
        "expected_value": realised.mean(),
        "total_value": realised.sum(),
        "argmax": values[labels, argmax].mean(),
        "always": [values[labels, j].mean() for j in range(k)],
        "recall": [np.mean(decided[labels == j] == j) for j in range(k)],
        "close": int(np.sum(np.diff(np.sort(ev, axis=1)[:, -2:], axis=1) < margin)),
    }


def check_against(result, expected):
    assert result["confusion"]["counts"] == expected["confusion"]
    assert result["expected_value"] == pytest.approx(expected["expected_value"])
    assert result["total_value"] == pytest.approx(expected["total_value"])
    assert result["argmax_probability"]["expected_value"] == pytest.approx(expected["argmax"])
    for j, c in enumerate(CLASSES):
        assert result["always"][c]["expected_value"] == pytest.approx(expected["always"][j])
        assert result["per_class"][c]["recall"] == pytest.approx(expected["recall"][j])
    assert result["close_confusions"]["total"] == expected["close"]


def test_evaluate_held_out_split_equals_numpy(client):
    matrix = {"classes": CLASSES, "values": VALUES.tolist()}
    answer = post(client, "/evaluate", {"cost_matrix": matrix, "margin": 10})
    assert answer["data"] == "held_out" and answer["best_model"] == "wine"
    (result,) = answer["results"]
    assert result["calibrated"] is True
    # decided on the card's calibrated held-out probabilities, not its raw ones
    calibrated = WINE.held_out.calibrated_probabilities
    expected = direct_evaluation(WINE.held_out.labels, calibrated, VALUES, 10)
    check_against(result, expected)
    assert result["expected_value"] == pytest.approx(WINE.metrics.expected_value)
    assert answer["ranking"][0]["model"] == "wine"


def test_evaluate_posted_probabilities_with_names_or_indices(client):
    rng = np.random.default_rng(11)
    p = rng.dirichlet(np.ones(3), size=40)
    p /= p.sum(axis=1, keepdims=True)
    labels = rng.integers(0, 3, 40)
    mixed = [CLASSES[y] if i % 2 else int(y) for i, y in enumerate(labels)]
    matrix = {"classes": CLASSES, "values": VALUES.tolist()}
    answer = post(
        client,
        "/evaluate",
        {"cost_matrix": matrix, "scores": p.tolist(), "labels": mixed, "margin": 5},
    )
    (result,) = answer["results"]
    assert result["model"] is None
    check_against(result, direct_evaluation(labels, p, VALUES, 5))


def test_evaluate_posted_instances_uses_the_models_probabilities(client, wine_rows):
    rows, labels = wine_rows
    predicted = post(client, "/predict", {"model": "wine", "instances": rows})["predictions"]
    p = np.array([[q["probabilities"][c] for c in CLASSES] for q in predicted])
    matrix = {"classes": CLASSES, "values": VALUES.tolist()}
    body = {"cost_matrix": matrix, "instances": rows, "labels": labels, "margin": 10}
    (result,) = post(client, "/evaluate", body)["results"]
    expected = direct_evaluation(labels, p, VALUES, 10)
    assert result["confusion"]["counts"] == expected["confusion"]
    assert result["expected_value"] == pytest.approx(expected["expected_value"], abs=1e-9)


def test_binary_evaluation_leaves_the_multiclass_model_out(client, cancer_rows):
    answer = post(client, "/evaluate", {"cost_matrix": QALY})
    assert "wine" not in [r["model"] for r in answer["results"]]
    assert len(answer["results"]) >= 3
    rows = "".join(f"1,{','.join(map(repr, r))}\n" for r in cancer_rows[:5])
    query = "/evaluate?tp=-1&fp=-1&tn=0&fn=-5"
    headers = {"Content-Type": "text/csv"}
    by_csv = client.post(query, content=rows, headers=headers)
    assert by_csv.status_code == 200, by_csv.text
    assert "wine" not in [r["model"] for r in by_csv.json()["results"]]
    named = client.post(query + "&models=wine", content=rows, headers=headers)
    assert named.status_code == 422
    assert named.json()["detail"].startswith("query.models[0]: model 'wine' is multiclass")


# ---------------------------------------------------------------------------------------
# Bad input: 422 naming the field

BAD_REQUESTS = json.loads((DATA / "valued_bad_requests.json").read_text())
NAN_BODIES = json.loads((DATA / "valued_nan_evaluate.json").read_text())


@pytest.mark.parametrize("case", BAD_REQUESTS, ids=lambda c: f"{c['path']}-{c['field']}")
def test_bad_input_is_a_422_naming_the_field(client, cancer_rows, wine_rows, case):
    body = dict(case["body"])
    if case["path"] == "/predict":
        body["instances"] = wine_rows[0][:2] if body["model"] == "wine" else cancer_rows[:3]
    response = client.post(case["path"], json=body)
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith(case["field"]), response.json()


@pytest.mark.parametrize("case", NAN_BODIES, ids=lambda c: c["field"])
def test_nan_anywhere_is_a_422_naming_the_field(client, case):
    headers = {"Content-Type": "application/json"}
    response = client.post("/evaluate", content=case["raw"], headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith(case["field"])


def test_nan_in_a_predict_matrix_is_refused(client, wine_rows):
    body = json.dumps({"model": "wine", "instances": wine_rows[0][:1], "cost_matrix": "X"})
    nan_matrix = json.dumps({"classes": CLASSES, "values": [[0.5, 0, 0], [0, 0, 0], [0, 0, 0]]})
    raw = body.replace('"X"', nan_matrix.replace("0.5", "NaN"))
    response = client.post("/predict", content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 422 and "NaN" in response.json()["detail"]


def test_models_list_and_card_show_the_multiclass_contract(client):
    listed = {m["name"]: m for m in client.get("/models").json()["models"]}
    assert listed["wine"]["task"] == "multiclass" and listed["wine"]["classes"] == CLASSES
    assert listed["wine"]["threshold"] is None and listed["medical"]["task"] == "binary"
    card = client.get("/models/wine").json()
    assert card["value_matrix"]["orientation"].startswith(
        "values[i][j] = value of deciding class j"
    )
    assert client.get("/models/wine/distribution.png").status_code == 422


def wine_with_graph(folder, nodes, k, initializer):
    """models/wine's card in ``folder`` with another graph (features [N, 13] -> scores),
    without a calibration map: the graph has no ``probabilities`` output, so the card's
    ``calibration`` and ``held_out.calibrated_probabilities`` are dropped (a calibrated
    card naming an output the graph lacks is refused at load)."""
    import shutil

    import onnx
    from onnx import TensorProto, helper

    from costaware.card import sha256_file

    shutil.copytree(SHIPPED / "wine", folder)
    graph = helper.make_graph(
        nodes,
        "replacement",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 13])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", k])],
        initializer=initializer,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, folder / "model.onnx")
    card = json.loads((folder / "model-card.json").read_text())
    card["onnx"]["sha256"] = sha256_file(folder / "model.onnx")
    card["name"] = folder.name
    card.pop("calibration", None)
    card["held_out"].pop("calibrated_probabilities", None)
    (folder / "model-card.json").write_text(json.dumps(card))


def test_registry_refuses_a_graph_with_the_wrong_number_of_classes(tmp_path):
    from onnx import helper, numpy_helper

    from service.registry import ModelRegistry

    weights = numpy_helper.from_array(np.ones((13, 2), dtype=np.float32), "w")
    nodes = [
        helper.make_node("MatMul", ["features", "w"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["scores"], axis=1),
    ]
    wine_with_graph(tmp_path / "wine2", nodes, 2, [weights])
    registry = ModelRegistry.load(tmp_path, "wine2")
    assert not registry.models
    refused = registry.refused[str(tmp_path / "wine2")]
    assert "a multiclass card with 3 classes needs [N, 3]" in refused


def test_non_finite_probabilities_are_refused_naming_the_row(tmp_path, wine_rows):
    from onnx import helper, numpy_helper

    # scores = 0.3 log(1 + each of the first three features): probabilities in the middle
    # of wine's training ranges (a load checks that), above 1 for a malic acid of 1e6 and
    # NaN for an alcohol below -1; "probabilities" only by the look of them
    weights = numpy_helper.from_array(np.eye(13, 3, dtype=np.float32), "w")
    one = numpy_helper.from_array(np.ones(3, dtype=np.float32), "one")
    factor = numpy_helper.from_array(np.full(3, 0.3, dtype=np.float32), "factor")
    nodes = [
        helper.make_node("MatMul", ["features", "w"], ["mixed"]),
        helper.make_node("Add", ["mixed", "one"], ["shifted"]),
        helper.make_node("Log", ["shifted"], ["logs"]),
        helper.make_node("Mul", ["logs", "factor"], ["scores"]),
    ]
    wine_with_graph(tmp_path / "bad", nodes, 3, [weights, one, factor])
    rows = [list(r) for r in wine_rows[0][:3]]
    rows[0][1] = 1e6  # 0.3 log(1e6 + 1) > 1 in the second class
    rows[2][0] = -2.0  # log(-1) = NaN in the first class
    with TestClient(create_app(Settings(model_dir=tmp_path, default_model="bad"))) as bad:
        listed = bad.get("/models").json()
        assert [m["name"] for m in listed["models"]] == ["bad"], listed
        assert listed["refused"] == {} and listed["models"][0]["calibrated"] is False
        response = bad.post("/predict", json={"instances": rows})
        assert response.status_code == 422, response.text
        assert response.json()["error"] == "non_finite_score"
        detail = response.json()["detail"]
        assert "instances[1]" not in detail
        assert detail.startswith("instances[0]") and "instances[2] (nan)" in detail


def test_batch_evaluation_leaves_the_multiclass_model_out():
    from service.batch.adapter import BatchInputError
    from service.batch.jobs import _evaluated_models

    assert "wine" not in [model.name for model in _evaluated_models(SHIPPED, None)]
    with pytest.raises(BatchInputError, match="'wine' is a multiclass model"):
        _evaluated_models(SHIPPED, ["wine"])


ODD_CLASSES = ["bus, coach", 'car "rental"', "walk"]


def test_csv_answers_quote_class_names_as_rfc_4180_says(tmp_path, wine_rows):
    from _servicekit import write_wine_with_classes

    write_wine_with_classes(tmp_path / "travel", ODD_CLASSES)
    rows = wine_rows[0][:12]
    headers = {"Content-Type": "text/csv", "Accept": "text/csv"}
    body = "".join(",".join(map(repr, row)) + "\n" for row in rows)
    with TestClient(create_app(Settings(model_dir=tmp_path, default_model="travel"))) as odd:
        answer = odd.post("/invocations", content=body, headers=headers)
        assert answer.status_code == 200, answer.text
        by_json = odd.post("/predict", json={"instances": rows}).json()["predictions"]
    lines = list(csv.reader(io.StringIO(answer.text)))
    # p_1..p_K, decision, ev_1..ev_K, close_confusion, out_of_range, s_1..s_K (calibrated)
    assert [len(line) for line in lines] == [12] * len(rows)
    assert [line[3] for line in lines] == [p["decision"] for p in by_json]
    for line, p in zip(lines, by_json, strict=True):
        assert [float(v) for v in line[:3]] == [p["probabilities"][c] for c in ODD_CLASSES]
        assert [float(v) for v in line[9:12]] == [p["scores"][c] for c in ODD_CLASSES]
    assert set(ODD_CLASSES[:2]) & {line[3] for line in lines}  # an odd name was decided


def test_csv_answers_for_ordinary_class_names_are_their_fields_joined(client, wine_rows):
    rows = wine_rows[0]
    headers = {
        "Content-Type": "text/csv",
        "Accept": "text/csv",
        "X-Amzn-SageMaker-Target-Model": "wine",
    }
    body = "".join(",".join(map(repr, row)) + "\n" for row in rows)
    answer = client.post("/invocations", content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    lines = list(csv.reader(io.StringIO(answer.text)))
    assert answer.text == "".join(",".join(line) + "\n" for line in lines)
