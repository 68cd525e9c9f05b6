"""The decision log's writer: a bounded queue filled on the request path (one append per
request) and emptied by a background thread in batched inserts.

When the store is slow or down the entries wait, up to ``max_wait_seconds`` each and
``max_entries`` in all; past either bound they are dropped and counted (the
``costaware_decision_log_dropped_total`` metric; one log line when an episode of failures
starts and one when it ends). Predictions never wait for the store. ``stop`` writes what
is queued before it returns (the app's lifespan calls it on SIGTERM).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from service.decisionlog import entries
from service.decisionlog.store import DecisionStore

if TYPE_CHECKING:
    from service.metrics import Metrics
    from service.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pending:
    """One answer waiting to be written: built on the request path, expanded to rows by
    the writer thread."""

    queued_at: float  # time.monotonic()
    time_ms: int
    predictions: Any
    ids: list[str]
    card_matrix: Any
    # The first instance not yet written: a large answer (a 25,000-row CSV) is written
    # batch_rows at a time, so that its rows are never all built at once.
    start: int = 0

    def __len__(self) -> int:
        return len(self.ids) - self.start


class DecisionLog:
    """The queue and its writer thread over one :class:`DecisionStore`."""

    def __init__(
        self,
        store: DecisionStore,
        *,
        max_entries: int = 100_000,
        max_wait_seconds: float = 60.0,
        flush_seconds: float = 0.2,
        batch_rows: int = 1000,
        on_written: Callable[[int], None] | None = None,
        on_dropped: Callable[[int], None] | None = None,
        on_queued: Callable[[int], None] | None = None,
    ) -> None:
        self.store = store
        self.max_entries = max_entries
        self.max_wait_seconds = max_wait_seconds
        self.flush_seconds = flush_seconds
        self.batch_rows = batch_rows
        self._on_written = on_written or (lambda n: None)
        self._on_dropped = on_dropped or (lambda n: None)
        self._on_queued = on_queued or (lambda n: None)
        self._queue: collections.deque[Pending] = collections.deque()
        self._queued = 0  # instances in the queue (approximate between threads: a gauge)
        self._lock = threading.Lock()  # for the counters (the request path and the writer)
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._failing_since: float | None = None
        self._episode_dropped = 0
        self.dropped = 0
        self.written = 0

    # -- the request path ---------------------------------------------------------------

    def record(self, predictions: Any, ids: list[str], card_matrix: Any) -> None:
        """Queue one answer; dropped (and counted) when the queue is full."""
        n = len(ids)
        with self._lock:
            full = self._queued + n > self.max_entries
            if not full:
                self._queued += n
        if full:
            self._drop(n, "the queue is full")
            return
        self._queue.append(
            Pending(time.monotonic(), time.time_ns() // 1_000_000, predictions, ids, card_matrix)
        )

    # -- the writer thread --------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="decision-log", daemon=True)
        self._thread.start()

    def stop(self, timeout_seconds: float | None = None) -> None:
        """Write what is queued (waiting for the store up to ``timeout_seconds``, default
        the entries' own bound), then stop the thread."""
        self._stopping = True
        self._stop_deadline = time.monotonic() + (
            self.max_wait_seconds if timeout_seconds is None else timeout_seconds
        )
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        self._thread = None

    def flush(self) -> None:
        """Write everything queued now, in this thread (tests, and the last flush)."""
        while self._queue:
            if not self._write_some():
                return

    def _run(self) -> None:
        backoff = self.flush_seconds
        while True:
            self._wake.wait(backoff)
            self._wake.clear()
            stopping = self._stopping
            while self._queue:
                if not self._write_some():
                    break
            else:
                backoff = self.flush_seconds
                if stopping:
                    return
                continue
            # The store failed: wait longer before the next try (at most 2 s), and give
            # up on the queue when stopping past the deadline.
            backoff = min(2.0, max(backoff * 2, 0.1))
            if stopping and time.monotonic() >= self._stop_deadline:
                with self._lock:
                    left = self._queued
                    self._queue.clear()
                    self._queued = 0
                self._drop(left, "shutting down with the store unavailable")
                return

    def _write_some(self) -> bool:
        """Write up to ``batch_rows`` instances from the head of the queue; False when the
        store refused (the entries stay queued unless past their bound)."""
        taken: list[Pending] = []
        rows: list[dict[str, Any]] = []
        count = 0
        split = False
        while self._queue and count < self.batch_rows:
            item = self._queue.popleft()
            taken.append(item)
            stop = min(len(item.ids), item.start + self.batch_rows - count)
            if stop < len(item.ids):  # the rest of a large answer waits for the next batch
                self._queue.appendleft(dataclasses.replace(item, start=stop))
                split = True
            rows.extend(
                entries.rows(
                    item.predictions, item.ids, item.time_ms, item.card_matrix, item.start, stop
                )
            )
            count += stop - item.start
        try:
            self.store.insert_decisions(rows)
        except Exception as exc:  # any failure of the store: keep serving, keep counting
            if split:
                self._queue.popleft()  # the split rest: the whole item goes back instead
            self._queue.extendleft(reversed(taken))
            self._failed(exc)
            return False
        with self._lock:
            self._queued -= count
        self.written += count
        self._on_written(count)
        self._on_queued(self._queued)
        if self._failing_since is not None:
            log.warning(
                "decision log: the store accepts writes again after %.1f s; %d entries "
                "were dropped meanwhile",
                time.monotonic() - self._failing_since,
                self._episode_dropped,
            )
            self._failing_since = None
            self._episode_dropped = 0
        return True

    def _failed(self, exc: Exception) -> None:
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
            log.warning(
                "decision log: the store refused a write (%s: %s); entries wait up to %g s "
                "(at most %d queued), then are dropped and counted",
                type(exc).__name__,
                str(exc).splitlines()[0][:200] if str(exc) else "",
                self.max_wait_seconds,
                self.max_entries,
            )
        expired = 0
        while self._queue and now - self._queue[0].queued_at > self.max_wait_seconds:
            expired += len(self._queue.popleft())
        if expired:
            with self._lock:
                self._queued -= expired
            self._drop(expired, f"waited more than {self.max_wait_seconds:g} s")
        self._on_queued(self._queued)

    def _drop(self, n: int, why: str) -> None:
        if n <= 0:
            return
        self.dropped += n
        self._episode_dropped += n
        self._on_dropped(n)
        if self._failing_since is None:
            # A drop outside a store failure (a full queue under load) starts an episode
            # of its own, ended by the next successful write.
            self._failing_since = time.monotonic()
            log.warning("decision log: dropping entries (%s); counted in the metrics", why)


def open_decision_log(settings: Settings, metrics: Metrics | None = None) -> DecisionLog | None:
    """The decision log the settings ask for (None when off), its store migrated."""
    url = settings.decision_log_url()
    if url is None:
        return None
    if url.startswith("sqlite") and settings.decision_log is None:
        settings.state_dir.mkdir(parents=True, exist_ok=True)
    store = DecisionStore.open(url)
    log.info("decision log: %s", store.engine.url.render_as_string(hide_password=True))
    return DecisionLog(
        store,
        max_entries=settings.decision_log_max_entries,
        max_wait_seconds=settings.decision_log_max_wait_seconds,
        flush_seconds=settings.decision_log_flush_seconds,
        on_written=None if metrics is None else metrics.decision_log_written.inc,
        on_dropped=None if metrics is None else metrics.decision_log_dropped.inc,
        on_queued=None if metrics is None else metrics.decision_log_queued.set,
    )
