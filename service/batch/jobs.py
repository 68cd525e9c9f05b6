"""The two batch jobs, as functions of options and a Dask client: plan the partitions on
the client, run them on the workers, and put the results together."""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec

from costaware.cluster import connect
from costaware.economics import CostMatrix, EconomicsError, evaluate_counts
from service.batch import adapter, partials
from service.batch.adapter import BatchInputError
from service.batch.engine import Progress, stream
from service.batch.sources import Partition, expand, plan
from service.batch.tasks import (
    EvaluateResult,
    ModelFiles,
    PartResult,
    ScoreOptions,
    check_keep,
    evaluate_partition,
    score_partition,
)

SUCCESS_MARKER = "_SUCCESS"


@dataclass(frozen=True)
class Inputs:
    """Where the data is and how to read it (the options both jobs share)."""

    paths: Sequence[str]
    model_dir: Path = Path("models")
    input_format: str | None = None
    has_header: bool = True
    partition_bytes: int = 16 << 20
    threshold: float | None = None
    margin: float | None = None


@dataclass(frozen=True)
class EvaluateOptions:
    """``/evaluate``'s options beyond the cost matrix."""

    models: Sequence[str] | None = None  # None: every loaded model
    label: str = "label"
    prevalence: float | None = None
    curve: bool = False


@dataclass(frozen=True)
class ScoreSummary:
    rows: int
    parts: list[str]
    partitions: int


def _inputs(args: argparse.Namespace) -> Inputs:
    return Inputs(
        paths=args.inputs,
        model_dir=args.model_dir,
        input_format=args.input_format,
        has_header=not args.no_header,
        partition_bytes=args.partition_size,
        threshold=args.threshold,
        margin=args.margin,
    )


@contextmanager
def _client(args: argparse.Namespace) -> Iterator[Any]:
    with connect(args.workers, args.scheduler) as client:
        yield client


def score(args: argparse.Namespace) -> ScoreSummary:
    """``score``: the command line's options, on the cluster they name."""
    with _client(args) as client:
        return score_files(
            client,
            _inputs(args),
            args.output,
            model=args.model,
            keep=args.keep,
            output_format=args.output_format,
            on_out_of_range=args.on_out_of_range,
            progress=not args.no_progress,
        )


def evaluate(args: argparse.Namespace, costs: CostMatrix) -> dict[str, Any]:
    """``evaluate``: the command line's options, on the cluster they name."""
    with _client(args) as client:
        return evaluate_files(
            client,
            _inputs(args),
            costs,
            EvaluateOptions(args.models, args.label, args.prevalence, args.curve),
            progress=not args.no_progress,
        )


def score_files(
    client: Any,
    inputs: Inputs,
    output: str,
    *,
    model: str | None = None,
    keep: Sequence[str] = (),
    output_format: str = "parquet",
    on_out_of_range: str = "flag",
    progress: bool = False,
) -> ScoreSummary:
    """Score ``inputs`` with ``model`` (default: the service's default) into ``output``."""
    registry = adapter.load_registry(inputs.model_dir)
    (chosen,) = adapter.pick_models(registry, [model] if model else None)
    parts = _plan(inputs, chosen.card.features, None, keep)
    options = ScoreOptions(
        inputs.threshold,
        inputs.margin,
        output,
        output_format,
        on_out_of_range,  # type: ignore[arg-type]
    )
    return run_score(client, parts, chosen, options, progress=progress)


def evaluate_files(
    client: Any,
    inputs: Inputs,
    costs: CostMatrix,
    options: EvaluateOptions | None = None,
    *,
    progress: bool = False,
) -> dict[str, Any]:
    """``/evaluate``'s JSON for the labeled ``inputs`` under ``costs``."""
    options = options or EvaluateOptions()
    chosen = _evaluated_models(inputs.model_dir, options.models)
    parts = _plan(inputs, chosen[0].card.features, options.label, [])
    return run_evaluate(client, inputs, parts, chosen, costs, options, progress=progress)


def _evaluated_models(model_dir: Path, names: Sequence[str] | None) -> list[adapter.LoadedModel]:
    registry = adapter.load_registry(model_dir)
    if names is None:
        if not registry.ready:
            adapter.pick_models(registry, None)  # raises the registry's "not ready"
        # A binary cost matrix values binary models; multiclass ones take a value matrix.
        names = [name for name in registry.names() if not registry.models[name].multiclass]
    models = adapter.pick_models(registry, names)
    multiclass = next((model for model in models if model.multiclass), None)
    if multiclass is not None:
        raise BatchInputError(
            f"--models: {multiclass.name!r} is a multiclass model; batch evaluation values "
            "binary decisions under tp, fp, tn, fn (POST /evaluate takes a value matrix)"
        )
    first = models[0]
    for model in models[1:]:
        if list(model.card.features) != list(first.card.features):
            raise BatchInputError(
                f"--models: {model.name!r} and {first.name!r} take different features; "
                "evaluate them in separate runs"
            )
    return models


def _plan(
    inputs: Inputs, features: Sequence[str], label: str | None, keep: Sequence[str]
) -> list[Partition]:
    check_keep(tuple(keep))
    return plan(
        expand(inputs.paths),
        features=list(features),
        label=label,
        keep=list(keep),
        has_header=inputs.has_header,
        input_format=inputs.input_format,
        partition_bytes=inputs.partition_bytes,
    )


def _check_output(output: str) -> tuple[Any, str]:
    fs, path = fsspec.core.url_to_fs(output)
    if fs.exists(path):
        if not fs.isdir(path):
            raise BatchInputError(f"--output {output}: exists and is not a folder")
        if fs.ls(path):
            raise BatchInputError(
                f"--output {output}: not empty; name a new folder (nothing is overwritten)"
            )
    fs.makedirs(path, exist_ok=True)
    return fs, path


def run_score(
    client: Any,
    parts: list[Partition],
    model: adapter.LoadedModel,
    options: ScoreOptions,
    *,
    progress: bool = True,
) -> ScoreSummary:
    """Score every partition with ``model`` into part files under ``options.output``; on
    failure the part files this run wrote are removed and the error is raised."""
    fs, path = _check_output(options.output)
    results: list[PartResult] = []
    bar = Progress(len(parts), "partitions") if progress else None
    try:
        stream(
            client,
            score_partition,
            parts,
            ModelFiles.of(model),
            options,
            on_result=results.append,
            rows_of=lambda r: r.rows,
            progress=bar,
        )
        _check_rows(parts, {r.index: r.rows for r in results})
    except BaseException:
        for name in fs.ls(path, detail=False):
            if Path(name).name.startswith("part-"):
                fs.rm(name)
        raise
    results.sort(key=lambda r: r.index)
    with fs.open(f"{path}/{SUCCESS_MARKER}", "wb"):
        pass
    return ScoreSummary(
        rows=sum(r.rows for r in results),
        parts=[r.path for r in results if r.path],
        partitions=len(parts),
    )


def _check_rows(parts: list[Partition], rows: dict[int, int]) -> None:
    per_file: dict[str, int] = {}
    for part in parts:
        per_file[part.url] = per_file.get(part.url, 0) + rows.get(part.index, 0)
    for url, n in per_file.items():
        if n == 0:
            raise BatchInputError(f"{url}: empty input: no data rows")


def run_evaluate(
    client: Any,
    inputs: Inputs,
    parts: list[Partition],
    models: list[adapter.LoadedModel],
    costs: CostMatrix,
    options: EvaluateOptions,
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """``/evaluate``'s JSON for the labeled rows of ``parts``, merged from per-partition
    counts."""
    mergers = {model.name: partials.Merger() for model in models}
    probability_mergers = {model.name: partials.Merger() for model in models if model.calibrated}
    rows: dict[int, int] = {}

    def take(result: EvaluateResult) -> None:
        rows[result.index] = result.rows
        for name, counts in result.counts.items():
            mergers[name].add(counts)
        for name, counts in result.probability_counts.items():
            probability_mergers[name].add(counts)

    bar = Progress(len(parts), "partitions") if progress else None
    files = [ModelFiles.of(model) for model in models]
    stream(
        client,
        evaluate_partition,
        parts,
        files,
        on_result=take,
        rows_of=lambda r: r.rows,
        progress=bar,
    )
    _check_rows(parts, rows)
    entries = []
    for model in models:
        threshold = model.card.threshold if inputs.threshold is None else inputs.threshold
        margin = model.card.margin if inputs.margin is None else inputs.margin
        try:
            result = evaluate_counts(
                mergers[model.name].result(),
                costs,
                threshold,
                margin,
                prevalence=options.prevalence,
                curve=options.curve,
                # As /evaluate: the card's threshold is marked even when another is used.
                curve_marks=[model.card.threshold],
                probability_counts=(
                    probability_mergers[model.name].result() if model.calibrated else None
                ),
            )
        except EconomicsError as exc:
            raise BatchInputError(str(exc)) from None
        head = {"model": model.name, "version": model.card.version}
        entries.append(head | adapter.calibration_head(model) | result)
    n_files = len({part.url for part in parts})
    note = (
        f"{n_files} file{'s' if n_files != 1 else ''} read in {len(parts)} partitions, scored "
        "by each model on the workers, merged from per-partition counts"
    )
    return adapter.summary(entries, costs, note=note)
