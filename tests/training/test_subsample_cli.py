"""``audit-subsample`` on CSV files written by the tests: JSON fields, a subsample drawn
elsewhere (``--selected-column``), and one-line messages for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import make_classification

from training.cli import main

HEADER = ["a", "b", "c", "y", "d", "e", "picked"]  # label in the middle, on purpose
BIASED = "c"


@pytest.fixture(scope="session")
def csv_file(tmp_path_factory) -> Path:
    """1% positives; ``picked`` marks 300 negatives chosen preferring high values of c."""
    x, y = make_classification(
        n_samples=3000, n_features=5, n_informative=3, weights=[0.99], flip_y=0, random_state=1
    )
    rng = np.random.default_rng(0)
    neg = np.flatnonzero(y == 0)
    c = x[neg, 2]
    weight = 1.0 / (1.0 + np.exp(-1.5 * (c - c.mean()) / c.std()))
    picked = np.zeros(len(y), dtype=int)
    picked[rng.choice(neg, size=300, replace=False, p=weight / weight.sum())] = 1
    rows = [",".join(HEADER)]
    for i in range(len(y)):
        cells = [f"{v:.6f}" for v in x[i]]
        rows.append(",".join([*cells[:3], str(y[i]), *cells[3:], str(picked[i])]))
    path = tmp_path_factory.mktemp("audit") / "claims.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def csv_lines(csv_file) -> list[str]:
    return csv_file.read_text(encoding="utf-8").splitlines()


PREFIX = "python -m training audit-subsample: error: "


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """``python -m training audit-subsample ARGS``, in process; usage errors exit via argparse."""
    try:
        code = main(["audit-subsample", *args])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_draw_and_audit_json(capsys, csv_file):
    code, out, err = run_cli(
        capsys, "--data", str(csv_file), "--label", "y", "--negatives", "300", "--json"
    )
    result = json.loads(out)
    assert code == 0 and err == ""
    assert result["biased"] is False
    for key in ("p_value", "auc", "accuracy", "chance_accuracy", "alpha", "seed", "draws"):
        assert key in result
    assert result["k"] == 300 and result["seed"] == 0 and result["draws"] == 1
    names = [d["feature"] for d in result["drift"]]
    # Every column but the label is a feature here, including "picked".
    assert sorted(names) == sorted(h for h in HEADER if h != "y")
    stats = [d["statistic"] for d in result["drift"]]
    assert stats == sorted(stats, reverse=True)


def test_selected_column_flags_the_biased_subsample(capsys, csv_file):
    code, out, _ = run_cli(
        capsys, "--data", str(csv_file), "--label", "y", "--selected-column", "picked", "--json"
    )
    result = json.loads(out)
    assert code == 1
    assert result["biased"] is True and result["sampler"] == "given"
    assert result["k"] == 300
    assert result["drift"][0]["feature"] == BIASED
    assert "picked" not in [d["feature"] for d in result["drift"]]
    assert result["p_value"] <= 0.01


def test_readable_table(capsys, csv_file):
    code, out, _ = run_cli(
        capsys, "--data", str(csv_file), "--label", "y", "--selected-column", "picked"
    )
    assert code == 1
    assert "verdict: BIASED at alpha = 0.01" in out
    drift_rows = out.split("largest first)")[1].splitlines()[2:]
    assert drift_rows[0].split()[0] == BIASED


def test_stratified_redraw_options_are_recorded(capsys, csv_file):
    code, out, _ = run_cli(
        capsys,
        *("--data", str(csv_file), "--label", "y", "--negatives", "300", "--json"),
        *("--stratify-by", "picked", "--max-draws", "3", "--seed", "5", "--alpha", "0.05"),
    )
    result = json.loads(out)
    assert result["sampler"] == "stratified" and result["stratify_by"] == "picked"
    assert result["seed"] == 5 and 1 <= result["draws"] <= 3 and result["alpha"] == 0.05
    assert code == (1 if result["biased"] else 0)


def write(tmp_path: Path, name: str, lines: list[str]) -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def first_negative_row(lines: list[str]) -> int:
    """0-based index into lines of the first data row whose label is 0."""
    return next(i for i, line in enumerate(lines[1:], start=1) if line.split(",")[3] == "0")


def test_bad_selection_mark_names_row_and_column(capsys, tmp_path, csv_lines):
    lines = list(csv_lines)
    i = first_negative_row(lines)
    lines[i] = lines[i].rsplit(",", 1)[0] + ",7"
    path = write(tmp_path, "bad_mark.csv", lines)
    code, out, err = run_cli(
        capsys, "--data", str(path), "--label", "y", "--selected-column", "picked"
    )
    assert code == 2 and out == ""
    assert (
        err.strip()
        == f"{PREFIX}{path}, row {i + 1}, column 7 (picked): selection mark 7 is not 0 or 1"
    )


def test_non_numeric_cell_names_row_and_column(capsys, tmp_path, csv_lines):
    lines = list(csv_lines)
    lines[8] = "oops," + lines[8].split(",", 1)[1]
    path = write(tmp_path, "bad_cell.csv", lines)
    code, _, err = run_cli(capsys, "--data", str(path), "--label", "y", "--negatives", "30")
    assert code == 2
    assert err.count("\n") == 1
    assert f"{path}, row 9, column 1 (a)" in err and "'oops' is not a number" in err


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--label", "nope", "--negatives", "30"], ["row 1", "no column named 'nope'"]),
        (["--label", "y", "--negatives", "99999"], ["between 2 and"]),
        (["--label", "y", "--negatives", "30", "--stratify-by", "zz"], ["--stratify-by", "'zz'"]),
        (["--label", "y", "--selected-column", "zz"], ["--selected-column", "'zz'"]),
        (["--label", "y", "--negatives", "30", "--alpha", "1.5"], ["alpha"]),
        (["--label", "y", "--selected-column", "picked", "--max-draws", "3"], ["--max-draws"]),
        (["--label", "y"], ["--negatives", "--selected-column", "required"]),
    ],
)
def test_bad_arguments_give_one_line(capsys, csv_file, args, fragments):
    code, out, err = run_cli(capsys, "--data", str(csv_file), *args)
    assert code == 2 and out == ""
    assert err.count("\n") == 1
    for fragment in fragments:
        assert fragment in err


def test_missing_file(capsys, tmp_path):
    path = tmp_path / "absent.csv"
    code, _, err = run_cli(capsys, "--data", str(path), "--label", "y", "--negatives", "3")
    assert code == 2 and err.strip() == f"{PREFIX}{path}: no such file"
