"""The golden batch outputs: ``python -m service.batch`` score and evaluate jobs over small
fixed inputs (built from the corpus's rows) on the shipped models, each job's exit status,
stdout, the last stderr line of a refused job and every output file, recorded in
``batch.jsonl``. Run from the repository root::

    .venv/bin/python -m tests.service.golden.batch

Normalised: the job's scratch folder in the text (``<work>``); stderr but for the last line
of a refused job (Dask's own logging varies). Text (stdout and text files) is kept as its
lines, ends included, so that a diff shows the line that changed; Parquet part files as
their rows (pyarrow's ``to_pylist``) and their schema (their bytes name the writer's
version).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from .corpus import QALY, ROOT, WINE_CLASSES, beyond, features, rows

HERE = Path(__file__).resolve().parent
RECORD = HERE / "batch.jsonl"
QALY_ARG = ",".join(f"{k}={v}" for k, v in QALY.items())
COMMON = ("--no-progress", "--model-dir", str(ROOT / "models"))


def write_inputs(work: Path) -> None:
    """Labelled CSVs with an id column: 40 medical rows (two out of range), 24 wine rows,
    and a headerless copy of the medical rows (label first, the card's feature order)."""
    medical = rows("medical", 40, seed=51)
    medical[3] = beyond("medical", medical[3])
    medical[17] = beyond("medical", medical[17])
    labels = [int(i % 3 == 0) for i in range(40)]
    names = features("medical")
    lines = [",".join(["id", "label", *names])]
    lines += [
        ",".join([f"m{i:03d}", str(y), *map(repr, r)])
        for i, (r, y) in enumerate(zip(medical, labels, strict=True))
    ]
    (work / "medical.csv").write_text("\n".join(lines) + "\n")
    plain = [",".join([str(y), *map(repr, r)]) for r, y in zip(medical, labels, strict=True)]
    (work / "medical-plain.csv").write_text("\n".join(plain) + "\n")
    features_only = [",".join(map(repr, r)) for r in medical]
    (work / "medical-features.csv").write_text("\n".join(features_only) + "\n")
    wine = rows("wine", 24, seed=52)
    lines = [",".join(["id", "label", *features("wine")])]
    lines += [
        ",".join([f"w{i:03d}", WINE_CLASSES[i % 3], *map(repr, r)]) for i, r in enumerate(wine)
    ]
    (work / "wine.csv").write_text("\n".join(lines) + "\n")
    (work / "ragged.csv").write_text("1,2,3\n4,5\n")


# name -> arguments after ``python -m service.batch`` ({work} is the scratch folder).
JOBS: dict[str, list[str]] = {
    "score medical csv out": [
        "score",
        "{work}/medical.csv",
        "--model",
        "medical",
        "--keep",
        "id",
        "--output-format",
        "csv",
        "--partition-size",
        "4000",
        "-o",
        "{work}/out",
    ],
    "score medical parquet out": [
        "score",
        "{work}/medical.csv",
        "--model",
        "medical",
        "--keep",
        "id",
        "-o",
        "{work}/out",
    ],
    "score tuned csv out": [
        "score",
        "{work}/medical.csv",
        "--model",
        "tuned",
        "--output-format",
        "csv",
        "-o",
        "{work}/out",
    ],
    "score builtin no header threshold margin": [
        "score",
        "{work}/medical-features.csv",
        "--no-header",
        "--model",
        "builtin",
        "--threshold",
        "0.3",
        "--margin",
        "0.05",
        "--output-format",
        "csv",
        "-o",
        "{work}/out",
    ],
    "score default model": [
        "score",
        "{work}/medical.csv",
        "--output-format",
        "csv",
        "-o",
        "{work}/out",
    ],
    "score wine csv out": [
        "score",
        "{work}/wine.csv",
        "--model",
        "wine",
        "--keep",
        "id",
        "--output-format",
        "csv",
        "-o",
        "{work}/out",
    ],
    "score keep label": [
        "score",
        "{work}/wine.csv",
        "--model",
        "wine",
        "--keep",
        "id,label",
        "-o",
        "{work}/out",
    ],
    "score wine parquet out": ["score", "{work}/wine.csv", "--model", "wine", "-o", "{work}/out"],
    "score refuse out of range": [
        "score",
        "{work}/medical.csv",
        "--model",
        "medical",
        "--on-out-of-range",
        "refuse",
        "--output-format",
        "csv",
        "-o",
        "{work}/out",
    ],
    "score ragged": [
        "score",
        "{work}/ragged.csv",
        "--no-header",
        "--output-format",
        "csv",
        "-o",
        "{work}/out",
    ],
    "score unknown model": ["score", "{work}/medical.csv", "--model", "nope", "-o", "{work}/out"],
    "evaluate qaly": ["evaluate", "{work}/medical.csv", "--cost-matrix", QALY_ARG],
    "evaluate qaly small partitions": [
        "evaluate",
        "{work}/medical.csv",
        "--cost-matrix",
        QALY_ARG,
        "--partition-size",
        "3000",
    ],
    "evaluate qaly models threshold margin": [
        "evaluate",
        "{work}/medical.csv",
        "--cost-matrix",
        QALY_ARG,
        "--models",
        "medical,tuned",
        "--threshold",
        "0.4",
        "--margin",
        "0.02",
    ],
    "evaluate prevalence curve": [
        "evaluate",
        "{work}/medical.csv",
        "--cost-matrix",
        QALY_ARG,
        "--prevalence",
        "0.05",
        "--curve",
    ],
    "evaluate no header": [
        "evaluate",
        "{work}/medical-plain.csv",
        "--no-header",
        "--cost-matrix",
        "tp=120,fp=-15,tn=0,fn=-480",
    ],
    "evaluate bad cost matrix": [
        "evaluate",
        "{work}/medical.csv",
        "--cost-matrix",
        "tp=1,fp=x,tn=0,fn=0",
    ],
    "evaluate missing label": [
        "evaluate",
        "{work}/medical.csv",
        "--cost-matrix",
        QALY_ARG,
        "--label",
        "nope",
    ],
}


def _file(path: Path) -> dict[str, Any]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        return {"schema": str(table.schema), "rows": table.to_pylist()}
    data = path.read_bytes()
    try:
        return {"lines": data.decode("utf-8").splitlines(keepends=True)}
    except UnicodeDecodeError:
        return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def run_job(name: str, work: Path, scheduler: str) -> dict[str, Any]:
    """``python -m service.batch`` (its ``main``, in this process) on the cluster at
    ``scheduler``: starting a cluster per job would cost ten seconds each."""
    from service.batch.cli import main as batch_main

    args = [a.replace("{work}", str(work)) for a in JOBS[name]]
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = batch_main([*args[:1], *COMMON, "--scheduler", scheduler, *args[1:]])
    out = work / "out"
    files = {}
    if out.is_dir():
        files = {p.name: _file(p) for p in sorted(out.iterdir()) if p.is_file()}
    errors = stderr.getvalue().strip().splitlines()
    answer = {
        "name": name,
        "exit": code,
        "stdout": stdout.getvalue().splitlines(keepends=True),
        "stderr_last": errors[-1] if code and errors else "",
        "files": files,
    }
    return json.loads(json.dumps(answer).replace(str(work), "<work>"))


def run(name: str, scheduler: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="golden-batch-") as scratch:
        work = Path(scratch)
        write_inputs(work)
        return run_job(name, work, scheduler)


def main() -> int:
    from service.batch.engine import connect

    # Two worker processes, as the suite's session cluster (tests/conftest.py).
    with connect(workers=2) as client, RECORD.open("w", encoding="utf-8") as out:
        for name in JOBS:
            out.write(json.dumps(run(name, client.scheduler.address), sort_keys=True) + "\n")
    print(f"{len(JOBS)} jobs -> {RECORD}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
