"""Training on an audited subsample of negatives: the CLI refuses a biased one, the card
shows the audit and beta, the ONNX graph applies the prior-shift correction, and the
service serves the model unchanged."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.model_selection import train_test_split

from costaware.card import read_card
from training.cli import main
from training.subsample import correct_scores, subsample_negatives

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

N_ROWS = 4000
K = 300
NAMES = [f"f{j}" for j in range(6)]
MODEL = "sub"


@pytest.fixture(scope="session")
def unbalanced() -> tuple[np.ndarray, np.ndarray]:
    """1% positives, fixed seed, values rounded to what the CSV holds."""
    x, y = make_classification(
        n_samples=N_ROWS,
        n_features=len(NAMES),
        n_informative=4,
        weights=[0.99],
        flip_y=0,
        random_state=3,
    )
    return np.round(x, 6), y


@pytest.fixture(scope="session")
def csv_file(tmp_path_factory, unbalanced) -> Path:
    x, y = unbalanced
    lines = [",".join([*NAMES, "y"])]
    lines += [
        ",".join([*(f"{v:.6f}" for v in row), str(label)]) for row, label in zip(x, y, strict=True)
    ]
    path = tmp_path_factory.mktemp("unbalanced") / "claims.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def train_split(unbalanced) -> dict[str, np.ndarray]:
    """The reference split (test size 0.25, random_state 1), computed here as the oracle."""
    x, y = unbalanced
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=1)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def train_args(csv_file: Path, models_dir: Path, *extra: str) -> list[str]:
    return [
        *("--data", str(csv_file), "--label", "y"),
        *("--variant", f"name={MODEL},loss=builtin,epochs=3"),
        *("--models-dir", str(models_dir), "--no-report"),
        *("--subsample-negatives", str(K)),
        *extra,
    ]


@pytest.fixture(scope="session")
def model_folder(tmp_path_factory, csv_file) -> Path:
    models = tmp_path_factory.mktemp("models")
    assert main(train_args(csv_file, models)) == 0
    return models / MODEL


@pytest.fixture(scope="session")
def card(model_folder):
    return read_card(model_folder)


def test_card_shows_the_audit_and_beta(card, train_split):
    n_train_negatives = int((train_split["y_train"] == 0).sum())
    beta = K / n_train_negatives
    section = card.subsample
    assert section["beta"] == pytest.approx(beta)
    assert section["k"] == K and section["n_negatives"] == n_train_negatives
    assert section["n_positives"] == int(train_split["y_train"].sum())
    assert section["allow_biased"] is False
    audit = section["audit"]
    assert audit["biased"] is False and audit["k"] == K
    assert audit["p_value"] > audit["alpha"] == 0.01
    assert {d["feature"] for d in audit["drift"]} == set(NAMES)
    assert card.score_correction.kind == "prior_shift"
    assert card.score_correction.beta == pytest.approx(beta)
    assert card.score_correction.applied == "in_graph"


def test_held_out_split_is_not_subsampled(card, train_split):
    assert card.training.data.n_test == len(train_split["y_test"])
    assert card.held_out.labels == [int(v) for v in train_split["y_test"]]


def test_the_drawn_subsample_is_the_one_audited(card, train_split):
    """Replaying the recorded seed on the training split reproduces the card's audit."""
    sub = subsample_negatives(
        train_split["x_train"], train_split["y_train"], K, seed=card.subsample["seed"]
    )
    assert sub.audit.p_value == pytest.approx(card.subsample["audit"]["p_value"])
    assert sub.beta == pytest.approx(card.subsample["beta"])


def first_biased_seed(train_split, alpha: float) -> int:
    for seed in range(20):
        sub = subsample_negatives(
            train_split["x_train"], train_split["y_train"], K, seed=seed, alpha=alpha
        )
        if sub.audit.biased:
            return seed
    pytest.fail("no seed gave a subsample the audit flags at this alpha")


def test_biased_subsample_is_refused(capsys, tmp_path, csv_file, train_split):
    # A lax alpha makes the audit flag some uniform draws: it exercises the refusal.
    seed = first_biased_seed(train_split, alpha=0.9)
    args = train_args(csv_file, tmp_path, "--subsample-seed", str(seed), "--subsample-alpha", "0.9")
    code = main(args)
    err = capsys.readouterr().err
    assert code != 0
    refusal = [line for line in err.splitlines() if "error:" in line]
    assert len(refusal) == 1
    assert "biased" in refusal[0] and "--allow-biased" in refusal[0]
    assert not (tmp_path / MODEL).exists()


def test_allow_biased_trains_and_records_it(tmp_path, csv_file, train_split):
    seed = first_biased_seed(train_split, alpha=0.9)
    args = train_args(
        csv_file,
        tmp_path,
        *("--subsample-seed", str(seed), "--subsample-alpha", "0.9", "--allow-biased"),
    )
    assert main(args) == 0
    section = read_card(tmp_path / MODEL).subsample
    assert section["allow_biased"] is True and section["audit"]["biased"] is True


def test_bad_subsample_options_give_one_line(capsys, tmp_path, csv_file):
    args = train_args(csv_file, tmp_path, "--subsample-stratify-by", "nope")
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("python -m training: error:") and "'nope'" in err[-1]
    args = [a if a != str(K) else "999999" for a in train_args(csv_file, tmp_path)]
    assert main(args) == 2
    assert "between 2 and" in capsys.readouterr().err


def test_onnx_graph_applies_the_correction(train_split):
    """Same fitted weights exported with and without beta; the difference is the formula."""
    from training.export import onnx_scores, to_onnx
    from training.fit import fit_variant
    from training.variants import parse_variant

    x, y = train_split["x_train"], train_split["y_train"]
    sub = subsample_negatives(x, y, K, seed=0)
    fitted = fit_variant(
        parse_variant("name=raw,loss=builtin,epochs=2"), x[sub.keep], y[sub.keep], progress=None
    )
    x_test = train_split["x_test"]
    raw = onnx_scores(to_onnx(fitted, beta=1.0), x_test)
    corrected = onnx_scores(to_onnx(fitted, beta=sub.beta), x_test)
    kernel, bias = fitted.weights
    oracle_raw = 1 / (1 + np.exp(-(fitted.scaler.transform(x_test) @ kernel + bias).ravel()))
    np.testing.assert_allclose(raw, oracle_raw, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(
        corrected, correct_scores(oracle_raw, sub.beta), rtol=1e-4, atol=1e-6
    )
    assert np.all(corrected <= raw + 1e-7)


def test_service_serves_the_subsampled_model_unchanged(model_folder, card, train_split):
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings

    app = create_app(Settings(model_dir=model_folder.parent, default_model=MODEL))
    with TestClient(app) as client:
        shown = client.get(f"/models/{MODEL}")
        assert shown.status_code == 200
        body = shown.json()
        assert body["subsample"]["audit"]["biased"] is False
        assert body["subsample"]["beta"] == pytest.approx(card.subsample["beta"])
        assert body["score_correction"]["beta"] == pytest.approx(card.score_correction.beta)
        rows = train_split["x_test"][:50]
        answer = client.post("/predict", json={"model": MODEL, "instances": rows.tolist()})
        assert answer.status_code == 200
        served = [p["score"] for p in answer.json()["predictions"]]
    # The exporter scored the held-out split with the same (corrected) graph.
    np.testing.assert_allclose(served, card.held_out.scores[:50], rtol=1e-5, atol=1e-7)
