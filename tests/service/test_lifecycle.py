"""The lifecycle in-process: several workers' generations (two lifecycles on one shared
directory, as two worker processes have), and the refusals of load and unload."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from _servicekit import LogisticSpec, write_model

from service.errors import ConflictError, InvalidInputError, ModelLoadError, NotFoundError
from service.lifecycle import ModelLifecycle, scan_model_dir
from service.registry import session_options

OPTIONS = session_options(1, 1)


def write_version(folder: Path, name: str, seed: int, version: str) -> None:
    write_model(folder, name, LogisticSpec.random(seed))
    card = json.loads((folder / "model-card.json").read_text())
    card["version"] = version
    (folder / "model-card.json").write_text(json.dumps(card))


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    write_version(root / "medical", "medical", 1, "m1")
    write_version(root / "builtin", "builtin", 2, "b1")
    return root


def start(model_dir: Path, shared: Path | None) -> ModelLifecycle:
    return ModelLifecycle.start_up(model_dir, "medical", OPTIONS, lifecycle_dir=shared)


def versions(lifecycle: ModelLifecycle) -> dict[str, str]:
    return {m.name: m.card.version for m in lifecycle.registry.loaded()}


def test_workers_follow_each_others_loads_and_unloads(model_dir, tmp_path):
    shared = tmp_path / "shared"
    first, second = start(model_dir, shared), start(model_dir, shared)
    assert versions(first) == versions(second) == {"medical": "m1", "builtin": "b1"}

    async def scenario() -> None:
        write_version(model_dir / "medical", "medical", 3, "m2")
        await first.load("medical")
        # The folder changes again before the other worker follows: it still serves
        # exactly what the first worker checked, from the shared copy.
        write_version(model_dir / "medical", "medical", 4, "m3")
        await second.follow_once()
        assert versions(second)["medical"] == "m2"
        x = np.random.default_rng(0).normal(size=(3, 30))
        np.testing.assert_array_equal(
            first.registry.get("medical").raw_scores(x),
            second.registry.get("medical").raw_scores(x),
        )

        await second.unload("builtin")
        await first.follow_once()
        assert versions(first) == {"medical": "m2"}

        # A load starts from what the other workers serve: the second worker's load of
        # builtin is in place on the first as soon as the first's own load returns.
        await second.load("builtin")
        await first.load("medical")
        assert versions(first) == {"medical": "m3", "builtin": "b1"}
        await second.follow_once()
        assert versions(first) == versions(second) == {"medical": "m3", "builtin": "b1"}

    asyncio.run(scenario())

    # A worker that starts now serves the current generation, not the folder's content.
    write_version(model_dir / "builtin", "builtin", 5, "b2")
    late = start(model_dir, shared)
    assert versions(late) == {"medical": "m3", "builtin": "b1"}


def test_the_latest_load_wins_on_a_worker_that_has_not_followed_yet(model_dir, tmp_path):
    shared = tmp_path / "shared"
    first, second = start(model_dir, shared), start(model_dir, shared)

    async def scenario() -> None:
        write_version(model_dir / "medical", "medical", 3, "m2")
        await first.load("medical")
        # Back to m1's exact files, loaded on the worker that still serves m1: that is a
        # change for the service (m2 is published), not a no-op.
        write_version(model_dir / "medical", "medical", 1, "m1")
        outcome = await second.load("medical")
        assert outcome.model.card.version == "m1"
        await first.follow_once()
        assert versions(first)["medical"] == versions(second)["medical"] == "m1"

    asyncio.run(scenario())


def test_load_and_unload_refusals(model_dir):
    lifecycle = start(model_dir, None)

    async def scenario() -> None:
        with pytest.raises(InvalidInputError):
            await lifecycle.load("../medical")
        with pytest.raises(NotFoundError):
            await lifecycle.load("absent")
        shutil.copytree(model_dir / "builtin", model_dir / "renamed")
        with pytest.raises(ModelLoadError, match="names the model 'builtin', not 'renamed'"):
            await lifecycle.load("renamed")
        with pytest.raises(ConflictError, match="default model"):
            await lifecycle.unload("medical")
        with pytest.raises(NotFoundError):
            await lifecycle.unload("renamed")
        await lifecycle.unload("builtin")
        lifecycle.registry.default_name = "other"
        with pytest.raises(ConflictError, match="only model loaded"):
            await lifecycle.unload("medical")
        assert versions(lifecycle) == {"medical": "m1"}

    asyncio.run(scenario())
    assert "renamed" in next(iter(lifecycle.registry.refused.values()))


def test_watch_waits_for_two_equal_scans(model_dir):
    lifecycle = start(model_dir, None)

    async def scenario() -> None:
        before = scan_model_dir(model_dir)
        lifecycle._seen = dict(before)
        write_version(model_dir / "fraud", "fraud", 6, "f1")
        changing = scan_model_dir(model_dir)
        await lifecycle.apply_scan(before, changing)  # seen once: not yet
        assert "fraud" not in versions(lifecycle)
        present = scan_model_dir(model_dir)
        await lifecycle.apply_scan(changing, present)
        assert versions(lifecycle)["fraud"] == "f1"
        shutil.rmtree(model_dir / "fraud")
        gone = scan_model_dir(model_dir)
        await lifecycle.apply_scan(present, gone)
        assert "fraud" in versions(lifecycle)  # gone once: not yet
        await lifecycle.apply_scan(gone, scan_model_dir(model_dir))
        assert "fraud" not in versions(lifecycle)

    asyncio.run(scenario())


def test_an_unforeseen_failure_refuses_that_folder_only(model_dir, monkeypatch):
    """Whatever one folder raises, beyond the checks' own refusals, is that folder's
    refusal: at start-up the others are served, a load of it answers 422 with the reason."""
    import service.registry

    parse = service.registry.parse_card

    def fragile(data: bytes, path: Path):
        if path.parent.name == "odd":
            raise RuntimeError("a surprise\nwith a second line")
        return parse(data, path)

    monkeypatch.setattr(service.registry, "parse_card", fragile)
    write_version(model_dir / "odd", "odd", 3, "o1")
    lifecycle = start(model_dir, None)
    assert versions(lifecycle) == {"builtin": "b1", "medical": "m1"}
    reason = f"{model_dir / 'odd'}: cannot be loaded (RuntimeError: a surprise)"
    assert lifecycle.registry.refused == {str(model_dir / "odd"): reason}

    async def scenario() -> None:
        with pytest.raises(ModelLoadError) as refused:
            await lifecycle.load("odd")
        assert refused.value.detail == reason
        assert (await lifecycle.load("builtin")).changed is False

    asyncio.run(scenario())
    assert versions(lifecycle) == {"builtin": "b1", "medical": "m1"}
