import hashlib

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer

from training.cli import main
from training.data import DataError, data_sha256, load_csv, load_csvs, split


def test_reference_codes_malignant_as_one(reference):
    # WDBC: 212 malignant, 357 benign; sklearn's target 0 is malignant
    assert reference.x.shape == (569, 30)
    assert int(reference.y.sum()) == 212
    np.testing.assert_array_equal(reference.y, load_breast_cancer().target == 0)
    assert reference.feature_names[0] == "mean radius"


def test_reference_split_is_the_published_one(reference_split):
    assert (len(reference_split.y_train), len(reference_split.y_test)) == (426, 143)
    assert int(reference_split.y_test.sum()) == 55  # 55 malignant, 88 benign


def test_data_sha256_is_over_label_then_features_as_float64(reference):
    table = np.hstack([reference.y.reshape(-1, 1).astype("<f8"), reference.x.astype("<f8")])
    assert reference.sha256 == hashlib.sha256(table.tobytes()).hexdigest()


def test_data_sha256_does_not_depend_on_the_file_layout(data_dir):
    named = load_csv(data_dir / "good_header.csv", label="diagnosis")
    first = load_csv(data_dir / "good_label_first.csv")
    assert named.feature_names == ["radius", "texture"]
    assert first.feature_names == ["feature_1", "feature_2"]
    # the same generator wrote both files, with the label moved
    assert data_sha256(named.x, named.y) == data_sha256(first.x, first.y)


def test_several_files_are_concatenated(data_dir):
    one = load_csv(data_dir / "good_label_first.csv")
    two = load_csvs([data_dir / "good_label_first.csv"] * 2)
    assert len(two.y) == 2 * len(one.y)


BAD = [
    (
        "non_numeric.csv",
        "diagnosis",
        r"non_numeric\.csv, row 4, column 2 \(texture\): 'abc' is not a number$",
    ),
    (
        "nan_cell.csv",
        "diagnosis",
        r"nan_cell\.csv, row 3, column 1 \(radius\): 'nan' is not a finite number$",
    ),
    (
        "inf_cell.csv",
        "diagnosis",
        r"inf_cell\.csv, row 8, column 2 \(texture\): 'inf' is not a finite number$",
    ),
    ("ragged.csv", "diagnosis", r"ragged\.csv, row 5: expected 3 columns, found 2$"),
    (
        "one_class.csv",
        "diagnosis",
        r"one_class\.csv: column 'diagnosis': 0 rows of class 1; training needs both classes",
    ),
    (
        "label_not_binary.csv",
        None,
        r"label_not_binary\.csv, row 6, column 1 \(label\): label 2 is not 0 or 1$",
    ),
    (
        "too_few_rows.csv",
        "diagnosis",
        r"too_few_rows\.csv: 5 data rows; training needs at least 20$",
    ),
    ("empty.csv", None, r"empty\.csv: empty input"),
    (
        "good_header.csv",
        "label",
        r"good_header\.csv, row 1: no column named 'label' "
        r"\(columns: radius, texture, diagnosis\)$",
    ),
    ("no_such_file.csv", None, r"no_such_file\.csv: no such file$"),
]


@pytest.mark.parametrize(("name", "label", "message"), BAD, ids=[b[0] + str(b[1]) for b in BAD])
def test_bad_data_is_refused_naming_file_row_and_column(data_dir, name, label, message):
    with pytest.raises(DataError, match=message):
        load_csv(data_dir / name, label=label)


@pytest.mark.parametrize(("name", "label", "message"), BAD, ids=[b[0] + str(b[1]) for b in BAD])
def test_cli_reports_bad_data_in_one_line_and_exits_2(
    data_dir, capsys, tmp_path, name, label, message
):
    argv = ["--data", str(data_dir / name), "--no-report", "--models-dir", str(tmp_path)]
    argv += ["--label", label] if label else []
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("python -m training: error: ")
    assert pytest.importorskip("re").search(message, err.strip())


def test_a_split_missing_a_class_is_refused(data_dir):
    dataset = load_csv(data_dir / "good_header.csv", label="diagnosis")
    # keep only two positives: some seed puts both in training, none held out
    with pytest.raises(DataError, match=r"held-out split .* has no rows of class 1"):
        for seed in range(50):
            keep = np.r_[np.flatnonzero(dataset.y == 0), np.flatnonzero(dataset.y == 1)[:2]]
            split(
                type(dataset)(dataset.x[keep], dataset.y[keep], dataset.feature_names, "d"),
                seed=seed,
            )


def test_a_headerless_file_names_columns_as_its_card_will(tmp_path):
    path = tmp_path / "channel.csv"
    path.write_text("".join(f"{i % 2},{i}.5,{i}\n" for i in range(25)) + "1,2.5,abc\n")
    with pytest.raises(DataError) as info:
        load_csv(path)
    assert str(info.value) == f"{path}, row 26, column 3 (feature_2): 'abc' is not a number"
    path.write_text("".join(f"{i % 2},{i}.5,{i}\n" for i in range(25)))
    assert load_csv(path).feature_names == ["feature_1", "feature_2"]
