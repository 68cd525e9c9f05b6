import hashlib
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    precision_score,
    recall_score,
    roc_auc_score,
)

from costaware.card import read_card, verify_model_file
from training.export import PARITY_TOLERANCE, ExportError, export_model, to_onnx
from training.subsample import correct_scores


def _ort_scores(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["score"], {"features": x.astype(np.float32)})[0]


@pytest.fixture(scope="module")
def card(exported):
    return read_card(exported.folder)


def test_graph_contract(exported, reference):
    model = onnx.load(exported.folder / "model.onnx")
    onnx.checker.check_model(model)
    (inp,), (out, probability) = model.graph.input, model.graph.output
    assert (inp.name, out.name, probability.name) == ("features", "score", "probability")
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [d.dim_value for d in inp.type.tensor_type.shape.dim][1:] == [30]
    assert [d.dim_value for d in out.type.tensor_type.shape.dim][1:] == [1]


def test_onnx_matches_keras_on_raw_features(exported, fitted, reference_split):
    # the oracle: Keras on features scaled outside the graph
    x = reference_split.x_test
    keras_scores = np.asarray(fitted.model((x - fitted.scaler.mean) / fitted.scaler.scale)).ravel()
    onnx_scores = _ort_scores(exported.folder / "model.onnx", x).ravel()
    assert np.max(np.abs(onnx_scores - keras_scores)) <= PARITY_TOLERANCE


def test_card_sha256_matches_the_file(exported, card):
    digest = hashlib.sha256((exported.folder / "model.onnx").read_bytes()).hexdigest()
    assert card.onnx.sha256 == digest
    assert verify_model_file(exported.folder, card) == exported.folder / "model.onnx"


def test_card_fields(card, short_spec, reference):
    assert card.name == short_spec.name
    assert (card.loss.type, card.loss.fn_cost, card.loss.fp_cost) == ("custom", 5.0, 1.0)
    assert (card.threshold, card.margin) == (0.5, 0.1)
    assert card.features == reference.feature_names
    assert (card.onnx.input_name, card.onnx.opset) == ("features", 17)
    assert card.training.seed == 1 and card.training.epochs == short_spec.epochs
    assert {"tensorflow", "keras", "tf2onnx", "onnxruntime", "numpy"} <= set(
        card.training.library_versions
    )
    assert card.training.data.sha256 == reference.sha256
    assert (card.training.data.n_train, card.training.data.n_test) == (426, 143)
    assert card.score_correction.kind == "none"


def test_card_held_out_scores_are_what_onnxruntime_serves(exported, card, reference_split):
    np.testing.assert_array_equal(card.held_out.labels, reference_split.y_test)
    served = _ort_scores(exported.folder / "model.onnx", reference_split.x_test).ravel()
    np.testing.assert_array_equal(np.float32(card.held_out.scores), served)


def test_card_metrics_agree_with_sklearn(card):
    y = np.asarray(card.held_out.labels)
    s = np.asarray(card.held_out.scores)
    predicted = (s >= card.threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(y, predicted).ravel()
    assert card.metrics.confusion.model_dump() == {"tp": tp, "fp": fp, "tn": tn, "fn": fn}
    assert card.metrics.accuracy == pytest.approx(accuracy_score(y, predicted))
    assert card.metrics.auc == pytest.approx(roc_auc_score(y, s))
    for cls in (0, 1):
        report = card.metrics.per_class[str(cls)]
        assert report.precision == pytest.approx(precision_score(y, predicted, pos_label=cls))
        assert report.recall == pytest.approx(recall_score(y, predicted, pos_label=cls))
    # the reference formula for EV, from the counts
    n = tp + fp + tn + fn
    ev = (tp * -35280 + fp * -1287.67 + fn * -252000) / n
    assert card.metrics.reference_expected_value == pytest.approx(ev)


def test_card_is_plain_json(exported):
    raw = json.loads((exported.folder / "model-card.json").read_text())
    assert raw["onnx"]["file"] == "model.onnx"


def test_prior_shift_correction_is_inside_the_graph(fitted, reference, reference_split, tmp_path):
    beta = 0.25
    shifted = export_model(
        fitted,
        reference,
        reference_split,
        tmp_path,
        beta=beta,
        extra_sections={"subsample": {"k": 10}},
    )
    card = read_card(shifted.folder)
    assert (card.score_correction.kind, card.score_correction.beta) == ("prior_shift", beta)
    assert card.subsample == {"k": 10}
    x = reference_split.x_test
    raw = np.asarray(fitted.model((x - fitted.scaler.mean) / fitted.scaler.scale), np.float64)
    # Elkan's / Dal Pozzolo's correction, written out independently
    expected = beta * raw / (beta * raw - raw + 1)
    served = _ort_scores(shifted.folder / "model.onnx", x)
    assert np.max(np.abs(served - expected)) <= PARITY_TOLERANCE
    assert np.all(served <= raw + 1e-7)  # fewer negatives in training inflated the scores


def test_prior_shift_helper_fixed_points():
    np.testing.assert_allclose(correct_scores(np.array([0.0, 1.0, 0.5]), 0.5), [0.0, 1.0, 1 / 3])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"beta": 0.0}, "beta 0.0 must be in"),
        ({"extra_sections": {"bogus": {}}}, "unknown card section 'bogus'"),
    ],
)
def test_bad_export_options(fitted, reference, reference_split, tmp_path, kwargs, message):
    with pytest.raises(ExportError, match=message):
        export_model(fitted, reference, reference_split, tmp_path, **kwargs)
    assert not any(tmp_path.iterdir())


def test_card_records_the_training_split_ranges(card, reference_split):
    # Oracle: numpy on the training split, outside the card code.
    x = reference_split.x_train
    ranges = card.feature_ranges
    assert [item.name for item in ranges] == card.features
    np.testing.assert_array_equal([item.min for item in ranges], x.min(axis=0))
    np.testing.assert_array_equal([item.max for item in ranges], x.max(axis=0))
    np.testing.assert_allclose([item.p0_5 for item in ranges], np.percentile(x, 0.5, axis=0))
    np.testing.assert_allclose([item.p99_5 for item in ranges], np.percentile(x, 99.5, axis=0))


def test_card_records_which_rows_were_held_out(card, reference, reference_split):
    from sklearn.model_selection import train_test_split

    from costaware.card import DataSpec

    data = card.training.data
    # the oracle: scikit-learn's split of the row positions with the card's recipe
    _, expected = train_test_split(
        np.arange(data.n_rows), test_size=data.test_size, random_state=data.split_seed
    )
    assert data.test_rows == expected.tolist()
    np.testing.assert_array_equal(reference.x[data.test_rows], reference_split.x_test)
    np.testing.assert_array_equal(reference.y[data.test_rows], card.held_out.labels)
    digest = hashlib.sha256(",".join(map(str, expected)).encode()).hexdigest()
    assert data.test_rows_sha256 == digest
    tampered = data.model_dump() | {"test_rows": [*data.test_rows[:-1], data.test_rows[0]]}
    with pytest.raises(ValueError, match="distinct"):
        DataSpec.model_validate(tampered)
    swapped = data.model_dump() | {"test_rows": data.test_rows[::-1]}
    with pytest.raises(ValueError, match="not the sha256"):
        DataSpec.model_validate(swapped)


@pytest.mark.parametrize("off_by", [2 * PARITY_TOLERANCE, float("nan")])
def test_a_graph_that_disagrees_with_keras_is_not_written(
    exported, reference_split, tmp_path, off_by
):
    """export_graph, the one exporter of binary and multiclass graphs: onnxruntime's output
    against a Keras reference off by more than the tolerance (or not a number) is refused,
    naming the model and the output, and no file is written."""
    from training.export import OUTPUT_NAME, export_graph

    graph = (exported.folder / "model.onnx").read_bytes()
    keras = exported.scores.astype(np.float64) + off_by

    def card(header, checked):  # never reached
        raise AssertionError("a card was built for a refused graph")

    with pytest.raises(ExportError, match=r"^refused: onnxruntime scores differ from Keras"):
        export_graph(
            "refused",
            graph,
            reference_split.x_test,
            keras,
            tmp_path,
            card,
            output=OUTPUT_NAME,
            what="scores",
        )
    assert not any(tmp_path.iterdir())


def test_the_same_model_exports_to_the_same_bytes_within_one_process(fitted):
    # Each export traces the scoring function again, which advances TensorFlow's trace
    # counter; the graph's bytes (so its sha256 and the card's version) must not follow it.
    first = to_onnx(fitted)
    second = to_onnx(fitted)
    assert first == second
