"""The decisions and outcomes tables.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "decisions",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("time_ms", sa.BigInteger, nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("version", sa.String(200), nullable=False),
        sa.Column("score", sa.Float, nullable=True),
        sa.Column("probabilities", sa.JSON, nullable=False),
        sa.Column("decision", sa.Integer, nullable=False),
        sa.Column("matrix", sa.JSON, nullable=True),
        sa.Column("matrix_source", sa.String(16), nullable=False),
        sa.Column("expected_value", sa.Float, nullable=True),
        sa.Column("variance", sa.Float, nullable=True),
        sa.Column("out_of_range", sa.Boolean, nullable=False),
    )
    op.create_index("ix_decisions_model_time", "decisions", ["model", "time_ms"])
    op.create_table(
        "outcomes",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("label", sa.Integer, nullable=False),
        sa.Column("realized_value", sa.Float, nullable=True),
        sa.Column("time_ms", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("outcomes")
    op.drop_index("ix_decisions_model_time", "decisions")
    op.drop_table("decisions")
