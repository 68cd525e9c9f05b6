"""``python -m training``: train variants, export them to ONNX, write the report.

With no subcommand it trains (by default the three reference variants on the
bundled data). A first argument naming a subcommand in :data:`SUBCOMMANDS`
dispatches to that subcommand's module instead.

Exit status: 0 success, 2 bad input or options (one line on stderr, no traceback),
1 an export that failed its parity check or could not be written.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from costaware.decision import DEFAULT_MARGIN, DEFAULT_THRESHOLD
from costaware.tabular import TabularError
from training.data import DEFAULT_SPLIT_SEED, DEFAULT_TEST_SIZE, Split
from training.export import ExportError
from training.fit import Progress, stderr_progress
from training.options import (
    COST_MATRIX_METAVAR,
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    PROG,
    OneLineParser,
    OptionError,
    add_replace_argument,
    fraction,
    parse_cost_matrix,
    positive_int,
    refuse_existing_models,
)
from training.subsample import SubsampleError
from training.subsample_cli import add_training_arguments, subsample_training_rows
from training.variants import (
    DEFAULT_EPOCHS,
    DEFAULT_SEED,
    VariantError,
    VariantSpec,
    parse_variant,
    reference_variants,
)

if TYPE_CHECKING:
    from training.pipeline import TrainingRows

__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILED", "PROG", "SUBCOMMANDS", "Subcommand", "main"]


@dataclass(frozen=True)
class Subcommand:
    """A subcommand implemented by ``module``, which must define
    ``add_arguments(parser: argparse.ArgumentParser) -> None`` and
    ``run(args: argparse.Namespace) -> int`` (the exit status). The module is
    imported only when its subcommand runs, so ``--help`` stays fast."""

    help: str
    module: str


# Register a subcommand here: name -> Subcommand(help, module).
SUBCOMMANDS: dict[str, Subcommand] = {
    "audit-subsample": Subcommand(
        "draw a subsample of negatives and audit it for bias", "training.subsample_cli"
    ),
    "multiclass": Subcommand(
        "train a K-class softmax model decided by a value matrix (default: wine data)",
        "training.multiclass_cli",
    ),
    "tune": Subcommand(
        "tune the loss weights by cross-validated expected value", "training.tuning_cli"
    ),
}


# Extension point for options that change the rows each variant is fitted on
# (e.g. --subsample-negatives K / --allow-biased): a hook adds its arguments to the
# training parser, and :func:`training_rows` turns them into a TrainingRows.
TRAIN_ARGUMENT_HOOKS: list[Callable[[argparse.ArgumentParser], None]] = [add_training_arguments]


def training_rows(
    args: argparse.Namespace,
    data: Split,
    progress: Progress,
    feature_names: list[str] | None = None,
) -> TrainingRows | None:
    """The rows every variant is fitted on, or None for the whole training split.

    The extension point for negative subsampling: return a :class:`TrainingRows`
    holding the subsample, its ``beta`` and a ``subsample`` card section.
    """
    return subsample_training_rows(args, data, progress, feature_names)


def _subcommand_list() -> str:
    width = max(len(name) for name in SUBCOMMANDS)
    return "\n".join(f"  {name:<{width}}  {sub.help}" for name, sub in SUBCOMMANDS.items())


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog=PROG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Train binary classifiers with a cost-weighted loss, export each to ONNX "
            "(scaling inside the graph) with a model card, and write an HTML report.\n\n"
            "Default: the three reference variants (builtin, custom-5to1, medical) on the "
            "breast-cancer data bundled with scikit-learn (malignant = 1)."
        ),
        epilog=(
            "variant specs (--variant, repeatable):\n"
            "  name=NAME[,loss=builtin|custom][,fn_cost=F,fp_cost=P][,epochs=E][,seed=S]"
            "[,batch_size=B][,learning_rate=R]\n"
            "  name=NAME,tp=V,fp=V,tn=V,fn=V   outcome values in dollars (negative = loss);\n"
            "      the loss weights become fn_cost = tp - fn, fp_cost = tn - fp, and the\n"
            "      variant is priced with its own matrix (others with --cost-matrix)\n"
            "  e.g. --variant name=medical,loss=custom,fn_cost=200,fp_cost=1\n"
            "       --variant name=qaly,tp=-35280,fp=-1287.67,tn=0,fn=-252000\n\n"
            f"subcommands ({PROG} SUBCOMMAND --help):\n" + _subcommand_list()
        ),
    )
    data = parser.add_argument_group("data")
    data.add_argument(
        "--data",
        type=Path,
        action="append",
        metavar="CSV",
        help="training CSV (repeatable; files are concatenated). Default: the bundled "
        "breast-cancer data",
    )
    data.add_argument(
        "--label",
        metavar="COLUMN",
        help="name of the 0/1 label column (the CSV then needs a header row). Without it "
        "the SageMaker convention applies: label in the first column, no header",
    )
    data.add_argument(
        "--test-size",
        type=fraction,
        default=DEFAULT_TEST_SIZE,
        help="held-out fraction for the card's metrics and the report (default %(default)s)",
    )
    data.add_argument(
        "--split-seed",
        type=int,
        default=DEFAULT_SPLIT_SEED,
        help="random_state of the train/test split (default %(default)s)",
    )
    variants = parser.add_argument_group("variants")
    variants.add_argument(
        "--variant",
        action="append",
        metavar="SPEC",
        help="a variant to train (repeatable, see below). Default: the three reference variants",
    )
    variants.add_argument(
        "--cost-matrix",
        metavar=COST_MATRIX_METAVAR,
        help="dollar value of each outcome (negative = loss), or a JSON file with them (or a "
        "model card): prices every variant whose spec gives no tp/fp/tn/fn, in the cards, the "
        "summary table and the report. Default: the reference QALY values for the bundled "
        "data, none for your own CSV (decisions are then not priced)",
    )
    variants.add_argument(
        "--epochs",
        type=positive_int,
        default=DEFAULT_EPOCHS,
        help="epochs for every variant unless its spec says otherwise (default %(default)s)",
    )
    variants.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        help="random seed for every variant unless its spec says otherwise; seed 1 "
        "reproduces the published notebook (default %(default)s)",
    )
    variants.add_argument(
        "--threshold",
        type=fraction,
        default=DEFAULT_THRESHOLD,
        help="decision threshold written to the cards and used for the metrics "
        "(default %(default)s)",
    )
    variants.add_argument(
        "--margin",
        type=fraction,
        default=DEFAULT_MARGIN,
        help="close-confusion margin written to the cards (default %(default)s)",
    )
    output = parser.add_argument_group("output")
    output.add_argument(
        "--models-dir",
        type=Path,
        default=Path("models"),
        help="where model folders <name>/model.onnx + model-card.json go (default %(default)s)",
    )
    output.add_argument(
        "--report-dir",
        type=Path,
        default=Path("reports"),
        help="where the HTML report and its PNG figures go (default %(default)s)",
    )
    output.add_argument("--no-report", action="store_true", help="skip the report")
    add_replace_argument(output)
    for hook in TRAIN_ARGUMENT_HOOKS:
        hook(parser)
    return parser


def variants_from_args(args: argparse.Namespace) -> list[VariantSpec]:
    if not args.variant:
        return reference_variants(epochs=args.epochs, seed=args.seed)
    specs = [parse_variant(text, epochs=args.epochs, seed=args.seed) for text in args.variant]
    names = [spec.name for spec in specs]
    duplicate = next((name for name in names if names.count(name) > 1), None)
    if duplicate:
        raise VariantError(f"variant name {duplicate!r} given twice")
    return specs


def run_training(args: argparse.Namespace) -> int:
    from training.pipeline import format_summary, load_data, make_split, train_variant

    specs = variants_from_args(args)
    costs = parse_cost_matrix(args.cost_matrix) if args.cost_matrix else None
    # after the options are checked, before the data is read and anything is trained
    refuse_existing_models(args.models_dir, [s.name for s in specs], replace=args.replace)
    dataset = load_data(args.data, label=args.label)
    data = make_split(dataset, test_size=args.test_size, seed=args.split_seed)
    stderr_progress(
        f"data: {dataset.source}: {len(dataset.y)} rows, {dataset.x.shape[1]} features, "
        f"{len(data.y_train)} train / {len(data.y_test)} held out"
    )
    rows = training_rows(args, data, stderr_progress, dataset.feature_names)
    results = [
        train_variant(
            spec,
            dataset,
            data,
            args.models_dir,
            rows=rows,
            threshold=args.threshold,
            margin=args.margin,
            cost_matrix=costs,
        )
        for spec in specs
    ]
    if not args.no_report:
        from training.report import write_report

        index = write_report(results, data, args.report_dir)
        stderr_progress(f"report: {index}")
    print(format_summary(results))
    return 0


def _run_subcommand(name: str, argv: Sequence[str]) -> int:
    sub = SUBCOMMANDS[name]
    try:
        module = importlib.import_module(sub.module)
    except ModuleNotFoundError as exc:
        if exc.name != sub.module:
            raise
        print(f"{PROG} {name}: not available in this build", file=sys.stderr)
        return EXIT_BAD_INPUT
    parser = OneLineParser(prog=f"{PROG} {name}", description=sub.help)
    module.add_arguments(parser)
    args = parser.parse_args(argv)
    return int(module.run(args))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        return _run_subcommand(argv[0], argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return run_training(args)
    except (TabularError, VariantError, SubsampleError, OptionError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (ExportError, OSError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
