"""A bad file stops the job with one line naming the file, row and column (exit status 2),
as the service names them, whichever partition the bad row falls in."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _servicekit import REPO, SHIPPED

from costaware.economics import CostMatrix
from service.batch.adapter import BatchInputError
from service.batch.jobs import Inputs, evaluate_files, score_files
from service.codecs import decode_csv
from service.errors import InvalidInputError

BAD_ROW = 2500  # 0-based data row; far into the file, in a late partition


def corrupt(labeled, tmp_path: Path, column: str, cell: str) -> tuple[Path, int, int]:
    """A copy of the labeled CSV with one cell replaced: (path, line, 1-based column)."""
    lines = labeled.csv.read_text().splitlines()
    header = lines[0].split(",")
    c = header.index(column)
    cells = lines[1 + BAD_ROW].split(",")
    cells[c] = cell
    lines[1 + BAD_ROW] = ",".join(cells)
    path = tmp_path / "bad.csv"
    path.write_text("\n".join(lines) + "\n")
    return path, BAD_ROW + 2, c + 1


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("abc", "'abc' is not a number"),
        ("nan", "'nan' is not a finite number"),
        ("-inf", "'-inf' is not a finite number"),
        ("", "empty cell"),
        ("1e39", "1e+39 is outside float32 range"),
    ],
)
def test_bad_cell_is_named_by_file_row_and_column(cluster, labeled, tmp_path, cell, message):
    path, line, column = corrupt(labeled, tmp_path, "mean area", cell)
    inputs = Inputs([str(path)], model_dir=SHIPPED, partition_bytes=30_000)
    with pytest.raises(BatchInputError) as caught:
        score_files(cluster, inputs, str(tmp_path / "out"), keep=["id"])
    assert str(caught.value) == f"{path}, row {line}, column {column} (mean area): {message}"
    assert not list((tmp_path / "out").glob("part-*")), "a failed job leaves no part files"


def test_ragged_row_and_bad_label_are_named(cluster, labeled, tmp_path):
    lines = labeled.csv.read_text().splitlines()
    lines[1 + BAD_ROW] += ",extra"
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("\n".join(lines) + "\n")
    inputs = Inputs([str(ragged)], model_dir=SHIPPED, partition_bytes=30_000)
    with pytest.raises(BatchInputError) as caught:
        score_files(cluster, inputs, str(tmp_path / "out"), keep=["id"])
    assert str(caught.value) == f"{ragged}, row {BAD_ROW + 2}: expected 32 columns, found 33"

    path, line, column = corrupt(labeled, tmp_path, "label", "2")
    inputs = Inputs([str(path)], model_dir=SHIPPED, partition_bytes=30_000)
    with pytest.raises(BatchInputError) as caught:
        evaluate_files(cluster, inputs, CostMatrix(tp=1.0, fp=-1.0, tn=0.0, fn=-5.0))
    assert str(caught.value) == f"{path}, row {line}, column {column} (label): 2 is not 0 or 1"


def test_headerless_messages_are_the_service_decoder_messages(cluster, labeled, tmp_path):
    rows = [line.split(",", 1)[1] for line in labeled.plain_csv.read_text().splitlines()]
    cells = rows[BAD_ROW].split(",")
    cells[4] = "12,5"[:2] + "x"
    rows[BAD_ROW] = ",".join(cells)
    body = ("\n".join(rows) + "\n").encode()
    path = tmp_path / "features.csv"
    path.write_bytes(body)
    with pytest.raises(InvalidInputError) as served:
        decode_csv(body, labeled.features)
    inputs = Inputs([str(path)], model_dir=SHIPPED, has_header=False, partition_bytes=20_000)
    with pytest.raises(BatchInputError) as batch:
        score_files(cluster, inputs, str(tmp_path / "out"))
    assert served.value.detail.startswith("body, row 2501, column 5 (mean smoothness): ")
    assert str(batch.value) == served.value.detail.replace("body", str(path), 1)


@pytest.mark.parametrize(
    ("value", "message"),
    [(None, "missing value (null)"), (np.inf, "inf is not a finite number")],
)
def test_parquet_bad_value_is_named(cluster, labeled, tmp_path, value, message):
    table = pq.read_table(labeled.parquet)
    c = table.column_names.index("worst area")
    cells = table.column(c).to_pylist()
    cells[BAD_ROW] = value
    table = table.set_column(c, "worst area", pa.array(cells, type=pa.float64()))
    path = tmp_path / "bad.parquet"
    pq.write_table(table, path, row_group_size=400)
    inputs = Inputs([str(path)], model_dir=SHIPPED, partition_bytes=1)
    with pytest.raises(BatchInputError) as caught:
        score_files(cluster, inputs, str(tmp_path / "out"))
    expected = f"{path}, row {BAD_ROW + 1}, column {c + 1} (worst area): {message}"
    assert str(caught.value) == expected


def test_missing_column_is_named(cluster, labeled, tmp_path):
    inputs = Inputs([str(labeled.csv)], model_dir=SHIPPED)
    with pytest.raises(BatchInputError, match=r"no column 'claim'"):
        score_files(cluster, inputs, str(tmp_path / "out"), keep=["claim"])


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-m", "service.batch", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
    )


def test_cli_bad_file_exits_2_with_one_line(cluster, labeled, tmp_path):
    path, line, column = corrupt(labeled, tmp_path, "worst radius", "12..5")
    address = cluster.scheduler.address
    result = run_cli(
        "score", str(path), "-o", str(tmp_path / "out"), "--keep", "id",
        "--scheduler", address, "--partition-size", "40KB", "--no-progress",
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        f"python -m service.batch score: error: {path}, row {line}, column {column} "
        "(worst radius): '12..5' is not a number"
    ]


def test_cli_score_and_evaluate_on_the_cluster(cluster, labeled, tmp_path):
    import json

    address = cluster.scheduler.address
    result = run_cli(
        "score", str(labeled.parquet), "-o", str(tmp_path / "out"), "--keep", "id",
        "--model", "tuned", "--output-format", "csv", "--scheduler", address,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "3,000 rows" in result.stderr  # the progress bar's last line
    first = sorted((tmp_path / "out").glob("part-*.csv"))[0].read_text().splitlines()
    assert first[0] == "id,score,label,close_confusion,out_of_range,probability"
    assert first[1].startswith("case-00000,")
    result = run_cli(
        "evaluate", str(labeled.csv), "--cost-matrix", "tp=-35280,fp=-1287.67,tn=0,fn=-252000",
        "--models", "medical,tuned", "--scheduler", address, "--no-progress",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert [r["model"] for r in answer["ranking"]] and answer["best_model"] in ("medical", "tuned")
