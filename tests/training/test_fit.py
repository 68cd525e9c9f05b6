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


def test_draws_from_the_global_generators_during_a_fit_do_not_change_it(
    fitted, short_spec, reference_split, monkeypatch
):
    """Other code in the process (a Dask worker's event loop, say) draws from Python's and
    numpy's global generators while a fit runs; the fit must not depend on them."""
    import random

    import training.fit

    seed_as_usual = training.fit.set_determinism

    def seed_then_someone_else_draws(seed: int) -> None:
        seed_as_usual(seed)
        random.random()
        np.random.random()

    monkeypatch.setattr(training.fit, "set_determinism", seed_then_someone_else_draws)
    disturbed = fit_on_split(short_spec, reference_split, progress=None)
    np.testing.assert_array_equal(
        disturbed.predict(reference_split.x_test), fitted.predict(reference_split.x_test)
    )


def test_fits_started_together_in_threads_equal_fits_run_alone(short_spec, reference_split):
    """A Dask worker with several threads runs several fits at once in one process."""
    from concurrent.futures import ThreadPoolExecutor

    specs = [short_spec.with_(seed=seed) for seed in (1, 2, 3)]
    alone = [fit_on_split(spec, reference_split, progress=None) for spec in specs]
    with ThreadPoolExecutor(max_workers=3) as pool:
        together = list(
            pool.map(lambda spec: fit_on_split(spec, reference_split, progress=None), specs)
        )
    for one, other in zip(alone, together, strict=True):
        np.testing.assert_array_equal(
            one.predict(reference_split.x_test), other.predict(reference_split.x_test)
        )
