"""service.batching: requests decoded in the same turn of the event loop share one
onnxruntime call per model, and every request still gets exactly its own rows' scores."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from _servicekit import SHIPPED, csv_body
from fastapi.testclient import TestClient
from sklearn.datasets import load_breast_cancer

from service.app import create_app
from service.batching import PROBE_EVERY, BatchScorer
from service.registry import LoadedModel, ModelRegistry, session_options
from service.routes.common import INLINE_BODY_BYTES
from service.settings import Settings


@dataclass
class CountingModel:
    """A real loaded model that records the rows of each session call made through it."""

    model: LoadedModel
    calls: list[int] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.model.name

    def outputs(self, x: np.ndarray) -> np.ndarray:
        # What the scorer calls: every output of one session call (the raw score alone
        # for these uncalibrated models).
        self.calls.append(len(x))
        return self.model.outputs(x)


@pytest.fixture(scope="module")
def registry(model_dir: Path) -> ModelRegistry:
    return ModelRegistry.load(model_dir, "medical", session_options(1, 1))


@pytest.fixture
def medical(registry: ModelRegistry) -> CountingModel:
    return CountingModel(registry.get("medical"))


@pytest.fixture
def builtin(registry: ModelRegistry) -> CountingModel:
    return CountingModel(registry.get("builtin"))


def busy(scorer: BatchScorer) -> BatchScorer:
    """As under concurrent load: the last call found company, so requests wait for more."""
    scorer._company = True
    return scorer


def gather(*calls):
    async def run():
        return await asyncio.gather(*calls, return_exceptions=True)

    return asyncio.run(run())


@pytest.mark.parametrize("name", ["builtin", "custom-5to1", "medical", "tuned"])
def test_shipped_models_score_a_row_the_same_alone_or_in_a_batch(name):
    # What makes coalescing invisible to clients: were this to fail on some CPU, a
    # request's scores would depend on which other requests arrived with it.
    model = ModelRegistry.load(SHIPPED, "medical", session_options(1, 1)).get(name)
    x = load_breast_cancer().data
    alone = np.concatenate([model.raw_scores(x[i : i + 1]) for i in range(len(x))])
    for size in (2, 3, 7, 32, 100, len(x)):
        for start in range(0, len(x) - size + 1, size):
            batch = model.raw_scores(x[start : start + size])
            assert np.array_equal(batch, alone[start : start + size]), (size, start)


def test_requests_in_one_turn_share_one_session_call(medical, instances):
    scorer = busy(BatchScorer())
    parts = [instances[0:1], instances[1:4], instances[4:6]]
    results = gather(*(scorer.score(medical, x) for x in parts))
    assert medical.calls == [6]
    for x, result in zip(parts, results, strict=True):
        assert np.array_equal(result, medical.model.raw_scores(x))
        assert result.shape == (len(x),)


def test_each_model_gets_its_own_call(medical, builtin, instances):
    scorer = busy(BatchScorer())
    results = gather(
        scorer.score(medical, instances[0:2]),
        scorer.score(builtin, instances[2:3]),
        scorer.score(medical, instances[3:5]),
    )
    assert medical.calls == [4]
    assert builtin.calls == [1]
    assert np.array_equal(results[0], medical.model.raw_scores(instances[0:2]))
    assert np.array_equal(results[1], builtin.model.raw_scores(instances[2:3]))
    assert np.array_equal(results[2], medical.model.raw_scores(instances[3:5]))


def test_requests_in_later_turns_get_later_calls(medical, instances):
    scorer = busy(BatchScorer())

    async def one_after_another():
        return [await scorer.score(medical, instances[i : i + 1]) for i in range(3)]

    results = asyncio.run(one_after_another())
    assert medical.calls == [1, 1, 1]
    assert np.array_equal(np.concatenate(results), medical.model.raw_scores(instances[:3]))


def test_a_faulty_request_fails_alone(medical, instances):
    # The service checks widths before scoring, so this cannot come from a client; if a
    # session call fails anyway, the others waiting with it must not fail too.
    scorer = busy(BatchScorer())
    good, bad, other = instances[0:2], instances[2:3, :-1], instances[3:4]
    results = gather(
        scorer.score(medical, good), scorer.score(medical, bad), scorer.score(medical, other)
    )
    assert np.array_equal(results[0], medical.model.raw_scores(good))
    assert isinstance(results[1], Exception)
    assert "Got: 29 Expected: 30" in str(results[1])
    assert np.array_equal(results[2], medical.model.raw_scores(other))
    # The scorer keeps working afterwards.
    assert np.array_equal(gather(scorer.score(medical, good))[0], medical.model.raw_scores(good))


def test_a_request_cancelled_while_waiting_is_left_out(medical, instances):
    scorer = busy(BatchScorer())

    async def run():
        first = asyncio.create_task(scorer.score(medical, instances[0:1]))
        second = asyncio.create_task(scorer.score(medical, instances[1:3]))
        await asyncio.sleep(0)  # both are now waiting for the next turn's call
        first.cancel()
        return await asyncio.gather(first, second, return_exceptions=True)

    first, second = asyncio.run(run())
    assert isinstance(first, asyncio.CancelledError)
    assert np.array_equal(second, medical.model.raw_scores(instances[1:3]))
    assert medical.calls == [2]


def test_lone_requests_are_scored_at_once_with_a_probe_for_company(medical, instances):
    scorer = BatchScorer()

    def completes_in_one_step(x):
        # No turn of the loop waited for others: the coroutine finishes on its first step.
        coroutine = scorer.score(medical, x)
        try:
            coroutine.send(None)
        except StopIteration:
            return True
        coroutine.close()
        return False

    async def one_at_a_time():
        waited = []
        for i in range(2 * PROBE_EVERY):
            if not completes_in_one_step(instances[:1]):
                waited.append(i)
        return waited

    assert asyncio.run(one_at_a_time()) == [PROBE_EVERY - 1, 2 * PROBE_EVERY - 1]


def test_a_probe_that_finds_company_turns_batching_on_until_a_call_is_lone(medical, instances):
    scorer = BatchScorer()
    scorer._since_probe = PROBE_EVERY - 1  # the next request probes

    def together(n):
        return asyncio.gather(*(scorer.score(medical, instances[i : i + 1]) for i in range(n)))

    async def run():
        await together(3)  # the probe finds two others: batching on
        await together(4)
        await scorer.score(medical, instances[:1])  # waits, finds nobody: batching off
        await together(2)  # scored at once, one by one

    asyncio.run(run())
    assert medical.calls == [3, 4, 1, 1, 1]


def test_disabled_scorer_calls_the_session_per_request(medical, instances):
    scorer = BatchScorer(enabled=False)
    results = gather(*(scorer.score(medical, instances[i : i + 1]) for i in range(3)))
    assert medical.calls == [1, 1, 1]
    assert np.array_equal(np.concatenate(results), medical.model.raw_scores(instances[:3]))


def test_the_app_answers_the_same_with_batch_scoring_off(settings, instances):
    body = {"model": "custom-5to1", "instances": instances[:5].tolist()}
    answers = []
    for batch_scoring in (True, False):
        app = create_app(settings.model_copy(update={"batch_scoring": batch_scoring}))
        with TestClient(app) as client:
            # one request id both times, so that the prediction ids agree too
            response = client.post("/predict", json=body, headers={"X-Request-ID": "same"})
            assert response.status_code == 200, response.text
            answers.append(response.content)
    assert answers[0] == answers[1]


def test_batch_scoring_is_a_setting(monkeypatch):
    monkeypatch.setenv("COSTAWARE_BATCH_SCORING", "false")
    assert Settings().batch_scoring is False
    monkeypatch.setenv("COSTAWARE_BATCH_SCORING", "maybe")
    with pytest.raises(ValueError, match="batch_scoring"):
        Settings()


def test_every_session_call_is_reported_with_its_rows(medical, builtin, instances):
    calls: list[tuple[str, int]] = []
    scorer = busy(BatchScorer(observe_call=lambda model, rows: calls.append((model, rows))))
    gather(
        scorer.score(medical, instances[0:2]),
        scorer.score(builtin, instances[2:3]),
        scorer.score(medical, instances[3:6]),
    )
    assert sorted(calls) == [("builtin", 1), ("medical", 5)]
    calls.clear()
    scorer.score_now(medical, instances[:7])
    gather(
        BatchScorer(enabled=False, observe_call=scorer.observe_call).score(medical, instances[:2])
    )
    assert calls == [("medical", 7), ("medical", 2)]


def histogram(text: str, name: str, model: str) -> dict[str, float]:
    """A histogram's samples for one model from the exposition text, by suffix/bucket."""
    samples = {}
    for line in text.splitlines():
        if line.startswith(name) and f'model="{model}"' in line:
            key, value = line.rsplit(" ", 1)
            bucket = re.search(r'le="([^"]+)"', key)
            samples[bucket.group(1) if bucket else key.split("{")[0][len(name) :]] = float(value)
    return samples


def test_metrics_count_rows_per_session_call(settings, instances):
    """One small request is one call of its own rows; a large CSV (scored in a worker
    thread, not batched) is one call of all its rows."""
    big = np.tile(instances, (12, 1))
    body = csv_body(big)
    assert len(body) > INLINE_BODY_BYTES
    name = "costaware_scoring_call_rows"
    with TestClient(create_app(settings)) as client:
        before = histogram(client.get("/metrics").text, name, "medical")
        assert client.post("/predict", json={"instances": instances[:1].tolist()}).is_success
        response = client.post("/invocations", content=body, headers={"content-type": "text/csv"})
        assert response.status_code == 200
        after = histogram(client.get("/metrics").text, name, "medical")
    assert after["_count"] - before.get("_count", 0) == 2
    assert after["_sum"] - before.get("_sum", 0) == 1 + len(big)
    assert after["1.0"] - before.get("1.0", 0) == 1
    assert after["+Inf"] - before.get("+Inf", 0) == 2
