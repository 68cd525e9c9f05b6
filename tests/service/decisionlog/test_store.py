"""The store on both back ends: migrations, inserts that keep an id's first row, the
lookups /outcomes uses, and the value report's aggregates against a numpy oracle."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from service.decisionlog.store import DecisionStore


def row(i: int, *, model: str = "m", version: str = "v1", time_ms: int = 0, **extra) -> dict:
    base = {
        "id": f"id-{i}",
        "time_ms": time_ms,
        "model": model,
        "version": version,
        "score": 0.25,
        "probabilities": [0.75, 0.25],
        "decision": 0,
        "matrix": [[0.0, -1.0], [-10.0, -2.0]],
        "matrix_source": "card",
        "expected_value": -2.5,
        "variance": 18.75,
        "out_of_range": False,
    }
    return base | extra


def test_migrations_run_once_and_again(store_url):
    store = DecisionStore.open(store_url)
    store.migrate()  # a second start-up finds the schema at head and changes nothing
    store.insert_decisions([row(1)])
    DecisionStore.open(store_url).migrate()
    assert store.count() == 1
    store.close()


def test_sqlite_file_is_in_wal_mode(tmp_path):
    path = tmp_path / "decisions.sqlite"
    DecisionStore.open(f"sqlite+pysqlite:///{path}").insert_decisions([row(1)])
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_an_id_keeps_its_first_row(store_url):
    store = DecisionStore.open(store_url)
    store.insert_decisions([row(1, decision=1)])
    store.insert_decisions([row(1, decision=0), row(2)])
    logged = store.logged(["id-1", "id-2", "id-3"])
    assert set(logged) == {"id-1", "id-2"} and logged["id-1"].decision == 1
    assert logged["id-1"].matrix == [[0.0, -1.0], [-10.0, -2.0]] and logged["id-1"].k == 2


def test_outcomes_are_kept_or_replaced(store_url):
    store = DecisionStore.open(store_url)
    store.insert_decisions([row(1)])
    store.put_outcomes([{"id": "id-1", "label": 1, "realized_value": -10.0, "time_ms": 1}], False)
    store.put_outcomes([{"id": "id-1", "label": 0, "realized_value": 0.0, "time_ms": 2}], False)
    assert store.outcomes_of(["id-1"]) == {"id-1": 1}
    store.put_outcomes([{"id": "id-1", "label": 0, "realized_value": 0.0, "time_ms": 3}], True)
    assert store.outcomes_of(["id-1", "id-9"]) == {"id-1": 0}


def test_aggregates_equal_numpy(store_url):
    rng = np.random.default_rng(3)
    n, window_ms = 3000, 1000
    times = rng.integers(0, 5 * window_ms, n)
    versions = rng.choice(["a", "b"], n)
    expected = rng.normal(-3, 2, n)
    variance = rng.uniform(0, 5, n)
    has = rng.random(n) < 0.4
    realized = rng.normal(-3, 4, n)
    store = DecisionStore.open(store_url)
    store.insert_decisions(
        [
            row(
                i,
                time_ms=int(times[i]) + 10_000,
                version=str(versions[i]),
                expected_value=float(expected[i]),
                variance=float(variance[i]),
            )
            for i in range(n)
        ]
        + [row(n + 1, model="other", time_ms=10_000)]
    )
    store.put_outcomes(
        [
            {"id": f"id-{i}", "label": 1, "realized_value": float(realized[i]), "time_ms": 0}
            for i in np.flatnonzero(has)
        ],
        False,
    )
    found = store.aggregates("m", 10_000, 10_000 + 5 * window_ms, window_ms)
    assert len(found) == 10
    for entry in found:
        chosen = (times // window_ms == entry.window) & (versions == entry.version)
        assert entry.decisions == chosen.sum()
        assert entry.with_outcome == (chosen & has).sum()
        assert entry.realized == pytest.approx(realized[chosen & has].sum(), rel=1e-12)
        assert entry.expected == pytest.approx(expected[chosen & has].sum(), rel=1e-12)
        assert entry.variance == pytest.approx(variance[chosen & has].sum(), rel=1e-12)
        assert entry.estimated == pytest.approx(expected[chosen & ~has].sum(), rel=1e-12)
    # the window [from, to) leaves out what is outside it
    assert store.aggregates("m", 0, 10_000, window_ms) == []
