"""Cost tuning: the held-out split stays sealed, fold thresholds travel honestly, end to end.

Oracles are independent of the code under test: expected values are recomputed by
hand from the reference QALY values, the in-sample best threshold by brute force
over every candidate cut, fold membership with plain set arithmetic, scores of the
exported model with onnxruntime, and serving with the real service's TestClient.
"""

import dataclasses
import json

import numpy as np
import onnxruntime as ort
import pytest

from costaware.card import read_card, verify_model_file
from costaware.economics import REFERENCE_QALY_VALUES, CostMatrix
from training.tuning import (
    BUILTIN,
    IN_SAMPLE,
    CostSearch,
    HeldOutAccessError,
    SealedSplit,
    TuningError,
    default_grid,
    default_rules,
    parse_grid,
    parse_rules,
    ratio_setting,
    resolve_selection,
    tune,
)

V_TP, V_FP, V_TN, V_FN = -35280.0, -1287.67, 0.0, -252000.0
TINY_EPOCHS = 3
TINY_K = 3


def hand_ev(labels, scores, threshold):
    """Mean outcome value per instance when treating score >= threshold (by counting)."""
    y = np.asarray(labels) == 1
    treat = np.asarray(scores, dtype=np.float64) >= threshold
    tp, fp = np.sum(y & treat), np.sum(~y & treat)
    fn, tn = np.sum(y & ~treat), np.sum(~y & ~treat)
    return (tp * V_TP + fp * V_FP + tn * V_TN + fn * V_FN) / len(y)


def brute_force_best(labels, scores):
    """The highest in-sample value over every distinct score as a cut, plus treating no one."""
    candidates = [*np.unique(np.asarray(scores, dtype=np.float64)), np.inf]
    return max(hand_ev(labels, scores, t) for t in candidates)


@pytest.fixture(scope="session")
def tiny_grid():
    return [BUILTIN, ratio_setting(10.0)]


@pytest.fixture(scope="session")
def guard(reference_split):
    return SealedSplit(reference_split)


@pytest.fixture(scope="session")
def sealed_during_fits():
    return []


@pytest.fixture(scope="session")
def outcome(reference, guard, tiny_grid, sealed_during_fits, tmp_path_factory):
    def on_fit(done, total, setting, fold):
        sealed_during_fits.append(guard.sealed)

    search = CostSearch(
        REFERENCE_QALY_VALUES, grid=tiny_grid, k=TINY_K, seed=1, epochs=TINY_EPOCHS, on_fit=on_fit
    )
    return tune(reference, guard, search, tmp_path_factory.mktemp("tuned-models"))


@pytest.fixture(scope="session")
def search(outcome):
    return outcome.tuned.search


@pytest.fixture(scope="session")
def card(outcome):
    return read_card(outcome.export.folder)


# ---------------------------------------------------------------------------
# The guard


def test_sealed_split_raises_on_any_read_of_the_held_out_part(reference_split):
    sealed = SealedSplit(reference_split)
    with pytest.raises(HeldOutAccessError, match="x_test"):
        _ = sealed.x_test
    with pytest.raises(HeldOutAccessError, match="y_test"):
        _ = sealed.y_test
    assert sealed.attempts == 2
    assert sealed.x_train is reference_split.x_train
    assert sealed.unseal() is reference_split
    assert sealed.x_test is reference_split.x_test


def test_the_search_never_reads_the_held_out_split(outcome, guard, sealed_during_fits, search):
    # Every fit of the search ran with the split sealed, and nothing tried to read it
    # (attempts counts reads even if a caller had swallowed the exception).
    assert len(sealed_during_fits) == len(search.settings) * TINY_K
    assert all(sealed_during_fits)
    assert guard.attempts == 0
    assert not guard.sealed  # unsealed afterwards, for the export only


def test_folds_partition_the_training_split_only(search, reference_split):
    n_train = len(reference_split.y_train)
    for result in search.settings:
        validation = np.concatenate([f.val_index for f in result.folds])
        assert sorted(validation.tolist()) == list(range(n_train))
        for fold in result.folds:
            assert set(fold.train_index) | set(fold.val_index) == set(range(n_train))
            assert not set(fold.train_index) & set(fold.val_index)
        # stratified: each validation part has the training split's positives within one row
        positives = [int(reference_split.y_train[f.val_index].sum()) for f in result.folds]
        assert max(positives) - min(positives) <= 1
    # every setting saw the same folds, so they differ only in the loss
    first = [f.val_index.tolist() for f in search.settings[0].folds]
    assert all([f.val_index.tolist() for f in r.folds] == first for r in search.settings)


# ---------------------------------------------------------------------------
# Fold thresholds


def test_each_fold_in_sample_threshold_is_best_on_its_training_part(search, reference_split):
    y = reference_split.y_train
    for result in search.settings:
        for fold in result.folds:
            y_fit = y[fold.train_index]
            best = brute_force_best(y_fit, fold.train_scores)
            achieved = hand_ev(y_fit, fold.train_scores, fold.thresholds[IN_SAMPLE])
            assert achieved == pytest.approx(best, rel=1e-12)
            assert fold.train_values[IN_SAMPLE] == pytest.approx(achieved, rel=1e-12)


def test_fold_values_compare_float32_scores_with_the_threshold_as_the_service_does(monkeypatch):
    """The in-sample cut lies midway between two adjacent float32 scores; as a float32 it
    would round onto the lower one. The fold's values must treat that row as the served
    model does (the service compares the float32 score, as a Python float, with the card's
    float64 threshold), i.e. leave it untreated, so the in-sample value is the best one."""
    from training import tuning

    low = np.float32(0.3)
    high = np.nextafter(low, np.float32(1.0))
    scores = np.array([0.1, low, high, 0.9], dtype=np.float32)
    labels = np.array([0, 0, 1, 1])
    t = tuning.choose_threshold(labels, scores, REFERENCE_QALY_VALUES)
    assert float(low) < t < float(high) and np.float32(t) == low  # the case this test is about

    class GivenScores:  # the fit's stand-in: row i scores scores[i]
        def predict(self, x):
            return scores[x[:, 0].astype(int)]

    monkeypatch.setattr(tuning, "fit_variant", lambda *args, **kwargs: GivenScores())
    rows = np.arange(len(labels))
    fold = tuning.evaluate_fold(
        BUILTIN.spec("stub", epochs=1, seed=1),
        rows.reshape(-1, 1).astype(np.float64),
        labels,
        1,
        rows,
        rows,
        REFERENCE_QALY_VALUES,
        [tuning.IN_SAMPLE_BEST],
    )
    assert fold.thresholds[IN_SAMPLE] == t
    best = brute_force_best(labels, scores)
    assert hand_ev(labels, scores, t) == best
    assert fold.train_values[IN_SAMPLE] == best
    assert fold.val_values[IN_SAMPLE] == best


def test_fixed_rules_are_the_same_on_every_fold_and_elkan_is_the_matrix_t_star(search):
    t_star = (V_TN - V_FP) / ((V_TN - V_FP) + (V_TP - V_FN))  # about 0.0059
    fixed = {r.name: r.fixed for r in search.rules if r.fixed is not None}
    assert fixed["0 (treat all)"] == 0.0 and fixed["0.5"] == 0.5
    assert [v for n, v in fixed.items() if n.startswith("t*")] == [pytest.approx(t_star)]
    for result in search.settings:
        for fold in result.folds:
            assert {n: fold.thresholds[n] for n in fixed} == fixed


def test_every_rule_threshold_is_the_one_applied_to_its_validation_part(search, reference_split):
    y = reference_split.y_train
    assert len(search.rules) == len(default_rules(REFERENCE_QALY_VALUES))
    for result in search.settings:
        for candidate in result.candidates:
            name = candidate.rule.name
            by_hand = [
                hand_ev(y[f.val_index], f.val_scores, f.thresholds[name]) for f in result.folds
            ]
            assert [f.val_values[name] for f in result.folds] == pytest.approx(by_hand, rel=1e-12)
            assert candidate.mean == pytest.approx(np.mean(by_hand), rel=1e-12)
            assert candidate.std == pytest.approx(np.std(by_hand, ddof=1), rel=1e-9)
        # treating everyone does not depend on the model: by hand from the labels alone
        treat_all = result.candidate("0 (treat all)")
        assert treat_all.values == pytest.approx(
            [(V_TP * y[f.val_index] + V_FP * (1 - y[f.val_index])).mean() for f in result.folds]
        )


def test_fold_scores_come_from_a_model_fitted_on_that_folds_training_part(search, reference_split):
    from training.fit import fit_variant

    result = search.settings[1]
    fold = result.folds[1]
    spec = result.setting.spec("refit", epochs=TINY_EPOCHS, seed=search.seed)
    x, y = reference_split.x_train, reference_split.y_train
    refit = fit_variant(spec, x[fold.train_index], y[fold.train_index], progress=None)
    # fits are deterministic for a seed, so the refit reproduces the recorded scores
    np.testing.assert_array_equal(refit.predict(x[fold.val_index]), fold.val_scores)
    np.testing.assert_array_equal(refit.predict(x[fold.train_index]), fold.train_scores)


def test_default_winner_is_the_best_setting_at_elkans_threshold(search):
    # Elkan's t* from the matrix by hand: fp cost over fp cost plus fn cost.
    t_star = (V_TN - V_FP) / ((V_TN - V_FP) + (V_TP - V_FN))
    assert search.selection == "elkan"
    at_t_star = [c for c in search.candidates if c.rule.fixed == pytest.approx(t_star)]
    assert len(at_t_star) == len(search.settings)
    means = [c.mean for c in at_t_star]
    assert search.winner.same_as(at_t_star[means.index(max(means))])  # first of ties
    # every other rule was still cross-validated and kept, for the table and the card
    assert len(search.candidates) == len(search.settings) * len(search.rules)


def test_best_selection_takes_the_highest_cv_mean_over_settings_and_rules(search):
    best = dataclasses.replace(search, selection="best")
    means = [c.mean for c in best.candidates]
    assert best.winner.mean == max(means)
    assert best.winner.same_as(best.candidates[means.index(max(means))])  # first of ties
    assert best.winner.mean >= search.winner.mean


def test_selection_needs_its_rule():
    costs = REFERENCE_QALY_VALUES
    with_t_star = parse_rules("in-sample,elkan", costs)
    without = parse_rules("in-sample,0.01", costs)
    assert resolve_selection(None, with_t_star, costs) == "elkan"
    assert resolve_selection(None, without, costs) == "best"
    assert resolve_selection("best", with_t_star, costs) == "best"
    # a t* of 0 is found whatever the rule is called ("0" came first, "elkan" is its twin)
    treat_all = CostMatrix(tp=0, fp=0, tn=-1, fn=-5)  # t* is 0: treat everyone
    assert resolve_selection(None, default_rules(treat_all), treat_all) == "elkan"
    with pytest.raises(TuningError, match=r"--select elkan: .*add 'elkan' to --thresholds"):
        resolve_selection("elkan", without, costs)
    with pytest.raises(TuningError, match="--select 'worst'"):
        resolve_selection("worst", with_t_star, costs)


# ---------------------------------------------------------------------------
# End to end


def test_tuned_model_is_exported_with_its_search_in_the_card(outcome, card, search):
    assert card.name == "tuned"
    verify_model_file(outcome.export.folder, card)
    tuning = card.tuning
    assert tuning is not None
    assert tuning["k"] == TINY_K and tuning["seed"] == 1 and tuning["epochs"] == TINY_EPOCHS
    assert [g["label"] for g in tuning["grid"]] == ["builtin", "10:1"]
    assert tuning["winner"] == search.winner.setting.label
    assert tuning["winner_rule"] == search.winner.rule.name
    assert tuning["selection"] == "elkan" and "Elkan's t*" in tuning["selection_rule"]
    assert tuning["chosen_threshold"] == card.threshold
    assert list(tuning["threshold_rules"]) == [r.name for r in search.rules]
    for entry, result in zip(tuning["grid"], search.settings, strict=True):
        for candidate in result.candidates:
            stats = entry["rules"][candidate.rule.name]
            assert stats["cv_mean"] == candidate.mean and stats["cv_std"] == candidate.std
        assert [f["thresholds"] for f in entry["folds"]] == [f.thresholds for f in result.folds]
    assert card.cost_matrix is not None
    assert card.cost_matrix.fn == V_FN and card.cost_matrix.fp == V_FP
    won = search.winner.setting
    assert (card.loss.type, card.training.epochs) == (won.loss, TINY_EPOCHS)


def test_tuned_map_is_fitted_on_the_winners_out_of_fold_scores(card, search, reference_split):
    from sklearn.calibration import _SigmoidCalibration

    from costaware.calibration import logit

    # the oracle: each training row's score from the winning setting's fold fit without it,
    # read from the card's own tuning section, and scikit-learn's calibrator on them
    winner = next(g for g in card.tuning["grid"] if g["label"] == search.winner.setting.label)
    scores = np.zeros(len(reference_split.y_train))
    for fold, result in zip(winner["folds"], search.winner.folds, strict=True):
        scores[result.val_index] = result.val_scores
        assert fold["fold"] == result.fold
    oracle = _SigmoidCalibration().fit(logit(scores), reference_split.y_train)
    section = card.calibration
    assert (section.fitted_on, section.folds, section.rows) == ("out_of_fold", TINY_K, 426)
    assert section.map.a == pytest.approx(oracle.a_, rel=1e-9)
    assert section.map.b == pytest.approx(oracle.b_, rel=1e-9, abs=1e-12)


def test_card_threshold_follows_the_winning_rule_on_the_served_model(
    outcome, card, search, reference_split
):
    folder = outcome.export.folder
    session = ort.InferenceSession(
        str(verify_model_file(folder, card)), providers=["CPUExecutionProvider"]
    )

    def served(x):
        return session.run(["score"], {"features": x.astype(np.float32)})[0].ravel()

    y_train = reference_split.y_train
    train_scores = served(reference_split.x_train)
    rule = search.winner.rule
    if rule.fixed is None:
        assert hand_ev(y_train, train_scores, card.threshold) == pytest.approx(
            brute_force_best(y_train, train_scores), rel=1e-12
        )
    else:
        assert card.threshold == rule.fixed
    test_scores = served(reference_split.x_test)
    np.testing.assert_allclose(card.held_out.scores, test_scores, atol=1e-6)
    assert card.metrics.reference_expected_value == pytest.approx(
        hand_ev(reference_split.y_test, test_scores, card.threshold), rel=1e-9
    )


def test_service_serves_the_tuned_model(outcome, card, reference_split):
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings

    with TestClient(create_app(Settings(model_dir=outcome.export.folder.parent))) as client:
        listed = client.get("/models").json()
        assert [m["name"] for m in listed["models"]] == ["tuned"]
        assert listed["models"][0]["threshold"] == card.threshold
        rows = reference_split.x_test[:5].tolist()
        answer = client.post("/predict", json={"model": "tuned", "instances": rows}).json()
    labels = [p["label"] for p in answer["predictions"]]
    assert labels == [int(s >= card.threshold) for s in card.held_out.scores[:5]]


# ---------------------------------------------------------------------------
# Grid and options


def test_default_grid_spans_one_to_a_thousand_and_includes_the_matrix_weights():
    grid = default_grid(REFERENCE_QALY_VALUES)
    ratios = [s.ratio for s in grid if s.source == "ratio"]
    assert grid[0].loss == "builtin"
    assert ratios[0] == pytest.approx(1.0) and ratios[-1] == pytest.approx(1000.0)
    assert np.allclose(np.diff(np.log10(ratios)), 0.5)
    matrix = [s for s in grid if s.source == "matrix"]
    assert len(matrix) == 1
    # fn_cost = v_tp - v_fn, fp_cost = v_tn - v_fp, by hand
    assert (matrix[0].fn_cost, matrix[0].fp_cost) == pytest.approx((V_TP - V_FN, V_TN - V_FP))


def test_parse_grid_entries():
    grid = parse_grid("builtin, 5, 3:2, matrix", REFERENCE_QALY_VALUES)
    assert [(s.loss, s.fn_cost, s.fp_cost) for s in grid[:3]] == [
        ("builtin", 1.0, 1.0),
        ("custom", 5.0, 1.0),
        ("custom", 3.0, 2.0),
    ]
    assert grid[3].source == "matrix"
    for bad in ("builtin,abc", "5,5", "-1", "0:0"):
        with pytest.raises(TuningError, match="--grid"):
            parse_grid(bad, REFERENCE_QALY_VALUES)


def test_parse_rules_entries():
    rules = parse_rules("in-sample, 0, elkan, 0.5", REFERENCE_QALY_VALUES)
    assert [r.fixed for r in rules] == [None, 0.0, pytest.approx(1287.67 / 218007.67), 0.5]
    for bad in ("in-sample,x", "0.5,0.50", "1.5", "-0.1", "nan"):
        with pytest.raises(TuningError, match="--thresholds"):
            parse_rules(bad, REFERENCE_QALY_VALUES)


def test_elkan_rule_on_matrices_without_a_threshold():
    from costaware.economics import CostMatrix

    treat_all = CostMatrix(tp=0, fp=0, tn=-1, fn=-5)  # v_fp >= v_tn and v_tp >= v_fn
    assert parse_rules("elkan", treat_all)[0].fixed == 0.0
    indifferent = CostMatrix(tp=-1, fp=-2, tn=-2, fn=-1)
    with pytest.raises(TuningError, match="elkan: the cost matrix has no Elkan threshold"):
        parse_rules("elkan", indifferent)
    # the default rules drop t* there rather than refuse
    assert all(not r.name.startswith("t*") for r in default_rules(indifferent))


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--cost-matrix", "tp=1,fp=x,tn=0,fn=-5"], "--cost-matrix: fp='x' is not a number"),
        (["--cost-matrix", "tp=1,fp=-1,tn=0"], "--cost-matrix.fn: missing"),
        (["--cost-matrix", "/nonexistent/matrix.json"], "/nonexistent/matrix.json: no such file"),
        (["--grid", "builtin,ten"], "--grid: 'ten'"),
        (["--thresholds", "in-sample,2"], "--thresholds: 2.0 is not a threshold in [0, 1]"),
        (["--k", "500"], "--k 500: the training split has only"),
        (["--name", "../x"], "--name '../x'"),
        (["--data", "/nonexistent.csv"], "/nonexistent.csv"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(argv, needle, capsys, tmp_path):
    from training.cli import main

    status = main(["tune", *argv, "--models-dir", str(tmp_path), "--no-report"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert len(err) == 1 and needle in err[0], err
    assert "Traceback" not in err[0]
    assert not list(tmp_path.iterdir())


def test_cost_matrix_from_a_json_file_or_a_model_card(tmp_path):
    from training.options import OptionError, parse_cost_matrix

    plain = tmp_path / "matrix.json"
    plain.write_text(json.dumps({"tp": -1, "fp": -2, "tn": 0, "fn": -9}))
    assert parse_cost_matrix(str(plain)).loss_weights() == (8.0, 2.0)
    wrapped = tmp_path / "card.json"
    wrapped.write_text(
        json.dumps({"name": "x", "cost_matrix": {"tp": 0, "fp": -1, "tn": 0, "fn": -3}})
    )
    assert parse_cost_matrix(str(wrapped)).loss_weights() == (3.0, 1.0)
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(OptionError, match="not a readable JSON file"):
        parse_cost_matrix(str(broken))


def test_cli_end_to_end_prints_the_table_and_writes_the_report(capsys, tmp_path, reference_split):
    from training.cli import main

    models, reports = tmp_path / "models", tmp_path / "reports"
    argv = ["tune", "--grid", "10,matrix", "--k", "2", "--epochs", "2", "--name", "cli-tuned"]
    argv += ["--thresholds", "in-sample"]
    status = main([*argv, "--models-dir", str(models), "--report-dir", str(reports)])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert "CV EV mean" in captured.out and "cli-tuned: loss" in captured.out
    assert "4/4 fits" in captured.err
    card = read_card(models / "cli-tuned")
    assert card.tuning["k"] == 2
    assert list(card.tuning["threshold_rules"]) == [IN_SAMPLE]
    # with the in-sample rule only, the served model's threshold is in-sample best on the
    # training split (the CLI's default split is the reference split)
    session = ort.InferenceSession(
        str(verify_model_file(models / "cli-tuned", card)), providers=["CPUExecutionProvider"]
    )
    x, y = reference_split.x_train, reference_split.y_train
    scores = session.run(["score"], {"features": x.astype(np.float32)})[0].ravel()
    assert hand_ev(y, scores, card.threshold) == pytest.approx(brute_force_best(y, scores))
    for name in ("tuning.html", "tuning-cv.png", "tuning-threshold.png"):
        assert (reports / name).stat().st_size > 0


# ---------------------------------------------------------------------------
# The shipped model (models/tuned, made by `python -m training tune` with defaults)


def test_shipped_tuned_model_beats_the_reference_models_held_out():
    from pathlib import Path

    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    models = Path(__file__).resolve().parents[2] / "models"
    bunch = load_breast_cancer()
    _, x_test, _, y_test = train_test_split(
        bunch.data, 1 - bunch.target, test_size=0.25, random_state=1
    )
    held_out = {}
    for name in ("tuned", "builtin", "custom-5to1", "medical"):
        folder = models / name
        card = read_card(folder)
        session = ort.InferenceSession(
            str(verify_model_file(folder, card)), providers=["CPUExecutionProvider"]
        )
        scores = session.run(["score"], {"features": x_test.astype(np.float32)})[0].ravel()
        held_out[name] = hand_ev(y_test, scores, card.threshold)
    tuning = read_card(models / "tuned").tuning
    assert tuning["k"] == 5 and len(tuning["grid"]) == 9 and tuning["epochs"] == 50
    assert list(tuning["threshold_rules"]) == [r.name for r in default_rules(REFERENCE_QALY_VALUES)]
    assert held_out["tuned"] >= max(held_out[n] for n in ("builtin", "custom-5to1", "medical"))


# ---------------------------------------------------------------------------
# On a cluster


def test_tuning_on_a_dask_cluster_gives_the_local_winner_and_card(
    outcome, reference, reference_split, tiny_grid, card, cluster, tmp_path
):
    """The fold fits run on the real two-process LocalCluster (``tune --workers``'s map);
    the search, the winner, the card and the exported graph are the local run's."""
    from training.tuning_cli import dask_map

    search = CostSearch(
        REFERENCE_QALY_VALUES,
        grid=tiny_grid,
        k=TINY_K,
        seed=1,
        epochs=TINY_EPOCHS,
        map_fn=dask_map(cluster),
    )
    on_cluster = tune(reference, SealedSplit(reference_split), search, tmp_path)
    assert on_cluster.tuned.search.winner.label == outcome.tuned.search.winner.label
    assert on_cluster.tuned.search.to_dict() == outcome.tuned.search.to_dict()
    for mine, theirs in zip(
        on_cluster.tuned.search.settings, outcome.tuned.search.settings, strict=True
    ):
        for a, b in zip(mine.folds, theirs.folds, strict=True):
            assert np.array_equal(a.val_scores, b.val_scores)
    remote_card = read_card(on_cluster.export.folder).model_dump(mode="json")
    local_card = card.model_dump(mode="json")
    # A second export in one process names the graph's nodes differently (TensorFlow's
    # function counters), so the file's digest and the version taken from it differ; the
    # card otherwise, held-out scores included, and the graph's answers are the same.
    for one in (remote_card, local_card):
        for key in ("created_at", "version"):
            one.pop(key)
        one["onnx"].pop("sha256")
    assert remote_card == local_card
    x = reference_split.x_test.astype(np.float32)
    scores = [
        ort.InferenceSession(str(folder / "model.onnx")).run(None, {"features": x})[0]
        for folder in (on_cluster.export.folder, outcome.export.folder)
    ]
    assert np.array_equal(scores[0], scores[1])


def test_cli_on_a_dask_scheduler_writes_the_local_card(cluster, capsys, tmp_path):
    """``tune --scheduler ADDRESS`` (the session's real two-process cluster) and a local
    ``tune`` print the same table and write the same card."""
    from training.cli import main

    argv = ["tune", "--grid", "builtin,10,matrix", "--k", "3", "--epochs", "3", "--no-report"]
    cards = []
    for where, extra in (("local", []), ("cluster", ["--scheduler", cluster.scheduler.address])):
        status = main([*argv, *extra, "--models-dir", str(tmp_path / where)])
        captured = capsys.readouterr()
        assert status == 0, captured.err
        assert ("cross-validation fits on" in captured.err) == (where == "cluster")
        table = captured.out.replace(str(tmp_path / where), "<models>")
        card = read_card(tmp_path / where / "tuned").model_dump(mode="json")
        for key in ("created_at", "version"):
            card.pop(key)
        card["onnx"].pop("sha256")
        cards.append((table, card))
    assert cards[0] == cards[1]
