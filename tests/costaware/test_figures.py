"""The figures render real PNGs, and importing the module does not pull in matplotlib."""

from __future__ import annotations

import struct
import subprocess
import sys

import numpy as np
import pytest

from costaware import economics as ec
from costaware import figures

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk, which the PNG format puts first."""
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.fixture
def labeled():
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 2, 400)
    scores = np.clip(0.5 * labels + 0.5 * rng.random(400), 0, 1)
    return labels, scores


@pytest.fixture
def sweep(labeled):
    return ec.threshold_sweep(*labeled, ec.REFERENCE_QALY_VALUES)


def test_importing_figures_does_not_import_matplotlib():
    code = "import sys, costaware.figures; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("margin", [None, 0.1])
def test_distribution_png(labeled, margin):
    width, height = png_size(figures.distribution_png(*labeled, threshold=0.5, margin=margin))
    assert (width, height) == (900, 550)


def test_distribution_png_with_a_single_class():
    data = figures.distribution_png([1, 1, 1], [0.2, 0.6, 0.9], threshold=0.5, margin=0.2)
    assert png_size(data) == (900, 550)


def test_distribution_png_refuses_mismatched_input():
    with pytest.raises(ec.EconomicsError) as caught:
        figures.distribution_png([0, 1, 1], [0.2, 0.6], threshold=0.5)
    assert caught.value.field == "labels"


def test_value_curve_png(labeled, sweep):
    best = ec.best_threshold(*labeled, ec.REFERENCE_QALY_VALUES)
    elkan = ec.elkan_threshold(ec.REFERENCE_QALY_VALUES)
    data = figures.value_curve_png(
        sweep, elkan.value, best.threshold, best_value=best.expected_value
    )
    assert png_size(data) == (800, 450)


def test_value_curve_png_without_markers(sweep):
    # A degenerate matrix has no t*, and "treat none" has no threshold.
    assert png_size(figures.value_curve_png(sweep, None, None)) == (800, 450)


def test_roc_png(labeled):
    labels, scores = labeled
    data = figures.roc_png({"model": (labels, scores), "one class": ([1, 1], [0.3, 0.8])})
    assert png_size(data) == (550, 550)


def test_calibration_figure_draws_before_after_and_the_bin_counts(labeled):
    from costaware import calibration as cal
    from costaware.card import Calibration

    labels, scores = labeled
    section = Calibration.model_validate(
        {
            "map": {"method": "sigmoid", "a": -2.0, "b": 0.5},
            "output_name": "probability",
            "fitted_on": "out_of_fold",
            "rows": 300,
            "folds": 5,
            "held_out": {
                "before": cal.quality(scores, labels),
                "after": cal.quality(
                    1 / (1 + np.exp(-2 * cal.logit(scores) + 0.5)), labels
                ),  # the map
            },
        }
    )
    figure = figures.calibration_figure(section, "m")
    top, bottom = figure.axes
    assert len(top.lines) == 3  # before, after, the diagonal
    assert sum(len(c.patches) for c in bottom.containers) == 2 * len(
        section.held_out.before.reliability
    )
    texts = {t.get_text() for t in top.texts}
    assert {str(b.count) for b in section.held_out.after.reliability} <= texts
    assert png_size(figures.calibration_png(section, "m"))[0] == 600
