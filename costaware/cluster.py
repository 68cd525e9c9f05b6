"""The Dask cluster both roles run on: a LocalCluster of worker processes or an existing
scheduler (``--workers N`` / ``--scheduler ADDRESS`` of ``python -m service.batch`` and
``python -m training tune``).

Here, not in ``service.batch``, so that training does not import the serving role.
dask.distributed is in the ``batch`` extra and imported only when a cluster is asked for;
this module imports neither TensorFlow nor FastAPI.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def connect(workers: int | None = None, scheduler: str | None = None) -> Iterator[Any]:
    """A dask.distributed Client: on ``scheduler`` (an address) or on a new LocalCluster of
    ``workers`` processes with one thread each, closed on exit."""
    from distributed import Client, LocalCluster

    if scheduler:
        with Client(scheduler, timeout="30s") as client:
            yield client
        return
    with (
        LocalCluster(
            n_workers=workers or 1,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client
