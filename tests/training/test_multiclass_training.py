"""Multiclass training: the expected-cost loss, determinism, export parity, card and CLI."""

import json

import numpy as np
import pytest

from costaware.card import CardError, MulticlassCard, read_any_card, read_card
from costaware.core import ValueMatrix, decide, realised_values
from training.cli import main
from training.multiclass import (
    WINE_VALUES,
    MulticlassSpec,
    expected_cost_loss,
    export_multiclass,
    fit_multiclass,
    load_wine,
    onnx_probabilities,
    regret_matrix,
    split_multiclass,
)

SHORT = 4


@pytest.fixture(scope="module")
def wine():
    return load_wine()


@pytest.fixture(scope="module")
def wine_split(wine):
    return split_multiclass(wine)


@pytest.fixture(scope="module")
def fitted(wine_split):
    spec = MulticlassSpec("wine-short", loss="expected_cost", epochs=SHORT)
    return fit_multiclass(spec, wine_split.x_train, wine_split.y_train, WINE_VALUES, progress=None)


@pytest.fixture(scope="module")
def exported(fitted, wine, wine_split, tmp_path_factory):
    models = tmp_path_factory.mktemp("multiclass")
    return export_multiclass(fitted, wine, wine_split, WINE_VALUES, models, illustrative=True)


def test_wine_split_is_stratified_and_seeded(wine, wine_split):
    assert (len(wine_split.y_train), len(wine_split.y_test)) == (133, 45)
    assert set(np.unique(wine_split.y_test)) == {0, 1, 2}
    again = split_multiclass(wine)
    np.testing.assert_array_equal(again.y_test, wine_split.y_test)


def test_regret_is_zero_on_the_best_decision_and_scaled_to_one():
    regret, scale = regret_matrix(WINE_VALUES)
    assert scale == 360.0 and regret.max() == 1.0
    np.testing.assert_array_equal(regret.min(axis=1), 0.0)
    np.testing.assert_allclose(
        regret * scale, WINE_VALUES.values.max(axis=1)[:, None] - WINE_VALUES.values
    )


def test_two_class_expected_cost_loss_is_the_reference_cost_weighted_loss():
    import keras

    from training.losses import cost_weighted_loss

    tp, fp, tn, fn = -10.0, -3.0, 0.0, -50.0
    matrix = ValueMatrix(("0", "1"), [[tn, fp], [fn, tp]])
    regret, scale = regret_matrix(matrix)
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 64).astype(np.float32)
    y = rng.integers(0, 2, 64)
    multi = expected_cost_loss(regret)(y, np.c_[1 - p, p])
    binary = cost_weighted_loss(tp - fn, tn - fp)(y.reshape(-1, 1), p.reshape(-1, 1))
    assert float(keras.ops.convert_to_numpy(multi)) * scale == pytest.approx(
        float(keras.ops.convert_to_numpy(binary)), rel=1e-5
    )


def test_the_same_seed_gives_the_same_model(fitted, wine_split):
    again = fit_multiclass(
        fitted.spec, wine_split.x_train, wine_split.y_train, WINE_VALUES, progress=None
    )
    np.testing.assert_array_equal(
        again.predict(wine_split.x_test), fitted.predict(wine_split.x_test)
    )


def test_export_scores_raw_features_like_keras(exported, fitted, wine_split):
    model = exported.folder / "model.onnx"
    probabilities = onnx_probabilities(model, wine_split.x_test)
    assert probabilities.shape == (45, 3)
    np.testing.assert_allclose(probabilities, fitted.predict(wine_split.x_test), atol=1e-5)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)


def test_card_holds_classes_matrix_and_held_out_split(exported, wine_split):
    card = read_any_card(exported.folder)
    assert isinstance(card, MulticlassCard)
    assert card.classes == ["class_0", "class_1", "class_2"]
    assert card.value_matrix.values == WINE_VALUES.values.tolist()
    assert card.value_matrix.illustrative
    assert card.onnx.output_name == "scores"
    assert card.held_out.labels == wine_split.y_test.tolist()
    p = np.asarray(card.held_out.probabilities)
    decided = decide(p, WINE_VALUES, margin=0.0).index
    value = realised_values(wine_split.y_test, decided, WINE_VALUES)
    assert card.metrics.expected_value == pytest.approx(value.mean())
    assert card.margin == pytest.approx(0.05 * 360)
    with pytest.raises(CardError, match="multiclass model card, not a binary one"):
        read_card(exported.folder)


def test_cli_trains_compares_and_exports(tmp_path, capsys):
    argv = ["multiclass", "--epochs", "2", "--models-dir", str(tmp_path), "--name", "w"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    for text in ("expected_cost    min expected cost", "cross_entropy    argmax probability"):
        assert text in out
    card = read_any_card(tmp_path / "w")
    # the exported (default) loss first, then the other one for comparison
    assert [r["loss"] for r in card.comparison["results"]] == ["cross_entropy", "expected_cost"]
    assert card.loss.type == "cross_entropy"


def test_cli_with_own_csv_and_matrix(tmp_path, capsys):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(60, 2))
    y = np.arange(60) % 3
    x[:, 0] += y
    csv = tmp_path / "own.csv"
    csv.write_text(
        "a,b,kind\n" + "".join(f"{r[0]},{r[1]},{c}\n" for r, c in zip(x, y, strict=True))
    )
    matrix = tmp_path / "m.json"
    matrix.write_text(
        json.dumps({"classes": ["x", "y", "z"], "values": [[1, 0, 0], [0, 1, 0], [0, 0, 1]]})
    )
    argv = ["multiclass", "--data", str(csv), "--label", "kind", "--value-matrix", str(matrix)]
    argv += ["--epochs", "2", "--no-compare", "--models-dir", str(tmp_path / "m"), "--name", "own"]
    assert main(argv) == 0
    card = read_any_card(tmp_path / "m" / "own")
    assert card.classes == ["x", "y", "z"] and card.features == ["a", "b"]
    assert not card.value_matrix.illustrative and card.comparison is None


@pytest.mark.parametrize(
    ("matrix", "needle"),
    [
        (
            {"classes": ["a", "b"], "values": [[1, 2], [3]]},
            "values[1]: has 1 values but there are 2",
        ),
        ({"classes": ["class_0", "class_1", "class_2"], "values": [[1, 2, 3]] * 2}, "has 2 rows"),
        (
            {"classes": ["a", "b", "c"], "values": [[1, 0, 0], [0, 1, 0], [0, 0, 1]]},
            "does not match the model's classes",
        ),
        (
            {"classes": ["class_0", "class_1", "class_2"], "values": [[0] * 3] * 3},
            "values: every decision has the same value whatever the truth",
        ),
        (
            {"classes": ["class_0", "class_1", "class_2"], "values": [[1] * 3, [2] * 3, [0] * 3]},
            "values: every decision has the same value whatever the truth",
        ),
    ],
)
@pytest.mark.parametrize("loss", ["cross_entropy", "expected_cost"])
def test_bad_value_matrix_is_one_line(matrix, needle, loss, tmp_path, capsys):
    # Refused before any training, whichever loss (a matrix without preference used to
    # train with cross-entropy, and be refused by the expected-cost loss after its fit).
    path = tmp_path / "m.json"
    path.write_text(json.dumps(matrix))
    argv = ["multiclass", "--value-matrix", str(path), "--loss", loss, "--epochs", "1"]
    status = main([*argv, "--models-dir", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and needle in err[0], err
    assert not any(tmp_path.iterdir()) or [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_label_outside_the_classes_names_the_row(tmp_path, capsys):
    csv = tmp_path / "own.csv"
    rows = "".join(f"{i},{i % 2}\n" for i in range(30))
    csv.write_text("a,kind\n" + rows + "\n5,7\n")  # a blank line before the bad row
    matrix = tmp_path / "m.json"
    matrix.write_text(json.dumps({"classes": ["x", "y"], "values": [[1, 0], [0, 1]]}))
    argv = ["multiclass", "--data", str(csv), "--label", "kind", "--value-matrix", str(matrix)]
    assert main([*argv, "--models-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "label 7 is not a class index 0..1" in err and "row 33" in err, err


# ---------------------------------------------------------------------------
# The shipped reference model (models/wine, made by `make train-multiclass`)


def test_shipped_wine_model_matches_its_card_and_split(wine, wine_split):
    from pathlib import Path

    from costaware.card import verify_model_file

    folder = Path(__file__).resolve().parents[2] / "models" / "wine"
    card = read_any_card(folder)
    assert isinstance(card, MulticlassCard)
    assert card.training.data.sha256 == wine.sha256
    assert card.held_out.labels == wine_split.y_test.tolist()
    assert card.value_matrix.illustrative and "Illustrative" in card.value_matrix.note
    assert card.value_matrix.values == WINE_VALUES.values.tolist()
    probabilities = onnx_probabilities(verify_model_file(folder, card), wine_split.x_test)
    np.testing.assert_array_equal(probabilities, np.asarray(card.held_out.probabilities, "f4"))
    # cross-entropy ships: the better loss over 10 fresh splits (docs/MULTICLASS.md); the
    # card keeps both losses on the reference split for the README
    results = {r["loss"]: r for r in card.comparison["results"]}
    assert card.loss.type == "cross_entropy" and set(results) == {"cross_entropy", "expected_cost"}


def test_bad_learning_rate_is_one_line(tmp_path, capsys):
    argv = ["multiclass", "--learning-rate", "-1", "--models-dir", str(tmp_path)]
    assert main(argv) == 2
    assert "learning_rate -1.0: must be a positive number" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# A new user's own data: the shipped model is safe, class names are labels

TRAVEL = {"classes": ["car", "bus", "train"], "values": [[5, 0, 1], [0, 4, 1], [-2, 0, 3]]}


def _travel_csv(path, labels=lambda c: TRAVEL["classes"][c], n=60):
    rng = np.random.default_rng(5)
    rows = [f"{rng.normal() + i % 3:.6f},{rng.normal():.6f},{labels(i % 3)}" for i in range(n)]
    path.write_text("distance,price,mode\n" + "\n".join(rows) + "\n")
    return path


def test_multiclass_without_name_leaves_the_shipped_wine_model_alone(tmp_path):
    """The issue's command: own data, no --name, a models dir holding the shipped wine."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    shipped = Path(__file__).resolve().parents[2] / "models" / "wine"
    shutil.copytree(shipped, tmp_path / "models" / "wine")
    before = {p.name: p.read_bytes() for p in (tmp_path / "models" / "wine").iterdir()}
    csv = _travel_csv(tmp_path / "own.csv")
    argv = ["multiclass", "--data", str(csv), "--label", "mode", "--value-matrix"]
    argv += [json.dumps(TRAVEL), "--models-dir", str(tmp_path / "models")]
    done = subprocess.run(
        [sys.executable, "-m", "training", *argv], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr
    folder = tmp_path / "models" / "wine"
    assert done.stderr == (
        f"python -m training multiclass: error: {folder} already exists: pass --replace to "
        "overwrite it, or choose another model name\n"
    )
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_class_names_and_class_indices_are_the_same_labels(tmp_path):
    from training.multiclass import load_multiclass_csv

    names = load_multiclass_csv(_travel_csv(tmp_path / "n.csv"), "mode", TRAVEL["classes"])
    indices = load_multiclass_csv(
        _travel_csv(tmp_path / "i.csv", labels=str), "mode", TRAVEL["classes"]
    )
    np.testing.assert_array_equal(names.y, np.arange(60) % 3)
    np.testing.assert_array_equal(names.x, indices.x)
    assert names.sha256 == indices.sha256 and names.feature_names == ["distance", "price"]


def test_cli_trains_on_class_name_labels_with_an_inline_value_matrix(tmp_path, capsys):
    argv = ["multiclass", "--data", str(_travel_csv(tmp_path / "own.csv")), "--label", "mode"]
    argv += ["--value-matrix", json.dumps(TRAVEL), "--epochs", "1", "--no-compare"]
    assert main([*argv, "--name", "travel", "--models-dir", str(tmp_path)]) == 0
    card = read_any_card(tmp_path / "travel")
    assert card.classes == TRAVEL["classes"] and card.features == ["distance", "price"]
    assert card.value_matrix.values == TRAVEL["values"]
    assert set(card.held_out.labels) == {0, 1, 2}
    capsys.readouterr()


@pytest.mark.parametrize(
    ("cells", "needle"),
    [
        (
            {7: "plane"},
            "row 9, column 3 (mode): label 'plane' is not one of the classes "
            "['car', 'bus', 'train']",
        ),
        ({4: "3"}, "row 6, column 3 (mode): label 3 is not a class index 0..2"),
        ({4: "1.5"}, "row 6, column 3 (mode): label 1.5 is not a class name or index"),
        ({3: "car,x"}, "row 5: expected 3 columns, found 4"),
    ],
)
def test_bad_labels_name_row_column_and_classes(cells, needle, tmp_path, capsys):
    csv = _travel_csv(tmp_path / "own.csv")
    lines = csv.read_text().splitlines()
    for index, cell in cells.items():
        lines[index + 1] = lines[index + 1].rsplit(",", 1)[0] + "," + cell
    csv.write_text("\n".join(lines) + "\n")
    argv = ["multiclass", "--data", str(csv), "--label", "mode", "--value-matrix"]
    assert main([*argv, json.dumps(TRAVEL), "--models-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"own.csv, {needle}" in err, err


def test_a_bad_feature_cell_names_its_column_by_the_header(tmp_path, capsys):
    csv = _travel_csv(tmp_path / "own.csv")
    lines = csv.read_text().splitlines()
    lines[31] = "1.0,cheap,bus"
    csv.write_text("\n".join(lines) + "\n")
    argv = ["multiclass", "--data", str(csv), "--label", "mode", "--value-matrix"]
    assert main([*argv, json.dumps(TRAVEL), "--models-dir", str(tmp_path)]) == 2
    assert "own.csv, row 32, column 2 (price): 'cheap' is not a number" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ('{"classes": ["car", "bus"],', "--value-matrix (inline JSON): not valid JSON"),
        (
            ' [["car", "bus"]]',
            "--value-matrix (inline JSON): expected an object with classes and values",
        ),
        ("nothing-here.json", "--value-matrix file nothing-here.json: no such file"),
        ("bad.json", "--value-matrix file bad.json: not a readable JSON file"),
        ("short.json", "--value-matrix file short.json.values[1]: has 1 values but there are 2"),
    ],
)
def test_value_matrix_is_inline_json_or_a_file_and_errors_say_which(
    value, needle, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.json").write_text("{classes: car}")
    (tmp_path / "short.json").write_text('{"classes": ["car", "bus"], "values": [[1, 0], [1]]}')
    argv = ["multiclass", "--value-matrix", value, "--models-dir", str(tmp_path / "m")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err, err


def test_value_matrix_from_a_multiclass_card():
    from pathlib import Path

    from training.multiclass_cli import read_value_matrix

    card = Path(__file__).resolve().parents[2] / "models" / "wine" / "model-card.json"
    matrix = read_value_matrix(str(card))
    assert matrix.classes == WINE_VALUES.classes
    np.testing.assert_array_equal(matrix.values, WINE_VALUES.values)


@pytest.mark.parametrize("method", ["temperature", "vector"])
def test_cli_exports_the_calibrated_probabilities_the_card_describes(method, tmp_path, wine_split):
    from costaware import calibration as cal
    from training.export import onnx_outputs

    argv = ["multiclass", "--epochs", "2", "--no-compare", "--models-dir", str(tmp_path)]
    assert main([*argv, "--name", "w", "--calibration", method]) == 0
    card = read_any_card(tmp_path / "w")
    section = card.calibration
    assert section.map.method == method and section.output_name == "probabilities"
    assert (section.fitted_on, section.folds, section.rows) == ("out_of_fold", 5, 133)
    out = onnx_outputs(tmp_path / "w" / "model.onnx", wine_split.x_test)
    np.testing.assert_array_equal(
        out["probabilities"], np.asarray(card.held_out.calibrated_probabilities, "f4")
    )
    expected = cal.apply_map(section.map, out["scores"])
    assert np.max(np.abs(out["probabilities"] - expected)) <= 1e-6
    labels = card.held_out.labels
    wine = load_wine()
    assert wine.y[card.training.data.test_rows].tolist() == labels
    assert section.held_out.before.log_loss == pytest.approx(cal.log_loss(out["scores"], labels))


def test_held_back_calibration_fits_the_network_on_the_rest(tmp_path):
    argv = ["multiclass", "--epochs", "2", "--no-compare", "--models-dir", str(tmp_path)]
    assert main([*argv, "--name", "w", "--calibration-size", "0.3"]) == 0
    card = read_any_card(tmp_path / "w")
    assert (card.calibration.fitted_on, card.calibration.folds) == ("held_back", None)
    assert card.calibration.rows + card.training.data.n_train == 133


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--calibration", "sigmoid"], "--calibration sigmoid: applies to binary models"),
        (["--calibration", "nope"], "--calibration 'nope': unknown method"),
        (["--calibration-folds", "40"], "each of the 40 folds needs one of each class"),
    ],
)
def test_bad_calibration_is_one_line_before_training(extra, needle, tmp_path, capsys, monkeypatch):
    def no_fit(*args, **kwargs):
        raise AssertionError("trained before the calibration was checked")

    monkeypatch.setattr("training.multiclass_cli.fit_multiclass", no_fit)
    assert main(["multiclass", *extra, "--models-dir", str(tmp_path)]) == 2
    (line,) = [x for x in capsys.readouterr().err.splitlines() if "error" in x]
    assert needle in line
