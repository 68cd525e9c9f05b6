"""The registry loads every good model folder and refuses bad ones with one log line each;
with none loaded the app starts but is not ready."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from _servicekit import FEATURES, LogisticSpec, logistic_graph, write_model
from fastapi.testclient import TestClient

from costaware.card import sha256_file
from service.app import create_app
from service.registry import ModelRegistry, session_options
from service.settings import Settings, resolve_model_dir


def break_card_json(folder: Path) -> None:
    (folder / "model-card.json").write_text("{not json", encoding="utf-8")


def drop_card_field(folder: Path) -> None:
    card = json.loads((folder / "model-card.json").read_text())
    del card["features"]
    (folder / "model-card.json").write_text(json.dumps(card))


def remove_card(folder: Path) -> None:
    (folder / "model-card.json").unlink()


def tamper_model(folder: Path) -> None:
    with (folder / "model.onnx").open("ab") as handle:
        handle.write(b"\0")


def narrow_graph(folder: Path) -> None:
    """A 29-feature graph under a 30-feature card, with the card's sha256 kept honest."""
    onnx.save(logistic_graph(LogisticSpec.random(5, n_features=29)), folder / "model.onnx")
    rehash(folder)


def rename_input(folder: Path) -> None:
    onnx.save(
        logistic_graph(LogisticSpec.random(5), input_name="x"),
        folder / "model.onnx",
    )
    rehash(folder)


def not_onnx(folder: Path) -> None:
    (folder / "model.onnx").write_bytes(b"this is not a protobuf")
    rehash(folder)


def rehash(folder: Path) -> None:
    card = json.loads((folder / "model-card.json").read_text())
    card["onnx"]["sha256"] = sha256_file(folder / "model.onnx")
    (folder / "model-card.json").write_text(json.dumps(card))


DAMAGE = {
    "missing card": (remove_card, "no model card"),
    "unreadable card": (break_card_json, "unreadable model card"),
    "malformed card": (drop_card_field, "malformed model card at features"),
    "sha256 mismatch": (tamper_model, "does not match the card's"),
    "input width": (narrow_graph, "does not match the card's 30 features"),
    "input name": (rename_input, "graph input is named 'x'"),
    "not onnx": (not_onnx, "onnxruntime cannot load it"),
}


@pytest.fixture
def damaged_dir(tmp_path: Path, model_dir: Path) -> Path:
    """The three good fixture models plus one folder per kind of damage."""
    root = tmp_path / "models"
    shutil.copytree(model_dir, root)
    for i, (label, (damage, _)) in enumerate(DAMAGE.items()):
        folder = root / f"bad-{i}"
        write_model(folder, f"bad-{i}", LogisticSpec.random(10 + i))
        damage(folder)
        (folder / "DAMAGE").write_text(label)
    return root


def test_bad_folders_are_refused_with_one_line_each(damaged_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="service.registry"):
        registry = ModelRegistry.load(damaged_dir, "medical", session_options())
    assert registry.names() == ["builtin", "custom-5to1", "medical"]
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == len(DAMAGE)
    for i, (_damage, reason) in enumerate(DAMAGE.values()):
        [line] = [message for message in refusals if f"bad-{i}" in message]
        assert reason in line
        assert "\n" not in line


def test_app_with_refused_folders_serves_the_rest(damaged_dir):
    with TestClient(create_app(Settings(model_dir=damaged_dir))) as client:
        assert client.get("/ping").status_code == 200
        ready = client.get("/health/ready").json()
        assert len(ready["refused"]) == len(DAMAGE)
        response = client.post("/predict", json={"instances": [[0.0] * 30]})
        assert response.status_code == 200


@pytest.mark.parametrize("content", ["empty", "missing", "only bad"])
def test_no_model_means_started_but_not_ready(tmp_path, content):
    model_dir = tmp_path / "models"
    if content != "missing":
        model_dir.mkdir()
    if content == "only bad":
        write_model(model_dir / "x", "x", LogisticSpec.random(1))
        tamper_model(model_dir / "x")
    with TestClient(create_app(Settings(model_dir=model_dir))) as client:
        assert client.get("/health/live").status_code == 200
        ping = client.get("/ping")
        assert ping.status_code == 503
        ready = client.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json()["error"] == "not_ready"
        assert str(model_dir) in ready.json()["detail"]
        predict = client.post("/predict", json={"instances": [[0.0] * 30]})
        assert predict.status_code == 503
        assert client.get("/models").json()["models"] == []


def test_single_model_folder_as_model_dir(tmp_path):
    """SageMaker unpacks one model's model.tar.gz straight into /opt/ml/model."""
    spec = LogisticSpec.random(3)
    write_model(tmp_path, "fraud", spec)
    with TestClient(create_app(Settings(model_dir=tmp_path))) as client:
        # The only model is the default whatever the default_model setting says.
        body = client.post("/predict", json={"instances": [[1.0] * 30]}).json()
    assert body["model"] == "fraud"
    assert body["predictions"][0]["score"] == pytest.approx(
        spec.expected_scores(np.ones((1, 30)))[0], abs=1e-6
    )


def test_default_model_missing_among_several_is_a_clear_404(model_dir):
    settings = Settings(model_dir=model_dir, default_model="absent")
    with TestClient(create_app(settings)) as client:
        response = client.post("/predict", json={"instances": [[1.0] * 30]})
        named = client.post("/predict", json={"model": "builtin", "instances": [[1.0] * 30]})
    assert response.status_code == 404
    assert "default model 'absent'" in response.json()["detail"]
    assert named.status_code == 200


def test_duplicate_card_names_keep_the_first(tmp_path, caplog):
    write_model(tmp_path / "a", "same", LogisticSpec.random(1))
    write_model(tmp_path / "b", "same", LogisticSpec.random(2))
    with caplog.at_level(logging.WARNING, logger="service.registry"):
        registry = ModelRegistry.load(tmp_path, "same")
    assert registry.models["same"].folder == tmp_path / "a"
    assert "already loaded" in registry.refused[str(tmp_path / "b")]


def test_session_threads_are_explicit():
    options = session_options(1, 2)
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (1, 2)


def test_model_dir_resolution(tmp_path):
    sagemaker = tmp_path / "opt-ml-model"
    bundled = resolve_model_dir(None, sagemaker)
    assert bundled.name == "models"  # nothing at the SageMaker path: the bundled models
    sagemaker.mkdir()
    assert resolve_model_dir(None, sagemaker) == bundled  # empty: still bundled
    write_model(sagemaker / "m", "m", LogisticSpec.random(1), features=FEATURES)
    assert resolve_model_dir(None, sagemaker) == sagemaker
    assert resolve_model_dir(tmp_path / "mine", sagemaker) == tmp_path / "mine"
