"""The calibration map inside the graph: fitted with scikit-learn, equal to it in onnxruntime,
refused when it is not, and the options that cannot be fitted refused before training."""

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from sklearn.calibration import _SigmoidCalibration
from sklearn.isotonic import IsotonicRegression

from costaware import calibration as cal
from costaware.card import SigmoidMap, read_card
from training.calibrate import (
    MAP_PARITY_TOLERANCE,
    CalibrationError,
    check_parity,
    check_rows,
    fit_binary,
    fit_multiclass,
    make_plan,
    with_map,
)
from training.cli import main
from training.export import ExportError

MODELS = Path(__file__).resolve().parents[2] / "models"


def _run(model: bytes, x: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {"features": x.astype(np.float32)}), strict=True))


def _raw_graph(name: str, output: str) -> bytes:
    """A shipped graph without its calibration map: only the network's output."""
    model = onnx.load(MODELS / name / "model.onnx")
    graph = model.graph
    keep = [n for n in graph.node if not n.name.startswith("calibration/")]
    del graph.node[:]
    graph.node.extend(keep)
    kept = [i for i in graph.initializer if not i.name.startswith("calibration/")]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    outputs = [o for o in graph.output if o.name == output]
    del graph.output[:]
    graph.output.extend(outputs)
    return model.SerializeToString()


@pytest.fixture(scope="module")
def binary_graph(reference_split):
    """The shipped medical network (its scores are far from calibrated) and its outputs."""
    model = _raw_graph("medical", "score")
    train = _run(model, reference_split.x_train)["score"].ravel()
    return model, train


@pytest.mark.parametrize("method", ["sigmoid", "isotonic"])
def test_binary_map_in_the_graph_equals_scikit_learn(binary_graph, reference_split, method):
    model, train_scores = binary_graph
    fitted = fit_binary(make_plan(method, "binary"), train_scores, reference_split.y_train)
    out = _run(with_map(model, "score", fitted.map, "probability"), reference_split.x_test)
    scores, probability = out["score"].ravel(), out["probability"]
    assert probability.shape == (len(scores), 1) and probability.dtype == np.float32
    # the oracle: scikit-learn's calibrator fitted here, on the graph's own scores
    s = scores.astype(np.float64)
    if method == "sigmoid":
        oracle = _SigmoidCalibration().fit(cal.logit(train_scores), reference_split.y_train)
        expected = oracle.predict(cal.logit(s))
    else:
        oracle = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1)
        expected = oracle.fit(train_scores.astype(np.float64), reference_split.y_train).predict(s)
    assert np.max(np.abs(probability.ravel() - expected)) <= MAP_PARITY_TOLERANCE
    assert np.max(np.abs(probability.ravel() - cal.apply_map(fitted.map, s))) <= 1e-6
    # beyond the scores seen in fitting, isotonic clips to its end values
    far = _run(with_map(model, "score", fitted.map, "probability"), reference_split.x_test * 50)
    assert np.all(np.isfinite(far["probability"]))


@pytest.mark.parametrize("method", ["temperature", "vector"])
def test_multiclass_map_in_the_graph_equals_the_numpy_map(method):
    from training.multiclass import load_wine, split_multiclass

    model = _raw_graph("wine", "scores")
    data = load_wine()
    split = split_multiclass(data)
    train = _run(model, split.x_train)["scores"]
    fitted = fit_multiclass(make_plan(method, "multiclass"), train, split.y_train)
    out = _run(with_map(model, "scores", fitted.map, "probabilities"), split.x_test)
    got = out["probabilities"]
    assert got.shape == out["scores"].shape
    expected = cal.apply_map(fitted.map, out["scores"])
    assert np.max(np.abs(got - expected)) <= MAP_PARITY_TOLERANCE
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-6)
    # the fit lowers the training log loss (it starts at the identity map)
    assert cal.log_loss(cal.apply_map(fitted.map, train), split.y_train) <= cal.log_loss(
        train, split.y_train
    )


def test_a_graph_that_disagrees_with_its_fitted_map_is_not_exported(binary_graph, reference_split):
    model, train_scores = binary_graph
    fitted = fit_binary(make_plan("sigmoid", "binary"), train_scores, reference_split.y_train)
    wrong = SigmoidMap(method="sigmoid", a=fitted.map.a, b=fitted.map.b + 1e-3)
    out = _run(with_map(model, "score", wrong, "probability"), reference_split.x_test)
    with pytest.raises(ExportError, match="differs from the fitted sigmoid map"):
        check_parity(fitted, out["score"].ravel(), out["probability"], "medical")


def test_plans_that_cannot_be_fitted_are_refused():
    with pytest.raises(CalibrationError, match="unknown method"):
        make_plan("platt", "binary")
    with pytest.raises(CalibrationError, match="applies to multiclass"):
        make_plan("temperature", "binary")
    y = np.array([0] * 30 + [1] * 3)
    with pytest.raises(CalibrationError, match="only 3 of class 1"):
        check_rows(make_plan("sigmoid", "binary"), y)
    check_rows(make_plan("sigmoid", "binary", folds=3), y)
    with pytest.raises(CalibrationError, match="only 3 rows of class 1"):
        check_rows(make_plan("sigmoid", "binary", size=0.2), y)
    check_rows(make_plan("none", "binary"), y)


def _csv(path: Path, positives: int, rows: int = 60) -> Path:
    rng = np.random.default_rng(0)
    lines = ["label,a,b"] + [
        f"{int(i < positives)},{rng.normal():.4f},{rng.normal():.4f}" for i in range(rows)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--calibration", "platt"], "--calibration 'platt': unknown method"),
        (["--calibration", "vector"], "--calibration vector: applies to multiclass"),
        (["--calibration-folds", "1"], "needs at least 2"),
        (["--calibration-size", "1.5"], "must be between 0 and 1"),
    ],
)
def test_bad_calibration_options_are_one_line(extra, message, capsys, monkeypatch):
    monkeypatch.setattr("training.pipeline.fit_variant", _no_training)
    assert main([*extra, "--no-report", "--models-dir", "/nonexistent"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def _no_training(*args, **kwargs):
    raise AssertionError("trained before the options were checked")


def test_too_few_rows_of_a_class_for_the_folds_is_refused_before_training(
    tmp_path, capsys, monkeypatch
):
    # 4 positives in 60 rows: the 45-row training split has fewer than 5
    data = _csv(tmp_path / "few.csv", positives=4)
    monkeypatch.setattr("training.pipeline.fit_variant", _no_training)
    argv = ["--data", str(data), "--label", "label", "--no-report", "--models-dir", str(tmp_path)]
    assert main(argv) == 2
    (line,) = [x for x in capsys.readouterr().err.splitlines() if "error" in x]
    assert "--calibration-folds 5" in line and "only 2 of class 1" in line


def test_trained_model_carries_its_map_and_the_card_says_what_it_does(tmp_path, capsys):
    data = _csv(tmp_path / "d.csv", positives=20, rows=80)
    models = tmp_path / "m"
    argv = ["--data", str(data), "--label", "label", "--no-report", "--models-dir", str(models)]
    argv += ["--variant", "name=w,loss=custom,fn_cost=9,fp_cost=1,epochs=2"]
    assert main(argv) == 0
    assert "[w] calibration: fold 5/5" in capsys.readouterr().err
    card = read_card(models / "w")
    section = card.calibration
    assert section.map.method == "sigmoid" and section.output_name == "probability"
    assert (section.fitted_on, section.folds, section.rows) == ("out_of_fold", 5, 60)
    assert section.prior_shift_baseline.weight == 9.0
    x = np.array([[float(v) for v in line.split(",")[1:]] for line in data.read_text().split()[1:]])
    out = _run((models / "w" / "model.onnx").read_bytes(), x)
    # the card's held-out probabilities are the graph's, and the map is the card's
    p = np.asarray(card.held_out.probabilities)
    s = np.asarray(card.held_out.scores)
    assert np.max(np.abs(cal.apply_map(section.map, s) - p)) <= 1e-6
    assert np.max(np.abs(cal.apply_map(section.map, out["score"]) - out["probability"])) <= 1e-6
    after = cal.quality(p, card.held_out.labels)
    assert section.held_out.after.ece == pytest.approx(after["ece"])
    assert json.loads((models / "w" / "model-card.json").read_text())["calibration"]["map"]["a"]
    # which rows of the user's CSV were held out (issue 22 item 17)
    held = card.training.data.test_rows
    labels = np.array([int(line.split(",")[0]) for line in data.read_text().split()[1:]])
    assert labels[held].tolist() == card.held_out.labels and len(held) == 20


def test_calibration_none_exports_an_uncalibrated_model(tmp_path):
    data = _csv(tmp_path / "d.csv", positives=20, rows=80)
    models = tmp_path / "m"
    argv = ["--data", str(data), "--label", "label", "--no-report", "--models-dir", str(models)]
    assert main([*argv, "--variant", "name=n,epochs=1", "--calibration", "none"]) == 0
    card = read_card(models / "n")
    assert card.calibration is None and card.held_out.probabilities is None
    out = _run((models / "n" / "model.onnx").read_bytes(), np.zeros((2, 2)))
    assert list(out) == ["score"]


def test_held_back_map_is_fitted_on_rows_the_network_did_not_see(tmp_path):
    data = _csv(tmp_path / "d.csv", positives=30, rows=80)
    models = tmp_path / "m"
    argv = ["--data", str(data), "--label", "label", "--no-report", "--models-dir", str(models)]
    argv += ["--variant", "name=h,epochs=1", "--calibration", "isotonic"]
    assert main([*argv, "--calibration-size", "0.25"]) == 0
    card = read_card(models / "h")
    section = card.calibration
    assert (section.map.method, section.fitted_on, section.folds) == ("isotonic", "held_back", None)
    # 60 training rows: 15 held back for the map (stratified), the network on the other 45
    assert (section.rows, card.training.data.n_train) == (15, 45)
    s, p = np.asarray(card.held_out.scores), np.asarray(card.held_out.probabilities)
    assert np.max(np.abs(cal.apply_map(section.map, s) - p)) <= 1e-6
