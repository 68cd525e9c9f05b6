"""The decision log's stores: a real SQLite file and a real PostgreSQL cluster."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from _postgres import Cluster, available, running_cluster


@pytest.fixture(scope="session")
def postgres() -> Iterator[Cluster]:
    reason = available()
    if reason is not None:
        pytest.fail(reason)  # make test installs it; a missing server is a failure here
    with running_cluster() as cluster:
        yield cluster


def fresh_database(cluster: Cluster, name: str) -> str:
    """A new empty database in ``cluster``; its URL."""
    import sqlalchemy as sa

    engine = sa.create_engine(cluster.url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return cluster.url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite+pysqlite:///{tmp_path / 'decisions.sqlite'}"
    cluster = request.getfixturevalue("postgres")
    return fresh_database(cluster, f"t_{request.node.name.split('[')[0][-40:]}".lower())
