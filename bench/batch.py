"""Batch scoring and evaluation on Dask: rows/s and peak RSS per worker, 1 and 2 workers.

Run: ``.venv/bin/python bench/batch.py [--data-dir /work/bench-data] [--rows 10000000]``

Generates (once, kept in ``--data-dir``, outside the repository) ``--rows`` rows x 30
features shaped like the bundled breast-cancer data (real rows times log-normal noise,
labels flipped at 5%), in three files: ``score-N.csv`` (header, the features in card
order), ``labeled-N.csv`` (label first, as ``/evaluate``'s text/csv) and
``labeled-N.parquet`` (row groups of 100,000 rows); and the same for ``--small-rows``
rows, to show that a worker's peak RSS does not grow with the input.

Measured, each on a fresh LocalCluster (start-up excluded and printed separately):
``score`` of the CSV and of the Parquet file, ``evaluate`` of both, with 1 and 2 worker
processes, the shipped ``medical`` model, the default 16 MiB partitions. The baseline is
the service's own in-process parse-score-format pipeline
(``service.inference.run_pipeline``, text/csv in and out) over 16 MiB chunks of the same
CSV, in this process, run before and after the CSV jobs (``--baseline-rows`` rows each).

Targets on this 2-core machine: 2 workers >= 1.6x one worker; per-worker CSV rows/s >=
0.7x the in-process pipeline; peak RSS per worker independent of the input size. The
machine is shared: with ``--rounds`` > 1 the jobs are interleaved and medians printed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np

from costaware.card import read_card
from costaware.economics import CostMatrix
from service.batch.engine import connect
from service.batch.jobs import EvaluateOptions, Inputs, evaluate_files, score_files
from service.codecs import CSV
from service.inference import run_pipeline
from service.registry import ModelRegistry

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
MODEL = "medical"
QALY = CostMatrix(tp=-35280.0, fp=-1287.67, tn=0.0, fn=-252000.0)
BLOCK = 500_000
CHUNK = 16 << 20


def generate(data_dir: Path, rows: int, seed: int = 18) -> dict[str, Path]:
    """The three files for ``rows`` rows (written once; reused when present)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq
    from sklearn.datasets import load_breast_cancer

    files = {
        "score.csv": data_dir / f"score-{rows}-v3.csv",
        "labeled.csv": data_dir / f"labeled-{rows}-v3.csv",
        "labeled.parquet": data_dir / f"labeled-{rows}-v3.parquet",
    }
    if all(path.exists() for path in files.values()):
        return files
    data_dir.mkdir(parents=True, exist_ok=True)
    features = list(read_card(MODELS / MODEL).features)
    cancer = load_breast_cancer()
    rng = np.random.default_rng(seed)
    started = time.monotonic()
    partial = {key: path.with_suffix(path.suffix + ".partial") for key, path in files.items()}
    options = pacsv.WriteOptions(include_header=False)
    with (
        partial["score.csv"].open("wb") as score_csv,
        partial["labeled.csv"].open("wb") as labeled_csv,
    ):
        score_csv.write((",".join(features) + "\n").encode())
        labeled_csv.write((",".join(["label", *features]) + "\n").encode())
        writer = None
        first = 0
        while first < rows:
            n = min(BLOCK, rows - first)
            pick = rng.integers(0, len(cancer.data), n)
            x = np.round(cancer.data[pick] * rng.lognormal(0.0, 0.15, size=(n, 30)), 4)
            labels = (cancer.target[pick] == 0) ^ (rng.random(n) < 0.05)
            columns = {name: x[:, c] for c, name in enumerate(features)}
            table = pa.table(columns)
            labeled = pa.table({"label": labels.astype(np.int8), **columns})
            pacsv.write_csv(table, score_csv, options)
            pacsv.write_csv(labeled, labeled_csv, options)
            if writer is None:
                writer = pq.ParquetWriter(partial["labeled.parquet"], labeled.schema)
            writer.write_table(labeled, row_group_size=100_000)
            first += n
            print(f"  generated {first:,} of {rows:,} rows", file=sys.stderr, end="\r")
        assert writer is not None
        writer.close()
    for key, path in partial.items():
        path.rename(files[key])
    print(f"\n  generated {rows:,} rows in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return files


def baseline(path: Path, limit: int) -> tuple[float, float]:
    """Rows per second and per CPU second of the service's in-process text/csv pipeline
    over 16 MiB chunks."""
    registry = ModelRegistry.load(MODELS, MODEL)
    done, seconds, cpu = 0, 0.0, 0.0
    with path.open("rb") as f:
        f.readline()  # the header
        rest = b""
        while done < limit:
            block = f.read(CHUNK)
            if not block:
                break
            block = rest + block
            cut = block.rfind(b"\n") + 1
            chunk, rest = block[:cut], block[cut:]
            started, cpu_started = time.perf_counter(), time.process_time()
            run_pipeline(registry, chunk, CSV, CSV)
            seconds += time.perf_counter() - started
            cpu += time.process_time() - cpu_started
            done += chunk.count(b"\n")
    return done / seconds, done / cpu


class RssSampler:
    """Peak resident memory of each worker process, sampled every 50 ms from outside
    (ru_maxrss is no use here: Linux carries the parent's peak across exec)."""

    def __init__(self, pids: list[int]) -> None:
        import psutil

        self.processes = [psutil.Process(pid) for pid in pids]
        self.peaks = [p.memory_info().rss for p in self.processes]
        self.cpu_start = [sum(p.cpu_times()[:2]) for p in self.processes]
        self.cpu_seconds = 0.0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(0.05):
            for i, process in enumerate(self.processes):
                with contextlib.suppress(Exception):
                    self.peaks[i] = max(self.peaks[i], process.memory_info().rss)

    def __enter__(self) -> RssSampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self.cpu_seconds = sum(
            sum(p.cpu_times()[:2]) - start
            for p, start in zip(self.processes, self.cpu_start, strict=True)
        )

    @property
    def peak_mb(self) -> float:
        return max(self.peaks) / 2**20


def job(kind: str, path: Path, workers: int, out_dir: Path) -> dict[str, float]:
    """One batch job on a fresh LocalCluster: rows/s and each worker's peak RSS."""
    started = time.monotonic()
    with connect(workers) as client:
        startup = time.monotonic() - started
        pids = list(client.run(os.getpid).values())
        sampler = RssSampler(pids)
        idle = sampler.peak_mb
        inputs = Inputs([str(path)], model_dir=MODELS)
        out = out_dir / f"{kind}-{path.stem}-{workers}"
        shutil.rmtree(out, ignore_errors=True)
        began = time.monotonic()
        with sampler:
            if kind == "score":
                rows = score_files(client, inputs, str(out), model=MODEL).rows
            else:
                answer = evaluate_files(client, inputs, QALY, EvaluateOptions(models=[MODEL]))
                rows = answer["results"][0]["n"]
            seconds = time.monotonic() - began
        client_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    shutil.rmtree(out, ignore_errors=True)
    return {
        "rows": rows,
        "seconds": seconds,
        "rows_per_s": rows / seconds,
        "per_worker": rows / seconds / workers,
        "worker_cpu_s": sampler.cpu_seconds,
        "rows_per_cpu_s": rows / sampler.cpu_seconds,
        "peak_rss_mb": sampler.peak_mb,
        "client_peak_mb": client_rss,
        "idle_rss_mb": idle,
        "startup_s": startup,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("/work/bench-data"))
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--small-rows", type=int, default=1_000_000)
    parser.add_argument("--baseline-rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--jobs", default="score.csv,score.parquet,evaluate.csv,evaluate.parquet,rss"
    )
    args = parser.parse_args(argv)
    big = generate(args.data_dir, args.rows)
    small = generate(args.data_dir, args.small_rows) if "rss" in args.jobs else None
    out_dir = args.data_dir / "out"
    wanted = args.jobs.split(",")
    results: dict[tuple[str, int], list[dict[str, float]]] = {}
    baselines: list[tuple[float, float]] = []
    for round_no in range(1, args.rounds + 1):
        print(f"round {round_no}", file=sys.stderr)
        baselines.append(baseline(big["score.csv"], args.baseline_rows))
        print(
            f"  in-process pipeline: {baselines[-1][0]:,.0f} rows/s, "
            f"{baselines[-1][1]:,.0f} rows/CPU-s",
            file=sys.stderr,
        )
        for name in ("score.csv", "score.parquet", "evaluate.csv", "evaluate.parquet"):
            if name not in wanted:
                continue
            kind, fmt = name.split(".")
            path = big["score.csv"] if name == "score.csv" else big[f"labeled.{fmt}"]
            for workers in (1, 2):
                figures = job(kind, path, workers, out_dir)
                results.setdefault((name, workers), []).append(figures)
                print(
                    f"  {name:<17} {workers} worker(s): {figures['rows_per_s']:>10,.0f} rows/s "
                    f"in {figures['seconds']:.1f} s, peak RSS/worker "
                    f"{figures['peak_rss_mb']:.0f} MB, {figures['rows_per_cpu_s']:,.0f} rows/CPU-s",
                    file=sys.stderr,
                )
        baselines.append(baseline(big["score.csv"], args.baseline_rows))
        print(
            f"  in-process pipeline: {baselines[-1][0]:,.0f} rows/s, "
            f"{baselines[-1][1]:,.0f} rows/CPU-s",
            file=sys.stderr,
        )
        if small is not None:
            for path in (small["score.csv"], big["score.csv"]):
                figures = job("score", path, 2, out_dir)
                results.setdefault((f"rss {path.name}", 2), []).append(figures)

    def median(key: tuple[str, int], field: str) -> float:
        return statistics.median(r[field] for r in results[key])

    pipeline = statistics.median(b[0] for b in baselines)
    pipeline_cpu = statistics.median(b[1] for b in baselines)
    print(f"# bench/batch.py: {args.rows:,} rows x 30 features, model {MODEL}, 16 MiB partitions")
    print(
        f"# rounds {args.rounds}; medians; the in-process pipeline: {pipeline:,.0f} rows/s, "
        f"{pipeline_cpu:,.0f} rows per CPU second; load average at the end "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    print(
        f"{'job':<21} {'workers':>7} {'rows/s':>11} {'per worker':>11} {'seconds':>8} "
        f"{'rows/CPU-s':>11} {'peak RSS/worker MB':>19} {'idle MB':>8} {'start s':>8}"
    )
    for (name, workers), _runs in results.items():
        key = (name, workers)
        print(
            f"{name:<21} {workers:>7} {median(key, 'rows_per_s'):>11,.0f} "
            f"{median(key, 'per_worker'):>11,.0f} {median(key, 'seconds'):>8.1f} "
            f"{median(key, 'rows_per_cpu_s'):>11,.0f} "
            f"{median(key, 'peak_rss_mb'):>19.0f} {median(key, 'idle_rss_mb'):>8.0f} "
            f"{median(key, 'startup_s'):>8.1f}"
        )
    print()
    for name in ("score.csv", "score.parquet", "evaluate.csv", "evaluate.parquet"):
        if (name, 1) in results and (name, 2) in results:
            speedup = median((name, 2), "rows_per_s") / median((name, 1), "rows_per_s")
            efficiency = median((name, 2), "rows_per_cpu_s") / median((name, 1), "rows_per_cpu_s")
            print(
                f"{name:<18} 2 workers / 1 worker: {speedup:.2f}x wall (target >= 1.6x); "
                f"rows per CPU second {efficiency:.2f}x"
            )
    for workers in (1, 2):
        if ("score.csv", workers) in results:
            ratio = median(("score.csv", workers), "per_worker") / pipeline
            cpu_ratio = median(("score.csv", workers), "rows_per_cpu_s") / pipeline_cpu
            print(
                f"score.csv per-worker rows/s with {workers} worker(s) / in-process pipeline: "
                f"{ratio:.2f} wall (target >= 0.7); {cpu_ratio:.2f} per CPU second"
            )
    rss = [k for k in results if k[0].startswith("rss ")]
    if len(rss) == 2:
        a, b = (median(k, "peak_rss_mb") for k in rss)
        print(
            f"peak RSS per worker, score.csv, 2 workers: {args.small_rows:,} rows {a:.0f} MB, "
            f"{args.rows:,} rows {b:.0f} MB ({b / a:.2f}x for {args.rows / args.small_rows:.0f}x "
            "the rows)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
