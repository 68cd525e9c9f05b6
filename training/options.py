"""What every ``python -m training`` command line shares: exit statuses, the one-line
parser, option types and the ``--cost-matrix`` option.

The main CLI (:mod:`training.cli`) and each subcommand module import these from here,
so a subcommand never imports the CLI that dispatches to it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NoReturn

from costaware.economics import OUTCOMES, REFERENCE_QALY_VALUES, CostMatrix, EconomicsError

PROG = "python -m training"
EXIT_BAD_INPUT = 2
EXIT_FAILED = 1
REFERENCE_MATRIX_TEXT = "tp=-35280,fp=-1287.67,tn=0,fn=-252000"
COST_MATRIX_METAVAR = "tp=V,fp=V,tn=V,fn=V|JSON"


class OptionError(ValueError):
    """A bad command-line option; the message names the option."""


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line, like every other bad input."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see --help)\n")


def fraction(text: str) -> float:
    """An argparse type: a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def parse_cost_matrix(text: str, option: str = "--cost-matrix") -> CostMatrix:
    """``tp=V,fp=V,tn=V,fn=V``, or a JSON file holding those four keys (or a model card's
    ``cost_matrix``). One value per outcome: a command line has no instances to index."""
    if "=" in text:
        values: dict[str, float] = {}
        for part in text.split(","):
            key, _, value = part.partition("=")
            key = key.strip()
            if key not in OUTCOMES:
                raise OptionError(f"{option}: {part!r}: expected tp=, fp=, tn= and fn=")
            if key in values:
                raise OptionError(f"{option}: {key} given twice")
            try:
                values[key] = float(value)
            except ValueError:
                raise OptionError(f"{option}: {key}={value!r} is not a number") from None
        try:
            return CostMatrix.from_mapping(values, prefix=option)
        except EconomicsError as exc:
            raise OptionError(str(exc)) from None
    path = Path(text)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OptionError(f"{option}: {path}: no such file (nor tp=..,fp=..,tn=..,fn=..)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OptionError(f"{option}: {path}: not a readable JSON file ({exc})") from None
    if isinstance(raw, dict) and "cost_matrix" in raw:
        raw = raw["cost_matrix"]
    try:
        costs = CostMatrix.from_mapping(raw, prefix=f"{option} {path}")
    except EconomicsError as exc:
        raise OptionError(str(exc)) from None
    if costs.per_instance:
        raise OptionError(f"{option} {path}: needs one value per outcome, not lists")
    return costs


REPLACE_HELP = (
    "overwrite the model folder of the same name if it already exists (default: refuse, "
    "before any training)"
)


def add_replace_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--replace``, for every command that writes a model folder."""
    parser.add_argument("--replace", action="store_true", help=REPLACE_HELP)


def refuse_existing_models(
    models_dir: Path, names: Iterable[str], *, replace: bool, how: str = "pass --replace"
) -> None:
    """Refuse to write into a model folder that already holds something unless ``replace``.

    Called before the data is loaded, so a refusal costs no training time. ``how`` says
    how this command asks for the overwrite (a flag, or the SageMaker hyperparameter).
    An empty folder is not a model, so writing into it needs no permission.
    """
    if replace:
        return
    for name in names:
        folder = models_dir / name
        if folder.exists() and not (folder.is_dir() and not any(folder.iterdir())):
            raise OptionError(
                f"{folder} already exists: {how} to overwrite it, or choose another model name"
            )


def describe_cost_matrix(costs: CostMatrix) -> str:
    """``tp -100, fp -300, tn 0, fn -1,000`` (and which matrix it is when it is the reference)."""
    text = ", ".join(f"{k} {v:,.6g}" for k, v in costs.to_dict().items())
    if costs == REFERENCE_QALY_VALUES:
        text += " (the reference QALY values at $100,000/QALY)"
    return text


def run_reporting_errors(
    where: str,
    body: Callable[[], int],
    bad_input: tuple[type[Exception], ...],
    failed: tuple[type[Exception], ...],
) -> int:
    """Run a subcommand's ``body``: a refusal of its input exits ``EXIT_BAD_INPUT``, a
    failure ``EXIT_FAILED``, each as one line ``<where>: error: <message>`` on stderr."""
    try:
        return body()
    except bad_input as exc:
        print(f"{where}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except failed as exc:
        print(f"{where}: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
