"""The HTML report (with PNG figures) that reproduces the blog's analysis.

Everything is computed from the exported cards' held-out scores (i.e. what
onnxruntime serves), with the shared economics core and figures, so the report
and the service agree by construction.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from costaware import economics, figures
from costaware.card import ModelCard
from training.data import REFERENCE_SOURCE, Split

if TYPE_CHECKING:
    from training.pipeline import VariantResult

INDEX = "index.html"
# The notebook's published figures for the reference variants (for comparison only).
PUBLISHED = {
    "builtin": {"accuracy": 0.951, "auc": 0.9888, "expected_value": -21164.86},
    "custom-5to1": {"accuracy": 0.944, "auc": 0.9895, "expected_value": -18160.83},
    "medical": {"accuracy": 0.846, "auc": 0.9891, "expected_value": -15273.85},
}

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 70em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
caption { text-align: left; font-weight: bold; padding-bottom: 0.3em; }
img { max-width: 100%; }
.note { color: #555; font-size: 0.9em; }
"""


def escape(text: object) -> str:
    return html.escape(str(text))


def money(value: float | None) -> str:
    return "—" if value is None else f"${value:,.2f}"


def html_table(caption: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><caption>{escape(caption)}</caption><tr>{head}</tr>{body}</table>"


def _summary_table(results: Sequence[VariantResult], matrices: list[str], which: list[int]) -> str:
    several = len(matrices) > 1
    rows = []
    for result, matrix in zip(results, which, strict=True):
        card = result.export.card
        m = card.metrics
        reference_data = card.training.data.source == REFERENCE_SOURCE
        published = PUBLISHED.get(card.name, {}) if reference_data else {}
        rows.append(
            (
                card.name,
                card.loss.type,
                f"{card.loss.fn_cost:g}:{card.loss.fp_cost:g}",
                f"{m.accuracy:.3f}",
                f"{m.auc:.4f}",
                f"{m.per_class['1'].recall:.2f}",
                f"{m.per_class['1'].precision:.2f}",
                m.confusion.fn,
                m.confusion.fp,
                money(result.expected_value),
                *((f"M{matrix + 1}",) if several else ()),
                money(published.get("expected_value")),
            )
        )
    return html_table(
        "Held-out accuracy, AUC and expected value (threshold as in each card)",
        (
            "model",
            "loss",
            "fn:fp",
            "accuracy",
            "AUC",
            "recall (1)",
            "precision (1)",
            "FN",
            "FP",
            "EV $/instance" + ("" if several else " (matrix below)"),
            *(("matrix",) if several else ()),
            "EV, published notebook",
        ),
        rows,
    )


def _value_table(results: Sequence[VariantResult], labels: np.ndarray) -> str:
    rows = []
    for result in results:
        card, costs = result.export.card, result.pricing.costs
        if costs is None:
            rows.append((card.name, "—", "—", "—", "—"))
            continue
        scores = np.asarray(card.held_out.scores)
        elkan = economics.elkan_threshold(costs)
        at_elkan = float(economics.outcome_values(labels, elkan.decide(scores), costs).mean())
        rows.append(
            (
                card.name,
                money(economics.expected_value(labels, scores, card.threshold, costs)),
                money(economics.total_value(labels, scores, card.threshold, costs)),
                "—" if elkan.value is None else f"{elkan.value:.4f}",
                money(at_elkan),
            )
        )
    return html_table(
        "Expected value in dollars per instance (held-out split)",
        (
            "model",
            "EV at the card threshold",
            "total over the split",
            "Elkan's t*",
            "EV at t*",
        ),
        rows,
    )


def _matrix_note(matrices: list[str]) -> str:
    if len(matrices) == 1:
        text = f"Outcome values per instance: {matrices[0]}."
    else:
        text = "Outcome values per instance (values under different matrices are not " + (
            "comparable): " + "; ".join(f"M{i}: {m}" for i, m in enumerate(matrices, start=1))
        )
    return (
        f"<p class='note'>{escape(text)} Elkan's t* is the threshold that is optimal for "
        "calibrated scores under those values.</p>"
    )


def _confusion_table(card: ModelCard) -> str:
    c = card.metrics.confusion
    return html_table(
        f"Confusion matrix at threshold {card.threshold:g}",
        ("", "predicted 0", "predicted 1"),
        (("actual 0", c.tn, c.fp), ("actual 1", c.fn, c.tp)),
    )


def _class_report_table(card: ModelCard) -> str:
    rows = [
        (cls, f"{r.precision:.2f}", f"{r.recall:.2f}", f"{r.f1:.2f}", r.support)
        for cls, r in sorted(card.metrics.per_class.items())
    ]
    header = ("class", "precision", "recall", "f1", "support")
    return html_table("Classification report", header, rows)


def _close_table(card: ModelCard, labels: np.ndarray) -> str:
    close = economics.close_confusions(labels, card.held_out.scores, card.threshold, card.margin)
    return html_table(
        f"Close confusions: |score − {card.threshold:g}| < {card.margin:g}",
        ("", "TP", "FP", "TN", "FN", "total"),
        (("count", close["tp"], close["fp"], close["tn"], close["fn"], close["total"]),),
    )


def _calibration_part(card: ModelCard, report_dir: Path) -> str:
    """The card's calibration on the held-out split: a table and the reliability diagram."""
    section = card.calibration
    if section is None:
        return "<p class='note'>No calibration map (--calibration none): not calibrated.</p>"
    figure = f"calibration-{card.name}.png"
    (report_dir / figure).write_bytes(figures.calibration_png(section, card.name))
    rows = [
        (label, f"{q.ece:.4f}", f"{q.brier:.4f}", f"{q.log_loss:.4f}")
        for label, q in (
            ("raw score", section.held_out.before),
            (f"probability ({section.map.method})", section.held_out.after),
            *(
                ()
                if section.prior_shift_baseline is None
                else (("prior-shift inverse (baseline)", section.prior_shift_baseline.held_out),)
            ),
        )
    ]
    return (
        html_table(
            f"Calibration on the held-out split ({section.map.method} map fitted on "
            f"{section.rows} {section.fitted_on.replace('_', '-')} rows)",
            ("", "ECE (15 equal-mass bins)", "Brier", "log loss"),
            rows,
        )
        + f"<img src='{escape(figure)}' alt='reliability diagram for {escape(card.name)}'>"
    )


def write_report(results: Sequence[VariantResult], data: Split, report_dir: Path) -> Path:
    """Write ``report_dir/index.html`` plus one PNG per figure; return the index path."""
    report_dir.mkdir(parents=True, exist_ok=True)
    cards = [result.export.card for result in results]
    from training.pipeline import pricing_groups

    matrices, which = pricing_groups(results)
    labels = np.asarray(data.y_test)
    (report_dir / "roc.png").write_bytes(
        figures.roc_png({card.name: (labels, card.held_out.scores) for card in cards})
    )
    sections = []
    for card in cards:
        figure = f"close-confusion-{card.name}.png"
        (report_dir / figure).write_bytes(
            figures.distribution_png(
                labels,
                card.held_out.scores,
                card.threshold,
                margin=card.margin,
                title=f"{card.name}: held-out scores by actual class",
            )
        )
        sections.append(
            f"<h2 id='{escape(card.name)}'>{escape(card.name)}</h2>"
            f"<p>{escape(card.description)} Loss: {escape(card.loss.type)}, fn_cost "
            f"{card.loss.fn_cost:g}, fp_cost {card.loss.fp_cost:g}; "
            f"{card.training.epochs} epochs, seed {card.training.seed}; model "
            f"<code>{escape(card.onnx.sha256[:12])}</code>.</p>"
            + _class_report_table(card)
            + _confusion_table(card)
            + _close_table(card, labels)
            + f"<img src='{escape(figure)}' alt='close confusions for {escape(card.name)}'>"
            + _calibration_part(card, report_dir)
        )
    first = cards[0].training.data
    page = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>costaware training report</title><style>{STYLE}</style></head><body>"
        "<h1>Cost-aware training report</h1>"
        f"<p class='note'>Generated {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}. "
        f"Data: {escape(first.source)} ({first.n_rows} rows, sha256 "
        f"<code>{escape(first.sha256[:12])}</code>); held-out split of {first.n_test} rows "
        f"(test size {first.test_size:g}, seed {first.split_seed}). All figures below are "
        "computed from the exported ONNX models' held-out scores.</p>"
        + _summary_table(results, matrices, which)
        + _value_table(results, labels)
        + _matrix_note(matrices)
        + "<h2>ROC curves</h2><img src='roc.png' alt='ROC curves'>"
        + "".join(sections)
        + "</body></html>\n"
    )
    index = report_dir / INDEX
    index.write_text(page, encoding="utf-8")
    return index
