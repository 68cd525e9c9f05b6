"""What a worker does with one partition: score it and write a part file, or reduce it to
mergeable evaluation counts. Plain functions of plain values, so the engine can ship them
to any Dask worker (or call them in-process)."""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import fsspec
import numpy as np

from costaware.core import ScoreCounts
from service.batch import adapter
from service.batch.adapter import BatchInputError, LoadedModel
from service.batch.sources import Partition, read

OutputFormat = Literal["parquet", "csv"]
FIXED_COLUMNS = (*adapter.CSV_COLUMNS, "decision", "probability")

# A worker process loads each model once; the key is the card's and the graph's digest.
_MODELS: dict[str, LoadedModel] = {}


@dataclass(frozen=True)
class ModelFiles:
    """A model's card and graph as bytes: workers need no shared file system."""

    name: str
    files: tuple[tuple[str, bytes], ...]

    @classmethod
    def of(cls, model: LoadedModel) -> ModelFiles:
        return cls(model.name, tuple(sorted(adapter.model_files(model).items())))

    @property
    def key(self) -> str:
        digest = hashlib.sha256()
        for name, data in self.files:
            digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
        return digest.hexdigest()

    def load(self) -> LoadedModel:
        key = self.key
        if key not in _MODELS:
            folder = Path(tempfile.mkdtemp(prefix=f"costaware-batch-{self.name}-"))
            for name, data in self.files:
                (folder / name).write_bytes(data)
            _MODELS[key] = adapter.load_model_folder(folder)
        return _MODELS[key]


@dataclass(frozen=True)
class ScoreOptions:
    threshold: float | None
    margin: float | None
    output: str  # directory URL
    output_format: OutputFormat
    on_out_of_range: str = "flag"


@dataclass(frozen=True)
class PartResult:
    index: int
    rows: int
    path: str | None


def part_name(index: int, output_format: OutputFormat) -> str:
    return f"part-{index:05d}.{'parquet' if output_format == 'parquet' else 'csv'}"


def score_partition(part: Partition, model_files: ModelFiles, options: ScoreOptions) -> PartResult:
    """Score one partition and write its part file (none for a partition with no rows)."""
    model = model_files.load()
    batch = read(part)
    if batch.n == 0:
        return PartResult(part.index, 0, None)
    predictions = adapter.predict(
        model,
        batch.x,
        batch.where,
        threshold=options.threshold,
        margin=options.margin,
        on_out_of_range=options.on_out_of_range,
    )
    scored = Scored(batch.keep, predictions)
    url = options.output.rstrip("/") + "/" + part_name(part.index, options.output_format)
    with fsspec.open(url, "wb") as f:
        f.write(scored.parquet() if options.output_format == "parquet" else scored.csv())
    return PartResult(part.index, batch.n, url)


@dataclass(frozen=True)
class Scored:
    """A scored partition: the kept input columns, then the service's per-prediction fields.

    A binary model: ``score``, ``label``, ``close_confusion``, ``out_of_range``. A
    multiclass model (decided by expected value under its card's value matrix):
    ``p_<class>`` for each class, ``decision``, ``ev_<class>`` for each class,
    ``close_confusion``, ``out_of_range``, as the service's ``text/csv`` answer has them.
    A calibrated model adds, as that answer does, ``probability`` (binary) or the raw
    ``s_<class>`` (multiclass, whose ``p_<class>`` are then the calibrated probabilities).
    """

    keep: dict[str, Any]
    predictions: adapter.Predictions | adapter.ValuedPredictions

    @property
    def fields(self) -> tuple[str, ...]:
        p = self.predictions
        if isinstance(p, adapter.ValuedPredictions):
            return (
                *(f"p_{c}" for c in p.classes),
                "decision",
                *(f"ev_{c}" for c in p.classes),
                "close_confusion",
                "out_of_range",
                # A calibrated model's p_ are its calibrated probabilities; s_ the raw ones.
                *(f"s_{c}" for c in p.classes if p.calibrated is not None),
            )
        if p.calibrated:
            return (*adapter.CSV_COLUMNS, "probability")
        return tuple(adapter.CSV_COLUMNS)

    def parquet(self) -> bytes:
        """Probabilities and scores are the graph's float32 outputs as they came;
        ``out_of_range`` lists the features outside the training range (null when the card
        records no ranges)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        p = self.predictions
        columns: dict[str, Any] = {
            name: pa.array(cells) if isinstance(cells, list) else cells
            for name, cells in self.keep.items()
        }
        extra: dict[str, Any] = {}
        if isinstance(p, adapter.ValuedPredictions):
            raw = np.asarray(p.outputs, dtype=np.float32).reshape(len(p), -1)
            decided = raw if p.calibrated is None else p.calibrated.reshape(len(p), -1)
            for k, name in enumerate(p.classes):
                columns[f"p_{name}"] = pa.array(decided[:, k], type=pa.float32())
            columns["decision"] = pa.array([p.classes[d] for d in p.decisions])
            for k, name in enumerate(p.classes):
                columns[f"ev_{name}"] = pa.array(p.expected_values[:, k], type=pa.float64())
            if p.calibrated is not None:
                extra = {
                    f"s_{name}": pa.array(raw[:, k], type=pa.float32())
                    for k, name in enumerate(p.classes)
                }
        else:
            columns["score"] = pa.array(p.scores, type=pa.float32())
            columns["label"] = pa.array(np.array(p.labels, dtype=np.int8))
            if p.probability is not None:
                extra = {"probability": pa.array(p.probability, type=pa.float32())}
        columns["close_confusion"] = pa.array(np.array(p.close, dtype=bool))
        outside = (
            [None] * len(p)
            if p.out_of_range is None
            else [p.out_of_range.get(i, []) for i in range(len(p))]
        )
        columns["out_of_range"] = pa.array(outside, type=pa.list_(pa.string()))
        columns.update(extra)
        sink = pa.BufferOutputStream()
        pq.write_table(pa.table(columns), sink)
        return sink.getvalue().to_pybytes()

    def csv(self) -> bytes:
        """The service's text/csv answer line for line, after the kept columns."""
        lines = adapter.csv_lines(self.predictions)
        # column names hold class names, which may hold commas or quotes
        header = ",".join(adapter.csv_field(name) for name in [*self.keep, *self.fields])
        if self.keep:
            kept = zip(*(_cells(cells) for cells in self.keep.values()), strict=True)
            lines = [",".join([*cells, line]) for cells, line in zip(kept, lines, strict=True)]
        return (header + "\n" + "\n".join(lines) + "\n").encode()


def _cells(cells: Any) -> list[str]:
    """Kept values as CSV fields, quoted as RFC 4180 says when needed (CSV input cells
    were split at commas, but may hold a quote)."""
    values = cells if isinstance(cells, list) else cells.to_pylist()
    return [adapter.csv_field("" if v is None else str(v)) for v in values]


@dataclass(frozen=True)
class EvaluateResult:
    index: int
    rows: int
    counts: dict[str, ScoreCounts]  # by model name
    # A calibrated model's probabilities, counted the same way (by model name).
    probability_counts: dict[str, ScoreCounts] = field(default_factory=dict)


def evaluate_partition(part: Partition, models: list[ModelFiles]) -> EvaluateResult:
    """Score one partition with every model; keep only the counts per distinct score."""
    batch = read(part)
    if batch.n == 0:
        return EvaluateResult(part.index, 0, {})
    assert batch.labels is not None
    counts = {}
    probability_counts: dict[str, ScoreCounts] = {}
    for files in models:
        model = files.load()
        scores, probabilities = adapter.scores_and_probabilities(model, batch.x, batch.where)
        # + 0.0 folds a -0.0 into 0.0, so one score is one key.
        counts[model.name] = ScoreCounts.of(batch.labels, scores + 0.0)
        if probabilities is not None:
            # Elkan's row is decided on the probability: its own counts per distinct value.
            probability_counts[model.name] = ScoreCounts.of(batch.labels, probabilities + 0.0)
    return EvaluateResult(part.index, batch.n, counts, probability_counts)


def check_keep(keep: tuple[str, ...]) -> None:
    clash = next(
        (name for name in keep if name in FIXED_COLUMNS or name.startswith(("p_", "ev_", "s_"))),
        None,
    )
    if clash:
        raise BatchInputError(f"--keep {clash}: the output has its own {clash!r} column")
