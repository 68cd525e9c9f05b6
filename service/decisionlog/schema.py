"""The decision log's tables (SQLAlchemy Core). The migrations in ``migrations/`` create
them; this module is what the code reads and writes through."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
)

metadata = MetaData()

# One row per served instance. ``matrix`` is the K x K value matrix the decision was
# taken (or is valued) under, row = truth, column = decision (a binary cost matrix as
# [[tn, fp], [fn, tp]]; per-instance values: this instance's); null when neither the
# request nor the card has one. ``expected_value`` and ``variance`` are the stated
# expectation of the decision taken and its variance under the calibrated probabilities
# (``probabilities``), precomputed so that the value report is a SQL aggregate.
decisions = Table(
    "decisions",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("time_ms", BigInteger, nullable=False),
    Column("model", String(200), nullable=False),
    Column("version", String(200), nullable=False),
    Column("score", Float, nullable=True),
    Column("probabilities", JSON, nullable=False),
    Column("decision", Integer, nullable=False),
    Column("matrix", JSON, nullable=True),
    Column("matrix_source", String(16), nullable=False),
    Column("expected_value", Float, nullable=True),
    Column("variance", Float, nullable=True),
    Column("out_of_range", Boolean, nullable=False),
    Index("ix_decisions_model_time", "model", "time_ms"),
)

# One row per known outcome. ``realized_value`` is matrix[label][decision] of the
# decision's row, computed when the outcome is stored (null when that decision has no
# matrix).
outcomes = Table(
    "outcomes",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("label", Integer, nullable=False),
    Column("realized_value", Float, nullable=True),
    Column("time_ms", BigInteger, nullable=False),
)
