"""Chained fixtures: fixture models on disk -> settings -> app -> client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from _servicekit import N_FEATURES, LogisticSpec, write_model
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings

# name -> (seed, threshold, margin, fn_cost): three models like the shipped ones.
FIXTURE_MODELS = {
    "medical": (1, 0.3, 0.1, 200.0),
    "builtin": (2, 0.5, 0.1, 1.0),
    "custom-5to1": (3, 0.4, 0.05, 5.0),
}


@pytest.fixture(scope="session")
def specs() -> dict[str, LogisticSpec]:
    return {name: LogisticSpec.random(seed) for name, (seed, *_rest) in FIXTURE_MODELS.items()}


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory, specs) -> Path:
    root = tmp_path_factory.mktemp("models")
    for name, (_seed, threshold, margin, fn_cost) in FIXTURE_MODELS.items():
        write_model(
            root / name, name, specs[name], threshold=threshold, margin=margin, fn_cost=fn_cost
        )
    return root


@pytest.fixture(scope="session")
def instances() -> np.ndarray:
    """Feature rows spread around the fixture models' means (so scores span (0, 1))."""
    return np.random.default_rng(7).normal(0, 4, size=(25, N_FEATURES)).round(4)


@pytest.fixture(scope="module")
def settings(model_dir: Path) -> Settings:
    return Settings(model_dir=model_dir, max_body_bytes=256 * 1024)


@pytest.fixture(scope="module")
def app(settings: Settings):
    return create_app(settings)


@pytest.fixture(scope="module")
def client(app) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


# Calibrated models (tests/service/_calibrated.py): the shipped medical and wine graphs with
# a calibration map appended, beside the shipped (uncalibrated) builtin.
@pytest.fixture(scope="module")
def calibrated_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from _calibrated import model_dir as calibrated_model_dir

    return calibrated_model_dir(tmp_path_factory.mktemp("calibrated"), "medical", "wine")


@pytest.fixture(scope="module")
def calibrated_client(calibrated_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(model_dir=calibrated_dir, default_model="medical"))) as c:
        yield c
