"""The writer: batched writes off the request path, entries waiting for a store that is
down, dropped and counted past their bound, the queue written on stop."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from conftest import fresh_database

from service.dataplane import Predictions
from service.decisionlog.store import DecisionStore
from service.decisionlog.writer import DecisionLog


def answer(n: int, start: int = 0) -> tuple[Predictions, list[str]]:
    scores = np.linspace(0.05, 0.95, n, dtype=np.float32)
    predictions = Predictions(
        model="m",
        version="v1",
        threshold=0.5,
        margin=0.1,
        scores=scores,
        labels=(scores >= 0.5).tolist(),
        close=[False] * n,
        out_of_range={},
    )
    return predictions, [f"r{start + i}" for i in range(n)]


def wait_for(condition, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_stop_writes_the_queue(tmp_path):
    store = DecisionStore.open(f"sqlite+pysqlite:///{tmp_path / 'log.sqlite'}")
    log = DecisionLog(store, flush_seconds=30, batch_rows=7)  # no flush before stop
    log.start()
    for start in range(0, 1000, 10):
        log.record(*answer(10, start), card_matrix=None)
    log.stop()
    assert store.count() == 1000 and log.written == 1000 and log.dropped == 0


def test_a_full_queue_drops_and_counts(tmp_path):
    store = DecisionStore.open(f"sqlite+pysqlite:///{tmp_path / 'log.sqlite'}")
    dropped = []
    log = DecisionLog(store, max_entries=25, on_dropped=dropped.append)
    for start in range(0, 40, 10):
        log.record(*answer(10, start), card_matrix=None)
    assert log.dropped == 20 and sum(dropped) == 20
    log.flush()
    assert store.count() == 20


def started_log(postgres, database: str, max_wait_seconds: float) -> DecisionLog:
    store = DecisionStore.open(fresh_database(postgres, database), connect_timeout_seconds=1)
    log = DecisionLog(store, max_wait_seconds=max_wait_seconds, flush_seconds=0.05)
    log.start()
    return log


@contextmanager
def stopped(postgres) -> Iterator[None]:
    postgres.stop()
    try:
        yield
    finally:
        postgres.start()


def test_postgres_down_then_back(postgres):
    log = started_log(postgres, "writer_down", 600)
    store = log.store
    log.record(*answer(10, 0), card_matrix=None)
    wait_for(lambda: log.written == 10)
    with stopped(postgres):
        log.record(*answer(10, 10), card_matrix=None)  # never blocks, never raises
        time.sleep(1.0)
        assert log.written == 10 and log.dropped == 0
    wait_for(lambda: log.written == 20)
    log.stop()
    assert store.count() == 20


def test_postgres_down_past_the_bound_counts_dropped(postgres):
    log = started_log(postgres, "writer_bound", 0.3)
    store = log.store
    with stopped(postgres):
        log.record(*answer(10), card_matrix=None)
        wait_for(lambda: log.dropped == 10)
    log.record(*answer(5, 100), card_matrix=None)
    wait_for(lambda: log.written == 5)
    log.stop()
    assert store.count() == 5


def test_a_large_answer_is_written_a_batch_at_a_time_and_whole(tmp_path):
    # A 2,500-instance answer with batches of 1,000 rows: three inserts, every row once, in
    # order, and never more rows built at once than a batch holds.
    store = DecisionStore.open(f"sqlite+pysqlite:///{tmp_path / 'decisions.sqlite'}")
    inserted: list[int] = []
    insert = store.insert_decisions

    def counting(rows):
        inserted.append(len(rows))
        insert(rows)

    store.insert_decisions = counting
    writer = DecisionLog(store, batch_rows=1000)
    n = 2500
    predictions, ids = answer(n)
    writer.record(predictions, ids, None)
    writer.flush()
    assert inserted == [1000, 1000, 500]
    logged = store.logged(ids)
    assert set(logged) == set(ids)
    assert writer.written == n and writer._queued == 0
