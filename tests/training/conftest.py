"""Session fixtures for the training tests, chained: data -> split -> fit -> export.

Training is the slow part, so one short fit (few epochs) is shared by every test
that only needs *a* trained model; tests about the reference results use the
shipped models instead of retraining.
"""

from pathlib import Path

import pytest

from training.data import load_reference, split
from training.variants import VariantSpec

DATA = Path(__file__).parent / "data"
SHORT_EPOCHS = 3


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="session")
def reference():
    return load_reference()


@pytest.fixture(scope="session")
def reference_split(reference):
    return split(reference)


@pytest.fixture(scope="session")
def short_spec():
    return VariantSpec("short-5to1", loss="custom", fn_cost=5, fp_cost=1, epochs=SHORT_EPOCHS)


@pytest.fixture(scope="session")
def fitted(short_spec, reference_split):
    from training.fit import fit_on_split

    return fit_on_split(short_spec, reference_split, progress=None)


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def exported(fitted, reference, reference_split, models_dir):
    from training.calibrate import fit_binary, make_plan
    from training.export import export_model

    # a map fitted on the training scores (no cross-fitting: these tests are about export)
    calibration = fit_binary(
        make_plan("sigmoid", "binary"),
        fitted.predict(reference_split.x_train),
        reference_split.y_train,
    )
    return export_model(fitted, reference, reference_split, models_dir, calibration=calibration)
