"""The decision log in real ``serve`` processes: two replicas writing to one PostgreSQL and
one /value answer covering both; PostgreSQL stopped under load with every prediction still
answered 200 and every entry written after it returns; 10,000 predictions then SIGTERM and
10,000 rows in the SQLite file."""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
from _servicekit import REPO, SHIPPED, running_serve
from conftest import fresh_database

from costaware.card import read_any_card

RANGES = read_any_card(SHIPPED / "medical").feature_ranges


def rows(n: int, seed: int) -> list[list[float]]:
    rng = np.random.default_rng(seed)
    return [[round(float(rng.uniform(r.min, r.max)), 4) for r in RANGES] for _ in range(n)]


def post_many(base: str, prefix: str, requests: int, per_request: int, threads: int) -> list[int]:
    """``requests`` predictions of ``per_request`` instances each, ``threads`` at a time,
    with ids ``<prefix><request>-<index>``; the statuses."""
    body_rows = rows(per_request, 1)
    # One client per thread: a client shared by 32 threads raced on its connection pool
    # (one thread read a socket another had just closed: EBADF on the client's side).
    local = threading.local()
    clients: list[httpx.Client] = []

    def one(index: int) -> int:
        if not hasattr(local, "client"):
            local.client = httpx.Client(timeout=60)
            clients.append(local.client)
        answer = local.client.post(
            f"{base}/predict",
            json={"model": "medical", "instances": body_rows},
            headers={"X-Request-ID": f"{prefix}{index}"},
        )
        return answer.status_code

    try:
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(one, range(requests)))
    finally:
        for client in clients:
            client.close()


def wait_for(condition, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_two_replicas_one_postgres_one_report(postgres, tmp_path):
    url = fresh_database(postgres, "replicas")
    env = {"COSTAWARE_DECISION_LOG": url, "COSTAWARE_ACCESS_LOG": "false"}
    with (
        running_serve(SHIPPED, REPO, **env) as (first, _p1),
        running_serve(SHIPPED, REPO, **env) as (second, _p2),
    ):
        assert set(post_many(first, "a", 50, 4, 4)) == {200}
        assert set(post_many(second, "b", 30, 4, 4)) == {200}

        def decisions() -> int:
            report = httpx.get(f"{first}/models/medical/value", timeout=30).json()
            return sum(v["decisions"] for w in report["windows"] for v in w["versions"])

        wait_for(lambda: decisions() == 320)
        # outcomes posted to one replica for the other's decisions
        outcomes = [{"id": f"b{i}-0", "label": 1} for i in range(30)]
        stored = httpx.post(f"{first}/outcomes", json={"outcomes": outcomes}, timeout=30).json()
        assert stored["stored"] == 30 and stored["unknown"] == []
        report = httpx.get(f"{second}/models/medical/value", timeout=30).json()
        assert sum(v["with_outcome"] for w in report["windows"] for v in w["versions"]) == 30


def test_postgres_stopped_under_load(postgres):
    url = fresh_database(postgres, "stopped")
    env = {"COSTAWARE_DECISION_LOG": url, "COSTAWARE_ACCESS_LOG": "false"}
    with running_serve(SHIPPED, REPO, **env) as (base, _process):
        statuses: list[int] = []
        load = threading.Thread(
            target=lambda: statuses.extend(post_many(base, "s", 600, 2, 8)), daemon=True
        )
        load.start()
        time.sleep(0.5)
        postgres.stop()
        time.sleep(5)
        postgres.start()
        load.join(timeout=300)
        assert not load.is_alive()
        assert statuses.count(200) == len(statuses) == 600  # 0 non-200 predictions

        def logged() -> int:
            report = httpx.get(f"{base}/models/medical/value", timeout=30).json()
            return sum(v["decisions"] for w in report["windows"] for v in w["versions"])

        wait_for(lambda: logged() == 1200)  # written after it came back, nothing dropped
        metrics = httpx.get(f"{base}/metrics", timeout=30).text
        assert "costaware_decision_log_dropped_total 0.0" in metrics


def test_sigterm_writes_the_queue(tmp_path):
    path = tmp_path / "decisions.sqlite"
    env = {
        "COSTAWARE_DECISION_LOG": f"sqlite+pysqlite:///{path}",
        # no flush during the load: only the shutdown writes
        "COSTAWARE_DECISION_LOG_FLUSH_SECONDS": "60",
        "COSTAWARE_ACCESS_LOG": "false",
    }
    with running_serve(SHIPPED, REPO, **env) as (base, process):
        assert set(post_many(base, "t", 1000, 10, 32)) == {200}
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        assert process.returncode == 0
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT count(*) FROM decisions").fetchone()[0] == 10_000
