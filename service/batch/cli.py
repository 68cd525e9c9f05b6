"""``python -m service.batch score|evaluate``: batch scoring and evaluation on Dask.

Exit status: 0 success; 2 bad input or options (one line on stderr naming the file, row
and column, no traceback); 1 anything else (the cluster, the output location).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PROG = "python -m service.batch"
EXIT_BAD_INPUT = 2
EXIT_FAILED = 1
DEFAULT_PARTITION = "16MiB"
_UNITS = {
    **{"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30},
    **{"kb": 1000, "mb": 1000**2, "gb": 1000**3, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30},
}


def _size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _UNITS or float(match.group(1)) * _UNITS[unit] < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size such as 16MiB or 100000")
    return int(float(match.group(1)) * _UNITS[unit])


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return value


def _unit(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number in [0, 1]")
    return value


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="CSV or Parquet files, globs or fsspec URLs"
    )
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=Path("models"),
        help="folder of model folders (default %(default)s)",
    )
    parser.add_argument(
        "--input-format", choices=("csv", "parquet"), help="default: from each file's name"
    )
    parser.add_argument(
        "--no-header",
        action="store_true",
        help="CSV without a header: the card's feature order, as the service's "
        "text/csv (evaluate: the label first)",
    )
    parser.add_argument("--threshold", type=_unit, help="default: each model card's")
    parser.add_argument("--margin", type=_unit, help="default: each model card's")
    parser.add_argument(
        "--partition-size",
        type=_size,
        default=_size(DEFAULT_PARTITION),
        help=f"bytes per partition (default {DEFAULT_PARTITION}); Parquet is cut at row groups",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--workers",
        type=_positive,
        default=1,
        help="start a LocalCluster of N worker processes (default 1)",
    )
    where.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="use an existing Dask cluster, e.g. tcp://10.0.0.5:8786",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Score or evaluate CSV/Parquet data too large for one request or one "
        "process, on a Dask cluster, with the service's models, codecs and economics.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    score = commands.add_parser("score", help="write score, label, close_confusion per row")
    _common(score)
    score.add_argument(
        "--output",
        "-o",
        required=True,
        metavar="DIR",
        help="folder (path or fsspec URL) for the part files; must be new or empty",
    )
    score.add_argument("--output-format", choices=("parquet", "csv"), default="parquet")
    score.add_argument("--model", help="model name (default: the service's default model)")
    score.add_argument(
        "--keep",
        type=_names,
        default=[],
        metavar="COLUMNS",
        help="input columns copied into the output, e.g. claim_id,date",
    )
    score.add_argument(
        "--on-out-of-range",
        choices=("flag", "refuse"),
        default="flag",
        help="rows with features outside the training range: list them in out_of_range "
        "(default) or stop the job naming the first (exit status 2)",
    )
    evaluate = commands.add_parser("evaluate", help="print /evaluate's JSON for labeled data")
    _common(evaluate)
    evaluate.add_argument(
        "--cost-matrix",
        required=True,
        metavar="tp=V,fp=V,tn=V,fn=V",
        help="dollar value of each outcome, or a JSON file with them",
    )
    evaluate.add_argument(
        "--models",
        type=_names,
        metavar="NAMES",
        help="models to evaluate and rank (default: every loaded model)",
    )
    evaluate.add_argument(
        "--label", default="label", help="the 0/1 label column (default %(default)s)"
    )
    evaluate.add_argument(
        "--prevalence",
        type=_unit,
        help="value the decisions as if the positives were this share of the data "
        "(counts, rates and AUC stay the data's)",
    )
    evaluate.add_argument(
        "--curve", action="store_true", help="add each model's expected value by threshold"
    )
    return parser


def parse_cost_matrix(text: str) -> Any:
    """``tp=V,fp=V,tn=V,fn=V``, or a JSON file holding those keys (or a card's cost_matrix)."""
    from costaware.economics import CostMatrix, EconomicsError
    from service.batch.adapter import BatchInputError

    where = "--cost-matrix"
    if "=" in text:
        raw: Any = {}
        for part in text.split(","):
            key, _, value = part.partition("=")
            try:
                raw[key.strip()] = float(value)
            except ValueError:
                raise BatchInputError(f"{where}: {part!r}: {value!r} is not a number") from None
    else:
        try:
            raw = json.loads(Path(text).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BatchInputError(f"{where}: {text}: not a readable JSON file ({exc})") from None
        if isinstance(raw, dict) and "cost_matrix" in raw:
            raw = raw["cost_matrix"]
    try:
        costs = CostMatrix.from_mapping(raw, prefix=where)
    except EconomicsError as exc:
        raise BatchInputError(str(exc)) from None
    if costs.per_instance:
        raise BatchInputError(f"{where}: batch evaluation needs one value per outcome, not lists")
    return costs


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from service.batch import jobs
    from service.batch.adapter import BatchInputError

    try:
        if args.command == "score":
            jobs.score(args)
        else:
            answer = jobs.evaluate(args, parse_cost_matrix(args.cost_matrix))
            print(json.dumps(answer, allow_nan=False, indent=2))
    except BatchInputError as exc:
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (OSError, RuntimeError) as exc:
        print(f"{PROG} {args.command}: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return 0
