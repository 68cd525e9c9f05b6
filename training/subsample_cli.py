"""Negative subsampling on the command line.

``python -m training audit-subsample`` (registered in :data:`training.cli.SUBCOMMANDS`)
draws a subsample of negatives and audits it, or audits one drawn elsewhere
(``--selected-column``). Exit status: 0 the subsample passes the audit, 1 it is
biased, 2 bad input (one line on stderr naming the file, row and column).

``python -m training --subsample-negatives K`` (hooked into the training parser via
:data:`training.cli.TRAIN_ARGUMENT_HOOKS`) fits every variant on all positives and K
audited negatives of the training split; see :func:`subsample_training_rows`.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from costaware.tabular import TabularError, data_line_numbers
from training.subsample import (
    DEFAULT_ALPHA,
    AuditResult,
    Subsample,
    SubsampleError,
    audit_subsample,
    subsample_negatives,
)

if TYPE_CHECKING:
    from training.data import Split
    from training.fit import Progress
    from training.pipeline import TrainingRows

PROG = "python -m training audit-subsample"
EXIT_BIASED = 1
EXIT_BAD_INPUT = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``audit-subsample`` options (the parent CLI builds the parser)."""
    parser.add_argument("--data", type=Path, required=True, help="CSV file with a header row")
    parser.add_argument("--label", required=True, help="name of the 0/1 label column")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--negatives", type=int, metavar="K", help="draw K of the negatives, then audit"
    )
    what.add_argument(
        "--selected-column",
        metavar="COL",
        help="audit a subsample drawn elsewhere: 0/1 column marking the selected negatives "
        "(ignored on positive rows; not used as a feature)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, metavar="S", help="seed of the draw and the audit"
    )
    parser.add_argument(
        "--alpha",
        type=float,
        default=DEFAULT_ALPHA,
        metavar="A",
        help="significance level (default 0.01)",
    )
    parser.add_argument(
        "--stratify-by", metavar="COL", help="draw proportionally within the values of COL"
    )
    parser.add_argument(
        "--max-draws",
        type=int,
        default=1,
        metavar="N",
        help="re-draw up to N times until the audit passes (default 1: no re-draw)",
    )
    parser.add_argument("--json", action="store_true", help="print the audit as JSON")


def run(args: argparse.Namespace) -> int:
    """Run a parsed ``audit-subsample``; print the result; return the exit status."""
    try:
        audit = _audit(args)
    except TabularError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except SubsampleError as exc:
        print(f"{PROG}: error: {args.data}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.json:
        print(json.dumps(audit.to_dict(), indent=2))
    else:
        print(format_audit(audit, source=str(args.data)))
    return EXIT_BIASED if audit.biased else 0


def _audit(args: argparse.Namespace) -> AuditResult:
    from training.data import DataError, parse_labelled_csv, read_text

    if args.selected_column is not None and (args.stratify_by or args.max_draws != 1):
        raise SubsampleError("--stratify-by and --max-draws only apply to a draw (--negatives)")
    source = str(args.data)
    text = read_text(args.data)
    data = parse_labelled_csv(text, source=source, label=args.label)
    names = list(data.feature_names)
    x = data.x

    if args.selected_column is None:
        return _draw(
            x,
            data.y,
            names,
            args.negatives,
            seed=args.seed,
            stratify_by=args.stratify_by,
            option="--stratify-by",
            max_draws=args.max_draws,
            alpha=args.alpha,
        ).audit

    j = _column(names, args.selected_column, "--selected-column")
    marks = x[:, j]
    negative = data.y == 0
    bad = np.flatnonzero(negative & (marks != 0) & (marks != 1))
    if bad.size:
        raise DataError(
            f"selection mark {marks[bad[0]]:g} is not 0 or 1",
            source=source,
            row=data_line_numbers(text, header=True)[bad[0]],
            column=_file_column(args.selected_column, text),
            column_name=args.selected_column,
        )
    features = np.delete(x, j, axis=1)
    del names[j]
    audit = audit_subsample(
        features[negative],
        marks[negative] == 1,
        alpha=args.alpha,
        feature_names=names,
        seed=args.seed,
    )
    return replace(audit, sampler="given")


def _draw(
    x: np.ndarray,
    y: np.ndarray,
    names: list[str],
    k: int,
    *,
    seed: int,
    stratify_by: str | None,
    option: str,
    max_draws: int,
    alpha: float,
) -> Subsample:
    """Draw and audit; ``option`` names the stratification option in error messages."""
    strata = None if stratify_by is None else x[:, _column(names, stratify_by, option)]
    return subsample_negatives(
        x,
        y,
        k,
        seed=seed,
        strata=strata,
        stratify_by=stratify_by,
        max_draws=max_draws,
        alpha=alpha,
        feature_names=names,
    )


def _column(names: list[str], name: str, option: str) -> int:
    if name not in names:
        shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
        raise SubsampleError(f"{option}: no feature column named {name!r} (columns: {shown})")
    return names.index(name)


def _file_column(name: str, text: str) -> int | None:
    """1-based column of ``name`` in the file's header (the parsed features skip the label)."""
    header = next(line for line in text.splitlines() if line.strip())
    cells = [cell.strip().strip('"').strip() for cell in header.lstrip("\ufeff").split(",")]
    return cells.index(name) + 1 if name in cells else None


def format_audit(audit: AuditResult, *, source: str) -> str:
    """The audit as a readable table."""
    verdict = "BIASED" if audit.biased else "not biased"
    lines = [
        f"Subsample audit of {source}",
        f"  negatives {audit.n_negatives}, selected k = {audit.k} "
        f"(rate {audit.k / audit.n_negatives:.4f}), sampler {audit.sampler}"
        + (f" by {audit.stratify_by}" if audit.stratify_by else "")
        + ("" if audit.sampler == "given" else f", seed {audit.seed}, draws {audit.draws}"),
        f"  verdict: {verdict} at alpha = {audit.alpha:g} "
        f"(family-wise p-value {audit.p_value:.3g})",
        "",
        f"  classifier two-sample test (stratified {audit.n_splits}-fold, out-of-fold scores)",
        f"    {'classifier':<20}{'AUC':>8}{'accuracy':>10}{'p-value':>11}",
    ]
    for c in audit.classifiers:
        lines.append(f"    {c.name:<20}{c.auc:>8.4f}{c.accuracy:>10.4f}{c.p_value:>11.3g}")
    lines.append(f"    {'(chance)':<20}{0.5:>8.4f}{audit.chance_accuracy:>10.4f}")
    lines += ["", "  per-feature drift, selected vs unselected (KS, largest first)"]
    width = max(12, *(len(d.feature) for d in audit.drift)) + 2
    lines.append(
        f"    {'feature':<{width}}{'KS':>8}{'p-value':>11}{'AUC alone':>11}{'p-value':>11}"
    )
    for d in audit.drift:
        lines.append(
            f"    {d.feature:<{width}}{d.statistic:>8.4f}{d.p_value:>11.3g}"
            f"{d.auc:>11.4f}{d.auc_p_value:>11.3g}"
        )
    return "\n".join(lines)


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """``--subsample-negatives K`` and friends, for the training parser."""
    group = parser.add_argument_group(
        "negative subsampling (unbalanced data)",
        "Fit on every positive and K negatives of the training split (the held-out split "
        "is never subsampled), after an audit that the K negatives are not a biased "
        "sample. Served scores are corrected to the true base rate inside the ONNX graph: "
        "p = beta*p_s / (beta*p_s - p_s + 1), beta = K / training negatives.",
    )
    group.add_argument(
        "--subsample-negatives", type=int, metavar="K", help="keep K training negatives"
    )
    group.add_argument(
        "--allow-biased",
        action="store_true",
        help="train even if the audit finds the subsample biased (recorded in the card)",
    )
    group.add_argument(
        "--subsample-seed",
        type=int,
        default=0,
        metavar="S",
        help="seed of the draw (default %(default)s)",
    )
    group.add_argument(
        "--subsample-alpha",
        type=float,
        metavar="A",
        default=DEFAULT_ALPHA,
        help="significance level of the audit (default %(default)s)",
    )
    group.add_argument(
        "--subsample-stratify-by",
        metavar="COLUMN",
        help="draw proportionally within the values of this feature column",
    )
    group.add_argument(
        "--subsample-max-draws",
        type=int,
        default=1,
        metavar="N",
        help="re-draw up to N times until the audit passes (default %(default)s)",
    )


def subsample_training_rows(
    args: argparse.Namespace,
    data: Split,
    progress: Progress,
    feature_names: list[str] | None = None,
) -> TrainingRows | None:
    """The audited subsample of the training split, or None without ``--subsample-negatives``.

    Raises :class:`SubsampleError` for a biased subsample unless ``--allow-biased``.
    """
    from training.pipeline import TrainingRows

    k = getattr(args, "subsample_negatives", None)
    if k is None:
        if getattr(args, "allow_biased", False):
            raise SubsampleError("--allow-biased only applies with --subsample-negatives K")
        return None
    names = feature_names or [f"feature_{j + 1}" for j in range(data.x_train.shape[1])]
    sub = _draw(
        data.x_train,
        data.y_train,
        names,
        k,
        seed=args.subsample_seed,
        stratify_by=args.subsample_stratify_by,
        option="--subsample-stratify-by",
        max_draws=args.subsample_max_draws,
        alpha=args.subsample_alpha,
    )
    audit = sub.audit
    top = audit.drift[0]
    progress(
        f"subsample: all {sub.n_positives} positives and {k} of {audit.n_negatives} training "
        f"negatives (beta {sub.beta:.4g}); audit: {'BIASED' if audit.biased else 'not biased'} "
        f"at alpha {audit.alpha:g} (p-value {audit.p_value:.3g}, AUC {audit.auc:.3f}, "
        f"{audit.draws} draw(s), most drifted feature {top.feature!r})"
    )
    if audit.biased and not args.allow_biased:
        raise SubsampleError(
            f"the subsample of {k} training negatives is biased (p-value {audit.p_value:.3g} "
            f"<= alpha {audit.alpha:g}; classifier AUC {audit.auc:.3f}; most drifted feature "
            f"{top.feature!r}, KS {top.statistic:.3f}); try another --subsample-seed, "
            "--subsample-max-draws N, or --allow-biased to train on it anyway"
        )
    section = sub.card_section()
    section["allow_biased"] = bool(args.allow_biased)
    return TrainingRows(
        x=data.x_train[sub.keep],
        y=data.y_train[sub.keep],
        beta=sub.beta,
        card_sections={"subsample": section},
    )
