"""The SageMaker training contract, run in a temporary <base>."""

import json
import shutil

import numpy as np
import onnxruntime as ort
import pytest

from costaware.card import read_card, verify_model_file
from training import sagemaker


@pytest.fixture
def base(tmp_path, monkeypatch, data_dir):
    monkeypatch.setenv(sagemaker.BASE_ENV, str(tmp_path))
    channel = tmp_path / "input" / "data" / "train"
    channel.mkdir(parents=True)
    (tmp_path / "input" / "config").mkdir(parents=True)
    return tmp_path


def _hyperparameters(base, **values):
    path = base / "input" / "config" / "hyperparameters.json"
    path.write_text(json.dumps(values))


@pytest.fixture
def reference_csv(base, reference):
    # the reference data in the SageMaker convention, split over two files
    table = np.column_stack([reference.y, reference.x])
    half = len(table) // 2
    for i, part in enumerate((table[:half], table[half:])):
        lines = [
            ",".join(repr(float(v)) if j else str(int(v)) for j, v in enumerate(row))
            for row in part
        ]
        (base / "input" / "data" / "train" / f"part-{i}.csv").write_text("\n".join(lines) + "\n")
    return table


def test_success_writes_a_servable_model_folder(base, reference_csv):
    _hyperparameters(
        base, loss_function_type="custom", fn_cost="5", fp_cost="1", epochs="2", name="sm"
    )
    assert sagemaker.main() == 0
    folder = base / "model" / "sm"
    card = read_card(folder)
    verify_model_file(folder, card)
    assert (card.loss.type, card.loss.fn_cost, card.loss.fp_cost, card.training.epochs) == (
        "custom",
        5,
        1,
        2,
    )
    # 25% held out for the card (SageMaker gives no test split)
    assert (card.training.data.n_rows, card.training.data.n_test) == (569, 143)
    assert card.features == [f"feature_{i}" for i in range(1, 31)]
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    scores = session.run(["score"], {"features": reference_csv[:5, 1:].astype(np.float32)})[0]
    assert scores.shape == (5, 1)
    assert (base / "output" / "data" / "report" / "index.html").is_file()
    assert not (base / "output" / "failure").exists()


def test_default_name_follows_the_loss(base, reference_csv):
    _hyperparameters(base, loss_function_type="builtin", epochs="1")
    assert sagemaker.main() == 0
    assert read_card(base / "model" / "builtin").loss.type == "builtin"


@pytest.mark.parametrize(
    ("hyperparameters", "status", "reason"),
    [
        (
            {"loss_function_type": "focal"},
            2,
            "loss_function_type: 'focal' must be 'builtin' or 'custom'",
        ),
        ({"loss_function_type": "custom", "fn_cost": "5"}, 2, "hyperparameter fp_cost is required"),
        (
            {"loss_function_type": "custom", "fn_cost": "five", "fp_cost": "1"},
            2,
            "fn_cost: 'five' is not a number",
        ),
        ({"epochs": "ten"}, 2, "epochs: 'ten' is not an integer"),
        ({"learning_rate": "0.1"}, 2, "unknown hyperparameter 'learning_rate'"),
        ({"name": "no spaces allowed"}, 2, "variant name 'no spaces allowed'"),
    ],
)
def test_bad_hyperparameters_write_the_failure_file(base, hyperparameters, status, reason, capsys):
    (base / "input" / "data" / "train" / "a.csv").write_text("0,1\n")
    _hyperparameters(base, **hyperparameters)
    assert sagemaker.main() == status
    assert reason in (base / "output" / "failure").read_text()
    assert "Traceback" not in capsys.readouterr().err
    assert not (base / "model").exists()


def test_bad_training_data_names_file_row_and_column(base, data_dir):
    shutil.copy(data_dir / "label_not_binary.csv", base / "input" / "data" / "train")
    _hyperparameters(base)
    assert sagemaker.main() == 2
    failure = (base / "output" / "failure").read_text()
    assert failure.strip().endswith(
        "label_not_binary.csv, row 6, column 1 (label): label 2 is not 0 or 1"
    )


def test_missing_hyperparameters_and_channel(base):
    assert sagemaker.main() == 2
    assert "no hyperparameters file" in (base / "output" / "failure").read_text()
    _hyperparameters(base)
    shutil.rmtree(base / "input" / "data" / "train")
    assert sagemaker.main() == 2
    assert "training channel 'train' not found" in (base / "output" / "failure").read_text()


def test_base_defaults_to_opt_ml(monkeypatch):
    monkeypatch.delenv(sagemaker.BASE_ENV, raising=False)
    assert str(sagemaker.base_dir()) == "/opt/ml"


def test_an_existing_model_folder_is_refused_before_the_data_is_read(base, capsys):
    # no training files: the refusal must come first, so the job never reaches the data
    _hyperparameters(base, name="sm")
    folder = base / "model" / "sm"
    folder.mkdir(parents=True)
    (folder / "model-card.json").write_text("{}")
    assert sagemaker.main() == 2
    reason = f"{folder} already exists: set the hyperparameter replace to 'true' to overwrite it"
    assert reason in (base / "output" / "failure").read_text()
    assert capsys.readouterr().err.count("\n") == 1
    assert (folder / "model-card.json").read_text() == "{}"


def test_replace_true_overwrites_the_model_folder(base, reference_csv):
    _hyperparameters(base, name="sm", epochs="1", replace="True")
    (base / "model" / "sm").mkdir(parents=True)
    (base / "model" / "sm" / "model-card.json").write_text("{}")
    assert sagemaker.main() == 0
    assert read_card(base / "model" / "sm").name == "sm"


def test_replace_must_be_true_or_false(base):
    _hyperparameters(base, replace="yes")
    assert sagemaker.main() == 2
    failure = (base / "output" / "failure").read_text()
    assert "hyperparameter replace: 'yes' must be 'true' or 'false'" in failure
