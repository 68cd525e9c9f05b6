"""``score`` on a real two-process LocalCluster: the service's scores, decisions and text,
in input order, whatever the partition size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _servicekit import SHIPPED

from costaware.card import read_any_card, read_card
from service.batch.jobs import Inputs, score_files
from service.codecs import CSV, encode_csv
from service.dataplane import DataPlane, PredictInputs
from service.inference import run_pipeline
from service.registry import ModelRegistry


def parts_table(out: Path) -> pa.Table:
    parts = sorted(out.glob("part-*.parquet"))
    assert parts, f"no part files in {out}"
    return pa.concat_tables([pq.read_table(p) for p in parts])


def onnxruntime_outputs(model: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The shipped graph's raw score and calibrated probability for ``x``."""
    card = read_card(SHIPPED / model)
    assert card.calibration is not None
    session = ort.InferenceSession(str(SHIPPED / model / "model.onnx"))
    names = [card.onnx.output_name, card.calibration.output_name]
    score, probability = session.run(names, {card.onnx.input_name: x.astype(np.float32)})
    return score.reshape(-1), probability.reshape(-1)


@pytest.mark.parametrize("model", ["medical", "builtin", "tuned"])
@pytest.mark.parametrize("source", ["csv", "parquet"])
def test_scores_equal_onnxruntime_bit_for_bit_in_input_order(
    cluster, labeled, tmp_path, model, source
):
    path = labeled.csv if source == "csv" else labeled.parquet
    inputs = Inputs([str(path)], model_dir=SHIPPED, partition_bytes=40_000)
    summary = score_files(cluster, inputs, str(tmp_path / "out"), model=model, keep=["id"])
    assert summary.rows == len(labeled.x) and summary.partitions > 3
    table = parts_table(tmp_path / "out")
    assert table.column_names == [
        "id", "score", "label", "close_confusion", "out_of_range", "probability"
    ]  # fmt: skip
    assert table.column("id").to_pylist() == labeled.ids
    scores = table.column("score").to_numpy()
    expected, probability = onnxruntime_outputs(model, labeled.x)
    assert scores.dtype == np.float32
    assert np.array_equal(scores.view(np.uint32), expected.view(np.uint32))
    served = table.column("probability").to_numpy().astype(np.float32)
    assert np.array_equal(served.view(np.uint32), probability.view(np.uint32))
    card = read_card(SHIPPED / model)
    values = expected.astype(np.float64)
    assert np.array_equal(table.column("label").to_numpy(), (values >= card.threshold))
    close = np.abs(values - card.threshold) < card.margin
    assert np.array_equal(table.column("close_confusion").to_numpy(), close)
    assert close.any() and (~close).any()
    assert (tmp_path / "out" / "_SUCCESS").exists()


def test_csv_output_matches_the_service_pipeline_line_for_line(cluster, labeled, tmp_path):
    """The part files' score,label,close_confusion are the service's own text/csv answer."""
    plain = tmp_path / "features.csv"
    plain.write_text("".join(line.split(",", 1)[1] for line in labeled.plain_csv.open()))
    inputs = Inputs([str(plain)], model_dir=SHIPPED, has_header=False, partition_bytes=30_000)
    score_files(cluster, inputs, str(tmp_path / "out"), output_format="csv")
    lines: list[str] = []
    for part in sorted((tmp_path / "out").glob("part-*.csv")):
        header, *rows = part.read_text().splitlines()
        assert header == "score,label,close_confusion,out_of_range,probability"
        lines.extend(rows)
    registry = ModelRegistry.load(SHIPPED, "medical")
    answer, _ = run_pipeline(registry, plain.read_bytes(), CSV, CSV)
    assert lines == answer.decode().splitlines()


@pytest.mark.parametrize("source", ["csv", "parquet"])
def test_partition_size_does_not_change_the_output(cluster, labeled, tmp_path, source):
    path = labeled.csv if source == "csv" else labeled.parquet
    tables, counts = [], []
    for size in (7_000, 300_000, 64 << 20):
        out = tmp_path / f"out-{size}"
        inputs = Inputs([str(path)], model_dir=SHIPPED, partition_bytes=size)
        counts.append(score_files(cluster, inputs, str(out), keep=["id"]).partitions)
        tables.append(parts_table(out))
    assert counts[0] > counts[1] > counts[2] == 1
    assert tables[0].equals(tables[1]) and tables[1].equals(tables[2])


def test_several_files_by_glob_and_file_url_keep_their_order(cluster, labeled, tmp_path):
    lines = labeled.csv.read_text().splitlines(keepends=True)
    header, rows = lines[0], lines[1:]
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        (folder / f"chunk-{i}.csv").write_text(header + "".join(rows[i * 1000 : (i + 1) * 1000]))
    inputs = Inputs([f"file://{folder}/chunk-*.csv"], model_dir=SHIPPED, partition_bytes=50_000)
    summary = score_files(cluster, inputs, f"file://{tmp_path}/out", keep=["id"])
    assert summary.rows == 3000
    assert parts_table(tmp_path / "out").column("id").to_pylist() == labeled.ids


def test_output_folder_must_be_new_or_empty(cluster, labeled, tmp_path):
    from service.batch.adapter import BatchInputError

    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.parquet").write_text("keep me")
    inputs = Inputs([str(labeled.csv)], model_dir=SHIPPED)
    with pytest.raises(BatchInputError, match="not empty"):
        score_files(cluster, inputs, str(out), keep=["id"])
    assert (out / "precious.parquet").read_text() == "keep me"


def test_the_batch_engine_imports_no_web_framework():
    import subprocess
    import sys

    code = (
        "import sys, service.batch.cli, service.batch.jobs, service.batch.tasks; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('fastapi', 'starlette')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_out_of_range_names_the_features_outside_the_training_range(cluster, labeled, tmp_path):
    """The same names the service gives for the same rows: none for rows inside the card's
    training range, the pushed features for rows pushed outside it."""
    card = read_card(SHIPPED / "medical")
    x = labeled.x[:400].copy()
    ranges = card.feature_ranges
    assert ranges is not None
    inside = np.array([[(r.p0_5 + r.p99_5) / 2 for r in ranges]] * len(x))
    x[:200] = inside[:200]
    x[250] = x[260] = inside[0]
    x[250, 3] = ranges[3].max * 2
    x[260, [0, 7]] = [ranges[0].min - 1, ranges[7].max + 1]
    header = ",".join(card.features)
    path = tmp_path / "pushed.csv"
    path.write_text(header + "\n" + "\n".join(",".join(map(repr, row)) for row in x.tolist()))
    inputs = Inputs([str(path)], model_dir=SHIPPED, partition_bytes=10_000)
    score_files(cluster, inputs, str(tmp_path / "out"))
    flagged = parts_table(tmp_path / "out").column("out_of_range").to_pylist()
    assert flagged[:200] == [[]] * 200
    assert flagged[250] == [card.features[3]]
    assert flagged[260] == [card.features[0], card.features[7]]
    served = DataPlane(ModelRegistry.load(SHIPPED, "medical")).predict_now(
        PredictInputs(instances=x, model="medical")
    )
    assert flagged == [served.out_of_range.get(i, []) for i in range(len(x))]


def test_refusing_out_of_range_rows_names_the_first(cluster, tmp_path):
    from service.batch.adapter import BatchInputError

    card = read_card(SHIPPED / "medical")
    ranges = card.feature_ranges
    low, high = (np.array([getattr(r, k) for r in ranges]) for k in ("p0_5", "p99_5"))
    x = np.random.default_rng(5).uniform(low, high, size=(3000, len(ranges))).round(5)
    x = np.clip(x, low, high)
    x[2000, 5] = ranges[5].max * 3
    path = tmp_path / "pushed.csv"
    path.write_text(
        ",".join(card.features)
        + "\n"
        + "\n".join(",".join(map(repr, row)) for row in x.tolist())
        + "\n"
    )
    inputs = Inputs([str(path)], model_dir=SHIPPED, partition_bytes=30_000)
    with pytest.raises(BatchInputError, match=rf"^{path}, row 2002: {card.features[5]} = "):
        score_files(cluster, inputs, str(tmp_path / "out"), on_out_of_range="refuse")


@pytest.mark.parametrize("output_format", ["parquet", "csv"])
def test_a_multiclass_model_gets_its_decision_column(cluster, tmp_path, output_format):
    """The shipped multiclass model: class probabilities bit for bit as onnxruntime gives
    them, and the service's decision by expected value under the card's value matrix."""
    from sklearn.datasets import load_wine

    card = read_any_card(SHIPPED / "wine")
    wine = load_wine()
    assert list(wine.feature_names) == list(card.features)
    x = np.round(wine.data * np.random.default_rng(3).normal(1.0, 0.03, wine.data.shape), 4)
    path = tmp_path / "wine.csv"
    rows = [[f"w{i}", *map(repr, row)] for i, row in enumerate(x.tolist())]
    path.write_text(
        "\n".join([",".join(["id", *card.features]), *(",".join(r) for r in rows)]) + "\n"
    )
    inputs = Inputs([str(path)], model_dir=SHIPPED, partition_bytes=4_000)
    out = tmp_path / "out"
    summary = score_files(
        cluster, inputs, str(out), model="wine", keep=["id"], output_format=output_format
    )
    assert summary.partitions > 3 and summary.rows == len(x)
    served = DataPlane(ModelRegistry.load(SHIPPED, "medical")).predict_now(
        PredictInputs(instances=x, model="wine")
    )
    classes = list(card.classes)
    columns = [
        "id",
        *(f"p_{c}" for c in classes),
        "decision",
        *(f"ev_{c}" for c in classes),
        "close_confusion",
        "out_of_range",
        # calibrated: the p_ columns are the calibrated probabilities, the raw ones follow
        *(f"s_{c}" for c in classes),
    ]
    if output_format == "csv":
        lines = []
        for part in sorted(out.glob("part-*.csv")):
            header, *body = part.read_text().splitlines()
            assert header.split(",") == columns
            lines.extend(body)
        expected = encode_csv(served).decode().splitlines()
        assert lines == [f"w{i},{line}" for i, line in enumerate(expected)]
        return
    table = parts_table(out)
    assert table.column_names == columns
    session = ort.InferenceSession(str(SHIPPED / "wine" / "model.onnx"))
    assert card.calibration is not None
    names = [card.onnx.output_name, card.calibration.output_name]
    raw, probabilities = session.run(names, {card.onnx.input_name: x.astype(np.float32)})
    for k, c in enumerate(classes):
        column = table.column(f"p_{c}").to_numpy()
        assert np.array_equal(column.view(np.uint32), probabilities[:, k].view(np.uint32))
        column = table.column(f"s_{c}").to_numpy()
        assert np.array_equal(column.view(np.uint32), raw[:, k].view(np.uint32))
    decisions = table.column("decision").to_pylist()
    assert decisions == [classes[d] for d in served.decisions]
    assert len(set(decisions)) == 3


def test_csv_output_quotes_class_names_as_rfc_4180_says(cluster, tmp_path):
    """A multiclass model whose classes hold a comma and quotes: every line of the part
    files (the header's p_/ev_ columns too) has the header's number of fields."""
    import csv

    from _servicekit import write_wine_with_classes
    from sklearn.datasets import load_wine

    classes = ["bus, coach", 'car "rental"', "walk"]
    models = tmp_path / "models"
    write_wine_with_classes(models / "travel", classes)
    x = load_wine().data[::4]
    path = tmp_path / "travel.csv"
    path.write_text(
        "".join(f"{i},{','.join(map(repr, row))}\n" for i, row in enumerate(x.tolist()))
    )
    card = read_any_card(models / "travel")
    path.write_text(",".join(["id", *card.features]) + "\n" + path.read_text())
    out = tmp_path / "out"
    inputs = Inputs([str(path)], model_dir=models, partition_bytes=4_000)
    score_files(cluster, inputs, str(out), model="travel", keep=["id"], output_format="csv")
    lines = []
    for part in sorted(out.glob("part-*.csv")):
        header, *body = list(csv.reader(part.open(newline="")))
        assert header == [
            "id",
            *(f"p_{c}" for c in classes),
            "decision",
            *(f"ev_{c}" for c in classes),
            "close_confusion",
            "out_of_range",
            *(f"s_{c}" for c in classes),
        ]
        lines.extend(body)
    assert len(lines) == len(x) and {len(line) for line in lines} == {13}
    assert {line[4] for line in lines} <= set(classes)
    assert {line[4] for line in lines} & set(classes[:2])
