"""The engine: a bounded stream of partition tasks with a progress bar, on the client of
:func:`costaware.cluster.connect` (a LocalCluster of worker processes or an existing
scheduler).

At most a few tasks per worker thread are submitted at a time and each finished task's
result is consumed at once, so neither the workers nor the client ever hold more than a
few partitions, whatever the input size.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from typing import IO, Any


class Progress:
    """A text bar on stderr: redrawn in place on a terminal, a line every few seconds
    otherwise."""

    def __init__(self, total: int, what: str, stream: IO[str] | None = None) -> None:
        self.total, self.what = total, what
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.started = self.shown = time.monotonic()
        self.done = self.rows = 0

    def update(self, rows: int) -> None:
        self.done += 1
        self.rows += rows
        now = time.monotonic()
        if not self.tty and now - self.shown < 5 and self.done < self.total:
            return
        self.shown = now
        elapsed = now - self.started
        filled = round(30 * self.done / self.total)
        line = (
            f"[{'#' * filled}{'.' * (30 - filled)}] {self.done}/{self.total} {self.what}  "
            f"{self.rows:,} rows  {elapsed:.1f} s  {self.rows / max(elapsed, 1e-9):,.0f} rows/s"
        )
        end = "\n" if not self.tty or self.done == self.total else ""
        self.stream.write(("\r" if self.tty else "") + line + end)
        self.stream.flush()


def stream(
    client: Any,
    function: Callable[..., Any],
    items: Sequence[Any],
    *args: Any,
    on_result: Callable[[Any], None],
    rows_of: Callable[[Any], int],
    progress: Progress | None = None,
    per_thread: int = 2,
) -> None:
    """Run ``function(item, *args)`` for every item on the cluster, at most ``per_thread``
    tasks per worker thread in flight, handing each result to ``on_result`` as it comes.

    The first failure cancels the rest and is raised; when several partitions fail, the
    error of the earliest one among those finished is raised, so a bad file reports its
    first bad row seen.
    """
    from distributed import as_completed

    shared = [client.scatter(arg, broadcast=True) for arg in args]
    window = max(1, per_thread * sum(client.nthreads().values()))
    pending = iter(enumerate(items))
    running: dict[Any, int] = {}

    def submit() -> None:
        for index, item in pending:
            future = client.submit(function, item, *shared, pure=False)
            running[future] = index
            return

    for _ in range(window):
        submit()
    futures = as_completed(list(running))
    failures: list[tuple[int, BaseException]] = []
    for future in futures:
        index = running.pop(future)
        if future.status == "error":
            failures.append((index, future.exception()))
            break
        result = future.result()
        on_result(result)
        if progress:
            progress.update(rows_of(result))
        before = set(running)
        submit()
        for new in set(running) - before:
            futures.add(new)
    if failures:
        # Let what is running finish (its errors may name an earlier row), then stop.
        for future, index in list(running.items()):
            try:
                future.result()
            except BaseException as exc:  # collected; the earliest partition's is raised
                failures.append((index, exc))
        client.cancel(list(running))
        _, exc = min(failures, key=lambda pair: pair[0])
        raise exc
