"""Scoring the small requests that arrive together in one onnxruntime call per model.

On a one-instance request, ``InferenceSession.run`` costs a few microseconds in a tight
loop but several times that in a busy server, where the HTTP server's code and data push
onnxruntime's out of the CPU caches between calls. Requests decoded in the same turn of
the event loop (under load, every request whose bytes arrived in the same poll) therefore
wait for one call that scores all their rows, scheduled with ``call_soon``: no timer and
no batch size to tune. A lone request waits one extra turn of the loop.

The scores do not depend on the company a request keeps: the service's tests check, for
every shipped model, that rows scored in one batch equal the same rows scored alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np

from service.registry import LoadedModel

_Waiting = list[tuple[np.ndarray, "asyncio.Future[np.ndarray]"]]


class BatchScorer:
    """Collects ``score`` calls made in one turn of the event loop and runs one session
    call per model at the start of the next."""

    def __init__(
        self, enabled: bool = True, observe_call: Callable[[str, int], None] | None = None
    ) -> None:
        """``observe_call(model name, rows)`` is told of every onnxruntime call."""
        self.enabled = enabled
        self.observe_call = observe_call
        self._waiting: dict[int, tuple[LoadedModel, _Waiting]] = {}
        self._flush_scheduled = False

    def score_now(self, model: LoadedModel, x: np.ndarray) -> np.ndarray:
        """``model.raw_scores(x)`` in this call, alone (for large requests, which run in a
        worker thread)."""
        scores = model.raw_scores(x)
        if self.observe_call is not None:
            self.observe_call(model.name, len(x))
        return scores

    async def score(self, model: LoadedModel, x: np.ndarray) -> np.ndarray:
        """``model.raw_scores(x)``, computed together with the other rows waiting."""
        if not self.enabled:
            return self.score_now(model, x)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[np.ndarray] = loop.create_future()
        # Keyed by the model object, not its name: a request that picked a version just
        # before a reload is scored by that version, never batched into the new one.
        entry = self._waiting.get(id(model))
        if entry is None:
            self._waiting[id(model)] = (model, [(x, future)])
        else:
            entry[1].append((x, future))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        waiting, self._waiting = self._waiting, {}
        self._flush_scheduled = False
        for model, jobs in waiting.values():
            # A request cancelled while it waited (its task was cancelled) is left out.
            live = [(x, future) for x, future in jobs if not future.done()]
            if len(live) > 1:
                try:
                    scores = self.score_now(model, np.concatenate([x for x, _ in live]))
                except Exception:
                    pass  # scored one by one below, so only a faulty request fails
                else:
                    parts = np.split(scores, np.cumsum([len(x) for x, _ in live[:-1]]))
                    for (_, future), part in zip(live, parts, strict=True):
                        future.set_result(part)
                    continue
            for x, future in live:
                try:
                    future.set_result(self.score_now(model, x))
                except Exception as exc:
                    future.set_exception(exc)
