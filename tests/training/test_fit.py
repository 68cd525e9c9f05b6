import numpy as np

from training.fit import fit_on_split


def test_same_seed_same_scores(fitted, short_spec, reference_split):
    again = fit_on_split(short_spec, reference_split, progress=None)
    np.testing.assert_array_equal(
        again.predict(reference_split.x_test), fitted.predict(reference_split.x_test)
    )


def test_another_seed_other_scores(fitted, short_spec, reference_split):
    other = fit_on_split(short_spec.with_(seed=2), reference_split, progress=None)
    assert not np.array_equal(
        other.predict(reference_split.x_test), fitted.predict(reference_split.x_test)
    )


def test_progress_reports_epoch_blocks(short_spec, reference_split):
    lines = []
    fit_on_split(short_spec.with_(epochs=20), reference_split, progress=lines.append)
    assert [line.split()[2] for line in lines] == ["10/20", "20/20"]
    assert all(line.startswith("[short-5to1] epoch") and " loss " in line for line in lines)


def test_scaler_is_fitted_on_the_training_split_only(fitted, reference_split):
    np.testing.assert_allclose(fitted.scaler.mean, reference_split.x_train.mean(axis=0))
    np.testing.assert_allclose(fitted.scaler.scale, reference_split.x_train.std(axis=0))
