"""The decision log's store: one interface over SQLAlchemy 2 Core, two back ends.

SQLite (the default: one file, WAL mode, so readers never wait for the writer and several
worker processes can share it) and PostgreSQL (several replicas). The schema is created
and upgraded by the Alembic migrations in ``migrations/`` when the store is opened, under
a lock (a file lock for SQLite, an advisory lock for PostgreSQL), so that replicas
starting together do not race.
"""

from __future__ import annotations

import fcntl
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from service.decisionlog.schema import decisions, outcomes

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# PostgreSQL's advisory lock key for the migrations: any constant shared by the replicas.
_MIGRATION_LOCK = 2026_26
# Rows per INSERT statement and ids per IN (...) lookup: well under SQLite's limit of
# 32,766 bound parameters.
LOOKUP_CHUNK = 2000


@dataclass(frozen=True)
class Logged:
    """What a stored decision contributes to an outcome: its decision, matrix and model."""

    id: str
    model: str
    decision: int
    matrix: list[list[float]] | None
    k: int


@dataclass(frozen=True)
class Aggregate:
    """One window's and version's sums (the value report's figures come from these)."""

    window: int
    version: str
    decisions: int
    with_outcome: int
    realized: float
    expected: float
    variance: float
    estimated: float
    unvalued: int


class DecisionStore:
    """Reads and writes the decision log (thread-safe: SQLAlchemy's pool)."""

    def __init__(self, url: str, *, connect_timeout_seconds: float = 5) -> None:
        self.url = url
        self.dialect = sa.engine.make_url(url).get_backend_name()
        if self.dialect == "sqlite":
            self.engine = sa.create_engine(
                url, connect_args={"timeout": connect_timeout_seconds, "check_same_thread": False}
            )
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        elif self.dialect == "postgresql":
            self.engine = sa.create_engine(
                url,
                pool_pre_ping=True,
                connect_args={"connect_timeout": max(1, int(connect_timeout_seconds))},
            )
        else:
            raise ValueError(f"unsupported decision log back end {self.dialect!r}")

    @classmethod
    def open(cls, url: str, **options: Any) -> DecisionStore:
        """The store at ``url`` with its schema migrated to the latest revision."""
        store = cls(url, **options)
        store.migrate()
        return store

    def migrate(self) -> None:
        with self._migration_lock(), self.engine.begin() as connection:
            if self.dialect == "postgresql":
                connection.execute(
                    sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK}
                )
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS))
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    @contextmanager
    def _migration_lock(self) -> Iterator[None]:
        database = self.engine.url.database
        if self.dialect != "sqlite" or not database or database == ":memory:":
            yield
            return
        path = Path(database)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_suffix(".migrate.lock"), "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def close(self) -> None:
        self.engine.dispose()

    # -- writes ---------------------------------------------------------------------

    def insert_decisions(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert ``rows`` in one transaction; an id already logged keeps its first row
        (a client that reuses its own ids cannot overwrite a logged decision)."""
        if not rows:
            return
        with self.engine.begin() as connection:
            connection.execute(self._insert_ignoring(decisions), list(rows))

    def _insert_ignoring(self, table: sa.Table) -> Any:
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        return insert(table).on_conflict_do_nothing(index_elements=["id"])

    def logged(self, ids: Iterable[str]) -> dict[str, Logged]:
        """The stored decisions among ``ids``."""
        found: dict[str, Logged] = {}
        ids = list(ids)
        columns = (
            decisions.c.id,
            decisions.c.model,
            decisions.c.decision,
            decisions.c.matrix,
            decisions.c.probabilities,
        )
        with self.engine.connect() as connection:
            for start in range(0, len(ids), LOOKUP_CHUNK):
                chunk = ids[start : start + LOOKUP_CHUNK]
                for row in connection.execute(sa.select(*columns).where(decisions.c.id.in_(chunk))):
                    found[row.id] = Logged(
                        row.id, row.model, row.decision, row.matrix, len(row.probabilities)
                    )
        return found

    def outcomes_of(self, ids: Iterable[str]) -> dict[str, int]:
        """The stored outcome label (class index) of each of ``ids`` that has one."""
        ids = list(ids)
        found: dict[str, int] = {}
        with self.engine.connect() as connection:
            for start in range(0, len(ids), LOOKUP_CHUNK):
                chunk = ids[start : start + LOOKUP_CHUNK]
                query = sa.select(outcomes.c.id, outcomes.c.label).where(outcomes.c.id.in_(chunk))
                found.update({row.id: row.label for row in connection.execute(query)})
        return found

    def put_outcomes(self, rows: Sequence[dict[str, Any]], replace: bool) -> None:
        """Store outcome rows (``id``, ``label``, ``realized_value``, ``time_ms``) in one
        transaction; with ``replace`` an id's earlier outcome is overwritten."""
        if not rows:
            return
        with self.engine.begin() as connection:
            if replace:
                ids = [row["id"] for row in rows]
                for start in range(0, len(ids), LOOKUP_CHUNK):
                    chunk = ids[start : start + LOOKUP_CHUNK]
                    connection.execute(sa.delete(outcomes).where(outcomes.c.id.in_(chunk)))
                connection.execute(sa.insert(outcomes), list(rows))
            else:
                connection.execute(self._insert_ignoring(outcomes), list(rows))

    # -- reads ----------------------------------------------------------------------

    def aggregates(self, model: str, start_ms: int, end_ms: int, window_ms: int) -> list[Aggregate]:
        """Sums per window (``(time - start) // window``) and version of the decisions of
        ``model`` logged in ``[start_ms, end_ms)``: one GROUP BY over the (model, time)
        index, the outcomes joined by id."""
        has = outcomes.c.id.is_not(None)
        # Floor division of integers (SQLAlchemy renders ``//`` for each back end).
        window = (decisions.c.time_ms - start_ms) // window_ms
        zero = sa.literal(0.0)
        query = (
            sa.select(
                window.label("bucket"),
                decisions.c.version,
                sa.func.count().label("decisions"),
                sa.func.count(outcomes.c.id).label("with_outcome"),
                sa.func.coalesce(sa.func.sum(outcomes.c.realized_value), zero).label("realized"),
                sa.func.coalesce(
                    sa.func.sum(sa.case((has, decisions.c.expected_value))), zero
                ).label("expected"),
                sa.func.coalesce(sa.func.sum(sa.case((has, decisions.c.variance))), zero).label(
                    "variance"
                ),
                sa.func.coalesce(
                    sa.func.sum(sa.case((has, None), else_=decisions.c.expected_value)), zero
                ).label("estimated"),
                sa.func.count(sa.case((decisions.c.expected_value.is_(None), 1))).label("unvalued"),
            )
            .select_from(decisions.outerjoin(outcomes, outcomes.c.id == decisions.c.id))
            .where(
                decisions.c.model == model,
                decisions.c.time_ms >= start_ms,
                decisions.c.time_ms < end_ms,
            )
            .group_by(sa.literal_column("bucket"), decisions.c.version)
            .order_by(sa.literal_column("bucket"), decisions.c.version)
        )
        with self.engine.connect() as connection:
            return [
                Aggregate(
                    window=int(row.bucket),
                    version=row.version,
                    decisions=int(row.decisions),
                    with_outcome=int(row.with_outcome),
                    realized=float(row.realized),
                    expected=float(row.expected),
                    variance=float(row.variance),
                    estimated=float(row.estimated),
                    unvalued=int(row.unvalued),
                )
                for row in connection.execute(query)
            ]

    def count(self) -> int:
        with self.engine.connect() as connection:
            return int(
                connection.execute(sa.select(sa.func.count()).select_from(decisions)).scalar_one()
            )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # With WAL, NORMAL loses at most the last transactions on a power cut, never the
    # file's consistency; the log is not a ledger.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def now_ms() -> int:
    return time.time_ns() // 1_000_000
