"""Fixtures shared across the suite's packages."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest

# The decision log (service.decisionlog) writes a SQLite file under COSTAWARE_STATE_DIR by
# default: every app and `serve` process of the session writes into a folder of its own,
# never the machine's shared /tmp/costaware.
os.environ.setdefault("COSTAWARE_STATE_DIR", tempfile.mkdtemp(prefix="costaware-state-"))


@pytest.fixture(scope="session")
def cluster() -> Iterator[object]:
    """A real Dask LocalCluster of two worker processes (one thread each), started once per
    session by ``costaware.cluster.connect`` (the batch engine's and ``tune``'s): the batch
    tests and the distributed tuning test share it."""
    from costaware.cluster import connect

    with connect(workers=2) as client:
        yield client
