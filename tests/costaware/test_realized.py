"""costaware.realized against plain Python loops: expected values and variances of the
decisions taken, realized values, the per-window figures and the alert."""

from __future__ import annotations

import math

import numpy as np
import pytest

from costaware.realized import decision_moments, realized_values, report


@pytest.mark.parametrize("k", [2, 3])
def test_moments_and_report_equal_loops(k):
    rng = np.random.default_rng(k)
    n = 400
    p = rng.dirichlet(np.ones(k), n)
    m = rng.normal(0, 10, (n, k, k))
    d = rng.integers(0, k, n)
    y = np.where(rng.random(n) < 0.6, rng.integers(0, k, n), -1)
    t = rng.integers(0, 3000, n)
    v = rng.choice(["a", "b"], n)
    ev, var = decision_moments(p, m, d)
    for i in range(n):
        mean = sum(p[i, j] * m[i, j, d[i]] for j in range(k))
        second = sum(p[i, j] * m[i, j, d[i]] ** 2 for j in range(k))
        assert ev[i] == pytest.approx(mean, rel=1e-12, abs=1e-12)
        assert var[i] == pytest.approx(second - mean**2, rel=1e-9, abs=1e-9)
    assert realized_values(m, d, np.maximum(y, 0))[0] == m[0, max(y[0], 0), d[0]]
    found = report(t, v, p, m, d, y, 500, 2500, 1000)
    assert set(found) == {(w, s) for w in (0, 1) for s in ("a", "b")}
    for (w, s), figures in found.items():
        rows = [i for i in range(n) if 500 + w * 1000 <= t[i] < 1500 + w * 1000 and v[i] == s]
        known = [i for i in rows if y[i] >= 0]
        realized = sum(m[i, y[i], d[i]] for i in known)
        expected = sum(ev[i] for i in known)
        se = math.sqrt(sum(var[i] for i in known))
        assert figures["decisions"] == len(rows) and figures["with_outcome"] == len(known)
        assert figures["realized_value"] == pytest.approx(realized, rel=1e-12)
        assert figures["expected_value"] == pytest.approx(expected, rel=1e-12)
        assert figures["gap_standard_error"] == pytest.approx(se, rel=1e-12)
        assert figures["alert"] == (realized - expected < -3 * se)


def test_alert_when_realized_falls_far_below_expected():
    p = np.tile([0.5, 0.5], (100, 1))
    m = np.array([[0.0, -1.0], [-10.0, -2.0]])
    d = np.ones(100, dtype=int)
    # expected -1.5 each (sd 0.5); every outcome the worse one: -2 each, 10 SE below
    figures = report(np.zeros(100), ["v"] * 100, p, m, d, np.ones(100), 0, 1, 1)[(0, "v")]
    assert figures["gap"] == pytest.approx(-50.0) and figures["alert"] is True
    balanced = np.arange(100) % 2
    figures = report(np.zeros(100), ["v"] * 100, p, m, d, balanced, 0, 1, 1)[(0, "v")]
    assert figures["gap"] == pytest.approx(0.0) and figures["alert"] is False
