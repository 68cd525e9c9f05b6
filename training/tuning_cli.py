"""``python -m training tune``: options, progress bar, result table, comparison and report."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from costaware.card import CardError, ModelCard, read_card
from costaware.decision import DEFAULT_MARGIN
from costaware.economics import (
    REFERENCE_QALY_VALUES,
    CostMatrix,
    EconomicsError,
    elkan_threshold,
    expected_value,
    threshold_sweep,
)
from costaware.figures import new_figure, to_png
from costaware.tabular import TabularError
from training.calibrate import CalibrationError, make_plan
from training.data import DEFAULT_SPLIT_SEED, DEFAULT_TEST_SIZE
from training.export import ExportError
from training.fit import stderr_progress
from training.options import (
    COST_MATRIX_METAVAR,
    PROG,
    REFERENCE_MATRIX_TEXT,
    OptionError,
    add_replace_argument,
    fraction,
    parse_cost_matrix,
    positive_int,
    refuse_existing_models,
    run_reporting_errors,
)
from training.report import STYLE, escape, html_table, money
from training.tuning import (
    DEFAULT_K,
    DEFAULT_NAME,
    DEFAULT_RATIOS,
    DEFAULT_RULES_TEXT,
    SELECTIONS,
    CostSearch,
    LossSetting,
    MapFunction,
    SearchResult,
    TuneOutcome,
    TuningError,
    check_k,
    default_grid,
    default_rules,
    parse_grid,
    parse_rules,
    resolve_selection,
    tune,
)
from training.variants import DEFAULT_EPOCHS, DEFAULT_SEED, NAME_PATTERN, VariantError

DEFAULT_GRID_TEXT = ",".join(["builtin", *(f"{r:.4g}" for r in DEFAULT_RATIOS), "matrix"])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = (
        "Choose the loss weights and the decision threshold for a cost matrix by stratified "
        "K-fold cross-validation on the training split (the held-out split is sealed until the "
        "choice is made), refit the winner on the whole training split and export it."
    )
    parser.epilog = (
        "grid entries (--grid, comma-separated): builtin (cross-entropy), matrix (the weights\n"
        "the cost matrix implies: fn_cost = tp - fn, fp_cost = tn - fp), R (fn_cost R,\n"
        "fp_cost 1) or F:P.\n"
        f"default: {DEFAULT_GRID_TEXT}"
    )
    parser.add_argument(
        "--cost-matrix",
        default=REFERENCE_MATRIX_TEXT,
        metavar=COST_MATRIX_METAVAR,
        help="dollar value of each outcome (negative = loss), or a JSON file with them "
        "(default: the reference QALY values, %(default)s)",
    )
    parser.add_argument(
        "--data", type=Path, action="append", metavar="CSV", help="training CSV (repeatable)"
    )
    parser.add_argument("--label", metavar="COLUMN", help="name of the 0/1 label column")
    parser.add_argument("--test-size", type=fraction, default=DEFAULT_TEST_SIZE)
    parser.add_argument("--split-seed", type=int, default=DEFAULT_SPLIT_SEED)
    parser.add_argument("--grid", default=None, metavar="LIST", help="loss settings to search")
    parser.add_argument(
        "--thresholds",
        default=None,
        metavar="LIST",
        help="threshold rules to search for every loss setting: 'in-sample' (the best "
        "threshold on the rows the model was fitted on), 'elkan' (Elkan's t* of the matrix) "
        f"or fixed values in [0, 1], 0 meaning treat everyone (default {DEFAULT_RULES_TEXT})",
    )
    parser.add_argument(
        "--select",
        choices=list(SELECTIONS),
        default=None,
        help="how the winner is picked: 'elkan' (threshold Elkan's t*, the loss setting "
        "with the best CV value there; the default when the rules include t*) or 'best' "
        "(the best CV value over every setting and rule)",
    )
    parser.add_argument(
        "--k", type=positive_int, default=DEFAULT_K, help="folds (default %(default)s)"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        help="seed of the folds and of every fit (default %(default)s)",
    )
    parser.add_argument("--epochs", type=positive_int, default=DEFAULT_EPOCHS)
    parser.add_argument("--name", default=DEFAULT_NAME, help="model name (default %(default)s)")
    parser.add_argument("--margin", type=fraction, default=DEFAULT_MARGIN)
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    add_replace_argument(parser)
    parser.add_argument("--report-dir", type=Path, default=Path("reports"))
    parser.add_argument("--no-report", action="store_true")
    parser.add_argument(
        "--calibration",
        default="sigmoid",
        metavar="sigmoid|isotonic|none",
        help="the map to the graph's probability output, fitted on the winner's out-of-fold "
        "scores from the search (default %(default)s)",
    )
    cluster = parser.add_mutually_exclusive_group()
    cluster.add_argument(
        "--workers",
        type=positive_int,
        metavar="N",
        help="run the cross-validation fits on a Dask LocalCluster of N worker processes "
        "(needs the batch extra); same winner and card as a local run",
    )
    cluster.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run the cross-validation fits on an existing Dask cluster (its workers need "
        "the training environment)",
    )


def dask_map(client: Any) -> MapFunction:
    """A ``map`` over a Dask client: one task per call, the results in order.

    A fit's result does not depend on where it runs (see :func:`training.fit.seeded_fit` and
    :func:`training.fit.kernel_initializer`), so the search equals a local one."""

    def mapper(function: Callable[..., Any], *iterables: Iterable[Any]) -> Iterator[Any]:
        futures = client.map(function, *iterables, pure=False)
        try:
            for future in futures:
                yield future.result()
        finally:
            client.cancel(futures)

    return mapper


@contextmanager
def fit_map(args: argparse.Namespace) -> Iterator[MapFunction]:
    """The builtin ``map``, or a Dask client's with ``--workers``/``--scheduler``."""
    if not (args.workers or args.scheduler):
        yield map
        return
    try:
        from costaware.cluster import connect
    except ImportError as exc:
        raise TuningError(
            f"--workers/--scheduler need dask.distributed (the batch extra): {exc}"
        ) from None
    with connect(args.workers, args.scheduler) as client:
        stderr_progress(f"tune: cross-validation fits on {client.scheduler.address}")
        client.run(quiet_tensorflow_warnings)
        yield dask_map(client)


# ---------------------------------------------------------------------------
# Progress


class ProgressBar:
    """A text bar on ``stream``: redrawn in place on a terminal, one line per fit otherwise."""

    def __init__(self, stream: IO[str] | None = None, width: int = 30) -> None:
        self.stream = stream or sys.stderr
        self.width = width
        self.started = time.monotonic()
        self.tty = self.stream.isatty()

    def __call__(self, done: int, total: int, setting: LossSetting, fold: int) -> None:
        elapsed = time.monotonic() - self.started
        filled = round(self.width * done / total)
        left = elapsed / done * (total - done)
        line = (
            f"[{'#' * filled}{'.' * (self.width - filled)}] {done}/{total} fits  "
            f"{setting.label} fold {fold}  {elapsed:.0f}s, ~{left:.0f}s left"
        )
        if self.tty:
            self.stream.write(f"\r{line:<100}" + ("\n" if done == total else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


# ---------------------------------------------------------------------------
# Results


def _money(value: float) -> str:
    return f"{value:,.2f}"


def format_search(result: SearchResult) -> str:
    """The grid table: per loss setting, the in-sample rule, the selection's rule (Elkan's
    t*) when it fixes one, and the setting's best rule."""
    fixed = result.selected_rule
    header = (
        f"  {'loss setting':<26} {'in-sample':>11} "
        + (f"{fixed.name[:14]:>14} " if fixed else "")
        + f"{'best rule':>14} {'CV EV mean':>11} "
        f"{'sd':>9} {'min':>11} {'max':>11} {'mean fold t':>11}"
    )
    lines = [header, "  " + "-" * (len(header) - 2)]
    winner = result.winner
    for r in result.settings:
        best, in_sample = r.best, r.in_sample
        mark = "*" if r.setting == winner.setting else " "
        lines.append(
            f"{mark} {r.setting.label:<26} "
            f"{_money(in_sample.mean) if in_sample else '-':>11} "
            + (f"{_money(r.candidate(fixed).mean):>14} " if fixed else "")
            + f"{best.rule.name:>14} "
            f"{_money(best.mean):>11} {_money(best.std):>9} "
            f"{_money(float(best.values.min())):>11} {_money(float(best.values.max())):>11} "
            f"{best.mean_threshold:>11.4g}"
        )
    lines.append(
        f"CV EV: mean validation expected value per instance over {result.k} stratified folds "
        f"of the training split (seed {result.seed}); in-sample: the fold's in-sample best "
        "threshold; best rule: the setting's best of "
        f"{', '.join(r.name for r in result.rules)}; * = chosen ({winner.label}, "
        f"selection {result.selection}: {SELECTIONS[result.selection]})"
    )
    return "\n".join(lines)


@dataclass(frozen=True)
class Comparison:
    name: str
    threshold: float
    held_out_value: float


def compare_with_models(card: ModelCard, models_dir: Path, costs: CostMatrix) -> list[Comparison]:
    """Other models in ``models_dir`` evaluated on the same held-out rows, at their own
    card thresholds, under ``costs``."""
    labels = np.asarray(card.held_out.labels)
    found = []
    for folder in sorted(p for p in models_dir.iterdir() if p.is_dir()):
        if folder.name == card.name:
            continue
        try:
            other = read_card(folder)
        except CardError:
            continue
        d, mine = other.training.data, card.training.data
        same_split = (d.sha256, d.test_size, d.split_seed) == (
            mine.sha256,
            mine.test_size,
            mine.split_seed,
        ) and other.held_out.labels == card.held_out.labels
        if same_split:
            value = expected_value(labels, other.held_out.scores, other.threshold, costs)
            found.append(Comparison(other.name, other.threshold, value))
    return found


def format_outcome(outcome: TuneOutcome, others: Sequence[Comparison]) -> str:
    card = outcome.export.card
    tuned = outcome.tuned
    costs = tuned.search.costs
    labels = np.asarray(card.held_out.labels)
    held_out = expected_value(labels, card.held_out.scores, card.threshold, costs)
    c = card.metrics.confusion
    lines = [
        f"{card.name}: loss {tuned.search.winner.setting.label}, threshold rule "
        f"{tuned.search.winner.rule.name}: {card.threshold:.6g} "
        f"(in-sample EV on the training split {_money(tuned.train_value)}), "
        f"exported to {outcome.export.folder}",
        f"held out ({len(labels)} rows): FN {c.fn}, FP {c.fp}, EV {_money(held_out)} per instance",
    ]
    if others:
        lines.append("held-out EV of the other models on the same split (their card thresholds):")
        for other in others:
            lines.append(
                f"  {other.name:<16} t={other.threshold:<8.4g} {_money(other.held_out_value):>12}"
                f"   {card.name} - {other.name}: {held_out - other.held_out_value:+,.2f}"
            )
        best = max(others, key=lambda o: o.held_out_value)
        lines.append(
            f"{card.name} vs the best of them ({best.name}): "
            f"{held_out - best.held_out_value:+,.2f} per instance"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Report


def _finish(figure: Any, ax: Any, xlabel: str, ylabel: str, title: str) -> bytes:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    ax.set_title(title)
    return to_png(figure)


def cv_figure_png(result: SearchResult) -> bytes:
    """Cross-validated expected value against fn_cost/fp_cost (log axis), ± one sd: at the
    selection's threshold (Elkan's t*) when it fixes one, the in-sample threshold rule and
    each setting's best rule; cross-entropy as lines."""
    figure, axes = new_figure(8, 4.5)
    ax = axes[0]
    ratios = [r for r in result.settings if r.setting.source == "ratio"]
    series = [("best threshold rule", lambda r: r.best, "#1f77b4")]
    fixed = result.selected_rule
    if fixed is not None:
        # The selection compares settings at this rule, so the chosen point lies on it.
        series.insert(0, (f"threshold {fixed.name}", lambda r: r.candidate(fixed), "#2ca02c"))
    if result.settings[0].in_sample is not None:
        series.append(("in-sample threshold", lambda r: r.in_sample, "#ff7f0e"))
    for name, pick, color in series:
        if ratios:
            chosen = [pick(r) for r in ratios]
            ax.errorbar(
                [r.setting.ratio for r in ratios], [c.mean for c in chosen],
                yerr=[c.std for c in chosen], marker="o", capsize=3, color=color,
                label=f"custom loss, fp_cost = 1, {name}",
            )  # fmt: skip
        for r in result.settings:
            c = pick(r)
            if r.setting.source == "matrix":
                ax.errorbar(
                    [r.setting.ratio], [c.mean], yerr=[c.std], marker="s", color=color,
                    capsize=3, linestyle="none", label=f"{r.setting.label} (matrix), {name}",
                )  # fmt: skip
            elif r.setting.source == "builtin":
                ax.axhline(c.mean, color=color, linestyle="--", label=f"cross-entropy, {name}")
    winner = result.winner
    if winner.setting.ratio is not None:
        ax.plot(
            [winner.setting.ratio], [winner.mean], marker="*", markersize=16, color="#d62728",
            linestyle="none", label=f"chosen: {winner.label}",
        )  # fmt: skip
    else:
        ax.plot([], [], color="#d62728", label=f"chosen: {winner.label}")
    ax.set_xscale("log")
    return _finish(
        figure,
        ax,
        "fn_cost / fp_cost (log scale)",
        "CV expected value per instance ($)",
        f"{result.k}-fold cross-validated expected value (mean ± sd over folds)",
    )


def threshold_figure_png(outcome: TuneOutcome) -> bytes:
    """The winner's expected value against threshold: on the training split (which the
    model was refitted on, and the in-sample rule reads) and on the held-out split (never
    seen by the choice)."""
    tuned = outcome.tuned
    costs = tuned.search.costs
    card = outcome.export.card
    figure, axes = new_figure(8, 4.5)
    ax = axes[0]
    curves = (
        ("training split (refitted on it)", outcome.split.y_train, tuned.train_scores),
        ("held-out split", np.asarray(card.held_out.labels), np.asarray(card.held_out.scores)),
    )
    for label, y, s in curves:
        sweep = threshold_sweep(y, s, costs)
        (line,) = ax.plot(sweep.thresholds, sweep.expected_value, label=label)
        # a marker, because a chosen threshold of 0 sits on the axis edge
        at = expected_value(y, s, card.threshold, costs)
        ax.plot([card.threshold], [at], "o", color=line.get_color())
    ax.axvline(card.threshold, color="#d62728", linestyle=":", label=f"chosen {card.threshold:.4g}")
    elkan = elkan_threshold(costs)
    if elkan.kind == "threshold":
        ax.axvline(
            elkan.value, color="#2ca02c", linestyle="-.", label=f"Elkan t* {elkan.value:.4g}"
        )
    ax.set_xscale("symlog", linthresh=1e-3, linscale=0.3)
    ax.set_xlim(0.0, 1.0)
    return _finish(
        figure,
        ax,
        "threshold (symlog scale)",
        "expected value per instance ($)",
        f"{card.name} ({tuned.search.winner.label}): expected value by threshold",
    )


def write_tuning_report(
    outcome: TuneOutcome, others: Sequence[Comparison], report_dir: Path
) -> Path:
    """``report_dir/tuning.html`` with the grid table, the comparison and two figures."""
    report_dir.mkdir(parents=True, exist_ok=True)
    result = outcome.tuned.search
    card = outcome.export.card
    (report_dir / "tuning-cv.png").write_bytes(cv_figure_png(result))
    (report_dir / "tuning-threshold.png").write_bytes(threshold_figure_png(outcome))
    winner = result.winner
    grid_rows = [
        (
            ("* " if c.same_as(winner) else "") + r.setting.label,
            "—" if r.setting.ratio is None else f"{r.setting.ratio:.4g}",
            c.rule.name,
            money(c.mean),
            money(c.std),
            money(float(c.values.min())),
            money(float(c.values.max())),
            f"{c.mean_threshold:.4g}",
        )
        for r in result.settings
        for c in r.candidates
    ]
    labels = np.asarray(card.held_out.labels)
    held_out = expected_value(labels, card.held_out.scores, card.threshold, result.costs)
    compare_rows = [(card.name, f"{card.threshold:.4g}", money(held_out), "")] + [
        (
            o.name,
            f"{o.threshold:.4g}",
            money(o.held_out_value),
            money(held_out - o.held_out_value),
        )
        for o in others
    ]
    matrix = ", ".join(f"{k} {v:,.2f}" for k, v in result.costs.to_dict().items())
    page = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>costaware cost tuning</title><style>{STYLE}</style></head><body>"
        "<h1>Cost tuning</h1>"
        f"<p class='note'>Outcome values per instance: {escape(matrix)}. Data: "
        f"{escape(card.training.data.source)}; {card.training.data.n_train} training rows, "
        f"{card.training.data.n_test} held out (seed {card.training.data.split_seed}). "
        f"{result.k}-fold stratified CV on the training split only (seed {result.seed}, "
        f"{result.epochs} epochs per fit); per fold, each threshold rule sets its threshold "
        "from the fold's training part only, and it is applied to the validation part.</p>"
        + html_table(
            "Cross-validated expected value per loss setting and threshold rule ($ per instance)",
            (
                "loss setting",
                "fn:fp",
                "threshold rule",
                "CV mean",
                "sd",
                "min",
                "max",
                "mean fold threshold",
            ),
            grid_rows,
        )
        + "<img src='tuning-cv.png' alt='CV expected value against fn_cost/fp_cost'>"
        + f"<h2>{escape(card.name)}</h2><p>Chosen: {escape(winner.label)} (selection "
        f"{escape(result.selection)}: {escape(SELECTIONS[result.selection])}), refitted on "
        f"the whole training split; threshold {card.threshold:.6g} "
        f"({escape(winner.rule.description)}; {escape(THRESHOLD_NOTE)}).</p>"
        + html_table(
            "Held-out expected value ($ per instance; each model at its card threshold)",
            ("model", "threshold", "held-out EV", f"{card.name} minus this"),
            compare_rows,
        )
        + "<img src='tuning-threshold.png' alt='expected value by threshold for the winner'>"
        + "</body></html>\n"
    )
    index = report_dir / "tuning.html"
    index.write_text(page, encoding="utf-8")
    return index


THRESHOLD_NOTE = (
    "the winning rule applied to the refitted model as each fold applied it, so the CV "
    "value estimates exactly this choice"
)


# ---------------------------------------------------------------------------
# Entry point


def run(args: argparse.Namespace) -> int:
    return run_reporting_errors(
        f"{PROG} tune",
        lambda: _run(args),
        bad_input=(
            TabularError,
            VariantError,
            TuningError,
            EconomicsError,
            OptionError,
            CalibrationError,
        ),
        failed=(ExportError, OSError),
    )


def quiet_tensorflow_warnings() -> None:
    """Every fold builds a fresh model, which Keras reports as tf.function retracing."""
    import logging

    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def _run(args: argparse.Namespace) -> int:
    from training.pipeline import load_data, make_split

    quiet_tensorflow_warnings()
    if not NAME_PATTERN.match(args.name):
        raise TuningError(f"--name {args.name!r}: use letters, digits, '.', '_', '-'")
    costs = parse_cost_matrix(args.cost_matrix)
    for warning in costs.warnings():
        stderr_progress(f"warning: {warning}")
    grid = parse_grid(args.grid, costs) if args.grid else default_grid(costs)
    rules = parse_rules(args.thresholds, costs) if args.thresholds else default_rules(costs)
    refuse_existing_models(args.models_dir, [args.name], replace=args.replace)
    dataset = load_data(args.data, label=args.label)
    data = make_split(dataset, test_size=args.test_size, seed=args.split_seed)
    check_k(data.y_train, args.k)
    make_plan(args.calibration, "binary", folds=args.k)  # refuse a bad method before the search
    selection = resolve_selection(args.select, rules, costs)
    stderr_progress(
        f"tune: {dataset.source}: {len(data.y_train)} training rows ({len(data.y_test)} held out "
        f"and sealed); {len(grid)} loss settings x {args.k} folds, {args.epochs} epochs per fit; "
        f"threshold rules {', '.join(r.name for r in rules)}; selection {selection}"
    )
    started = time.monotonic()
    with fit_map(args) as map_fn:
        search = CostSearch(
            costs,
            grid=grid,
            rules=rules,
            selection=selection,
            k=args.k,
            seed=args.seed,
            epochs=args.epochs,
            on_fit=ProgressBar(),
            map_fn=map_fn,
        )
        outcome = tune(
            dataset,
            data,
            search,
            args.models_dir,
            name=args.name,
            margin=args.margin,
            calibration=args.calibration,
        )
    others = compare_with_models(outcome.export.card, args.models_dir, costs)
    if not args.no_report:
        stderr_progress(f"report: {write_tuning_report(outcome, others, args.report_dir)}")
    print(format_search(outcome.tuned.search))
    print()
    print(format_outcome(outcome, others))
    if costs == REFERENCE_QALY_VALUES:
        print("EV: expected value per patient under the reference QALY values ($100,000/QALY)")
    stderr_progress(f"tune: {time.monotonic() - started:.0f} s")
    return 0
