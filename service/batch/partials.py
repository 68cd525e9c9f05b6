"""``/evaluate`` from mergeable per-partition results.

Every figure ``costaware.economics.evaluate`` reports for a scalar cost matrix depends on
the data only through how many positives and negatives have each distinct score: a
partition's :class:`costaware.core.ScoreCounts`. Two of them merge by adding counts, so
partitions can be evaluated anywhere, in any grouping, and the merged counts are evaluated
by :func:`costaware.economics.evaluate_counts`; this module merges them as they arrive.
Their size is the number of distinct scores (at most one entry per float32 value the model
produces), not the number of rows.
"""

from __future__ import annotations

from costaware.core import EconomicsError, ScoreCounts


class Merger:
    """Merges partial results as they arrive, a few at a time, so the client holds one
    merged table and a short list, whatever the number of partitions."""

    def __init__(self, batch: int = 16) -> None:
        self.batch = batch
        self.pending: list[ScoreCounts] = []

    def add(self, part: ScoreCounts) -> None:
        self.pending.append(part)
        if len(self.pending) >= self.batch:
            self.pending = [ScoreCounts.merge(self.pending)]

    def result(self) -> ScoreCounts:
        if not self.pending:
            raise EconomicsError("labels", "empty: need at least one labeled instance")
        return ScoreCounts.merge(self.pending)
