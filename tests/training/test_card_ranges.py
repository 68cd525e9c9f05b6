"""The shipped cards' training ranges: what the migration script (training.card_ranges)
recorded equals the training split rebuilt by scikit-learn, and model.onnx still matches
each card's sha256."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

from costaware.card import read_card, verify_model_file
from training.card_ranges import RangesError, main, with_ranges

MODELS = Path(__file__).resolve().parents[2] / "models"
SHIPPED = ("builtin", "custom-5to1", "medical", "tuned")


@pytest.fixture(scope="module")
def x_train():
    bunch = load_breast_cancer()
    x, _, _, _ = train_test_split(bunch.data, 1 - bunch.target, test_size=0.25, random_state=1)
    return x


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_card_ranges_are_the_training_split(name, x_train):
    card = read_card(MODELS / name)
    verify_model_file(MODELS / name, card)
    ranges = card.feature_ranges
    assert ranges is not None
    np.testing.assert_array_equal([r.min for r in ranges], x_train.min(axis=0))
    np.testing.assert_array_equal([r.max for r in ranges], x_train.max(axis=0))
    np.testing.assert_allclose([r.p0_5 for r in ranges], np.percentile(x_train, 0.5, axis=0))
    assert with_ranges(card) == card  # the migration is idempotent


def test_migration_writes_ranges_and_keeps_the_model(tmp_path):
    folder = tmp_path / "medical"
    shutil.copytree(MODELS / "medical", folder)
    card = read_card(folder)
    stripped = card.model_copy(update={"feature_ranges": None})
    (folder / "model-card.json").write_text(stripped.model_dump_json(indent=2))
    assert read_card(folder).feature_ranges is None
    assert main([str(folder)]) == 0
    migrated = read_card(folder)
    assert migrated.feature_ranges == card.feature_ranges
    verify_model_file(folder, migrated)


def test_migration_refuses_a_card_it_cannot_rebuild():
    card = read_card(MODELS / "medical")
    data = card.training.data.model_copy(update={"split_seed": 2})
    other = card.model_copy(update={"training": card.training.model_copy(update={"data": data})})
    with pytest.raises(RangesError, match="held-out split differs"):
        with_ranges(other)
