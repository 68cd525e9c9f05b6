"""PNG figures for the report and the service: close confusions, value by threshold, ROC,
reliability (calibration).

Matplotlib is imported inside each function, so importing this module (and serving
requests that draw nothing) costs nothing. Figures are built with ``matplotlib.figure.Figure``
and the Agg canvas, never pyplot: no global state, safe in a threaded server.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from costaware import economics

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from costaware.card import Calibration

CORRECT = "#1f77b4"  # blue
WRONG = "#ff7f0e"  # orange
BAND = "#999999"


def new_figure(width: float, height: float, rows: int = 1) -> tuple[Figure, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    return figure, axes


def to_png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def distribution_png(
    labels: ArrayLike,
    scores: ArrayLike,
    threshold: float,
    margin: float | None = None,
    title: str = "Scores by actual class",
    bins: int = 50,
) -> bytes:
    """The close-confusion figure: score histograms over [0, 1] for each actual class.

    Actual negatives on top, actual positives below; correct decisions in blue, wrong ones
    in orange; the threshold as a line and, with ``margin``, the band of close confusions.
    """
    y = economics.as_labels(labels)
    s = economics.as_scores(scores)
    if len(y) != len(s):
        raise economics.EconomicsError(
            "labels", f"has {len(y)} labels but there are {len(s)} scores"
        )
    predicted = s >= threshold
    edges = np.linspace(0.0, 1.0, bins + 1)
    figure, axes = new_figure(9, 5.5, rows=2)
    panels = (
        (axes[0], 0, "Actual negatives", "true negative", "false positive"),
        (axes[1], 1, "Actual positives", "true positive", "false negative"),
    )
    for ax, cls, heading, right_name, wrong_name in panels:
        mine = y == cls
        right = s[mine & (predicted == bool(cls))]
        wrong = s[mine & (predicted != bool(cls))]
        ax.hist(
            [right, wrong],
            bins=edges,
            stacked=True,
            color=[CORRECT, WRONG],
            label=[f"{right_name} ({len(right)})", f"{wrong_name} ({len(wrong)})"],
        )
        if margin:
            close = np.abs(s[mine] - threshold) < margin
            ax.axvspan(
                max(threshold - margin, 0.0),
                min(threshold + margin, 1.0),
                color=BAND,
                alpha=0.2,
                label=f"within ±{margin:g} ({int(close.sum())})",
            )
        ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:g}")
        ax.set_title(f"{heading} (n = {int(mine.sum())})", loc="left", fontsize=10)
        ax.set_ylabel("instances")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    axes[1].set_xlim(0.0, 1.0)
    axes[1].set_xlabel("score (probability of the positive class)")
    figure.suptitle(title)
    return to_png(figure)


def value_curve_png(
    sweep: economics.Sweep,
    elkan_t: float | None,
    best_t: float | None,
    title: str = "Expected value by threshold",
    value_label: str = "expected value per instance ($)",
    elkan_value: float | None = None,
    best_value: float | None = None,
) -> bytes:
    """Expected value against threshold, with Elkan's t* and the in-sample best marked.

    ``elkan_value``/``best_value`` place the markers exactly (the curve between grid
    points is only interpolated). The x axis is linear below 0.001 and logarithmic
    above (symlog), because cost-sensitive thresholds often sit far below 0.5.
    """
    figure, axes = new_figure(8, 4.5)
    ax = axes[0]
    ax.plot(sweep.thresholds, sweep.expected_value, color=CORRECT, label="expected value")
    markers = (
        (elkan_t, elkan_value, "Elkan's t*", "#2ca02c", "-."),
        (best_t, best_value, "best in sample", WRONG, ":"),
    )
    for value, known, name, colour, style in markers:
        if value is None:
            continue
        at = (
            known if known is not None else np.interp(value, sweep.thresholds, sweep.expected_value)
        )
        ax.axvline(value, color=colour, linestyle=style, label=f"{name} = {value:.4g}")
        ax.plot([value], [at], marker="o", color=colour)
    ax.set_xscale("symlog", linthresh=1e-3, linscale=0.3)
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel("threshold (symlog scale)")
    ax.set_ylabel(value_label)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    ax.set_title(title)
    return to_png(figure)


def roc_png(curves: Mapping[str, tuple[ArrayLike, ArrayLike]], title: str = "ROC curves") -> bytes:
    """ROC curves, one per entry of ``curves`` (name -> (labels, scores)), AUC in the legend."""
    figure, axes = new_figure(5.5, 5.5)
    ax = axes[0]
    for name, (labels, scores) in curves.items():
        fpr, tpr, _ = economics.roc_curve(labels, scores)
        auc = economics.roc_auc(labels, scores)
        label = f"{name} (AUC {auc:.4f})" if auc is not None else f"{name} (AUC undefined)"
        ax.plot(fpr, tpr, label=label)
    ax.plot([0, 1], [0, 1], color=BAND, linestyle="--", linewidth=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    ax.set_title(title)
    return to_png(figure)


def calibration_figure(calibration: Calibration, name: str) -> Figure:
    """The reliability diagram of a card's ``calibration`` section, before (the raw score)
    and after (the calibrated probability) on the held-out split: per equal-mass bin the
    observed rate against the mean probability, the diagonal a calibrated model lies on,
    and below, each bin's count at its mean probability (binary: the positive class;
    multiclass: the top label)."""
    figure, (ax, counts) = new_figure(6.5, 6.5, rows=2)
    figure.get_layout_engine().set(h_pad=0.1)
    ax.plot([0, 1], [0, 1], color=BAND, linestyle="--", linewidth=1, label="calibrated")
    held_out = calibration.held_out
    for label, quality, colour, marker in (
        ("before (raw score)", held_out.before, WRONG, "s"),
        ("after (probability)", held_out.after, CORRECT, "o"),
    ):
        bins = quality.reliability
        mean = [item.mean_probability for item in bins]
        ax.plot(
            mean,
            [item.observed_rate for item in bins],
            color=colour,
            marker=marker,
            label=f"{label}: ECE {quality.ece:.3f}, Brier {quality.brier:.3f}",
        )
        counts.plot(mean, [item.count for item in bins], color=colour, marker=marker, ls="none")
        for x, item in zip(mean, bins, strict=True):
            counts.vlines(x, 0, item.count, color=colour, alpha=0.5)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("observed rate")
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    ax.grid(True, alpha=0.3)
    method = calibration.map.method
    where = f"{calibration.rows} rows, {calibration.fitted_on.replace('_', ' ')}"
    ax.set_title(
        f"{name}\nreliability on the held-out split ({method} map fitted on {where})", fontsize=10
    )
    counts.set_xlabel("mean predicted probability of the bin (equal-mass bins)")
    counts.set_ylabel("rows in the bin")
    counts.set_ylim(0, None)
    counts.grid(True, alpha=0.3)
    return figure
