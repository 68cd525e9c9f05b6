"""Scoring the small requests that arrive together in one onnxruntime call per model.

On a one-instance request, ``InferenceSession.run`` costs a few microseconds in a tight
loop but several times that in a busy server, where the HTTP server's code and data push
onnxruntime's out of the CPU caches between calls. Requests decoded in the same turn of
the event loop (under load, every request whose bytes arrived in the same poll) therefore
share one call that scores all their rows: the first of them lets the loop run the others
once, then makes the call for everyone. No timer and no batch size to tune. When calls
find no company (one client at a time), requests are scored at once, since waiting a turn
would only add to their latency, and one in PROBE_EVERY waits to look for company again.

The scores do not depend on the company a request keeps: the service's tests check, for
every shipped model, that rows scored in one batch equal the same rows scored alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np

from service.registry import LoadedModel

# While scoring calls are lone, one request in this many waits a turn to look for company.
PROBE_EVERY = 16
_Waiting = list[tuple[np.ndarray, "asyncio.Future[np.ndarray]"]]


class BatchScorer:
    """Collects ``score`` calls made in one turn of the event loop and runs one session
    call per model for them in the next."""

    def __init__(
        self, enabled: bool = True, observe_call: Callable[[str, int], None] | None = None
    ) -> None:
        """``observe_call(model name, rows)`` is told of every onnxruntime call."""
        self.enabled = enabled
        self.observe_call = observe_call
        self._waiting: dict[int, tuple[LoadedModel, _Waiting]] = {}
        self._leader_waiting = False
        # Whether the last call found company. While calls are lone, a request is scored
        # at once (waiting a turn would only add to its latency) and every PROBE_EVERY-th
        # one waits a turn to see whether others come now; once they do, every request
        # waits for company until a call is lone again.
        self._company = False
        self._since_probe = 0

    def score_now(self, model: LoadedModel, x: np.ndarray) -> np.ndarray:
        """``model.outputs(x)`` (raw and, for a calibrated model, calibrated outputs of one
        session call) in this call, alone (for large requests, which run in a worker
        thread)."""
        scores = model.outputs(x)
        if self.observe_call is not None:
            self.observe_call(model.name, len(x))
        return scores

    async def score(self, model: LoadedModel, x: np.ndarray) -> np.ndarray:
        """``model.outputs(x)``, computed together with the other rows waiting."""
        if not self.enabled:
            return self.score_now(model, x)
        if not (self._company or self._leader_waiting):
            self._since_probe += 1
            if self._since_probe < PROBE_EVERY:
                return self.score_now(model, x)
            self._since_probe = 0
        loop = asyncio.get_running_loop()
        future: asyncio.Future[np.ndarray] = loop.create_future()
        # Keyed by the model object, not its name: a request that picked a version just
        # before a reload is scored by that version, never batched into the new one.
        entry = self._waiting.get(id(model))
        if entry is None:
            self._waiting[id(model)] = (model, [(x, future)])
        else:
            entry[1].append((x, future))
        if self._leader_waiting:
            return await future
        # The first request of a turn leads: it lets the loop run the other requests that
        # are ready (they join the call), then scores everyone's rows itself and goes on
        # with its own answer, without waiting for another turn to be woken.
        self._leader_waiting = True
        try:
            await asyncio.sleep(0)
        except BaseException:
            future.cancel()  # cancelled while waiting: left out of the call
            raise
        finally:
            self._flush()
        return await future

    def _flush(self) -> None:
        waiting, self._waiting = self._waiting, {}
        self._leader_waiting = False
        self._company = sum(len(jobs) for _, jobs in waiting.values()) > 1
        for model, jobs in waiting.values():
            # A request cancelled while it waited (its task was cancelled) is left out.
            live = [(x, future) for x, future in jobs if not future.done()]
            if len(live) > 1:
                try:
                    scores = self.score_now(model, np.concatenate([x for x, _ in live]))
                except Exception:
                    pass  # scored one by one below, so only a faulty request fails
                else:
                    start = 0
                    for x, future in live:
                        future.set_result(scores[start : start + len(x)])
                        start += len(x)
                    continue
            for x, future in live:
                try:
                    future.set_result(self.score_now(model, x))
                except Exception as exc:
                    future.set_exception(exc)
