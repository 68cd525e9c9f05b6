"""Fixtures shared across the suite's packages."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def cluster() -> Iterator[object]:
    """A real Dask LocalCluster of two worker processes (one thread each), started once per
    session by ``costaware.cluster.connect`` (the batch engine's and ``tune``'s): the batch
    tests and the distributed tuning test share it."""
    from costaware.cluster import connect

    with connect(workers=2) as client:
        yield client
