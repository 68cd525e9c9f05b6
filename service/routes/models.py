"""What is being served, and changing it while serving: list, card, load, unload."""

from __future__ import annotations

import os
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from service.auth import require_admin
from service.errors import NotReadyError
from service.lifecycle import ModelLifecycle
from service.routes.common import RegistryDep
from service.schemas import ERROR_RESPONSES, ErrorBody, LoadResult, ModelList, UnloadResult

router = APIRouter(tags=["models"])


async def get_lifecycle(request: Request) -> ModelLifecycle:
    lifecycle = getattr(request.app.state, "lifecycle", None)
    if lifecycle is None:
        raise NotReadyError("the model registry has not been built (the app is still starting)")
    return lifecycle


LifecycleDep = Annotated[ModelLifecycle, Depends(get_lifecycle)]


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


ADMIN_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: _error("No admin key, or not a valid one"),
    403: _error("An inference key, or no admin key configured (load and unload are off)"),
    404: _error("No such model folder or model"),
    422: _error("The name is not a model name, or the folder failed its checks"),
    503: ERROR_RESPONSES[503],
}


@router.get("/models", response_model=ModelList)
async def list_models(lifecycle: LifecycleDep) -> dict[str, Any]:
    """Every served model: name, version, state, when it was loaded, the last failed load,
    task, classes, loss, threshold, margin, features and whether it is calibrated; plus
    folders not served and why (a multiclass model has no threshold; its margin is in
    dollars)."""
    registry = lifecycle.registry
    models = [
        {
            "name": model.name,
            "version": model.card.version,
            **lifecycle.describe(model),
            "task": "multiclass" if model.multiclass else "binary",
            "classes": getattr(model.card, "classes", ["0", "1"]),
            "loss": model.card.loss.model_dump(),
            "threshold": None if model.multiclass else model.card.threshold,
            "margin": model.card.margin,
            "features": model.card.features,
            # False: the model has no calibration map; its scores are not probabilities
            # it has earned, and every answer it gives says so.
            "calibrated": model.calibrated,
        }
        for model in registry.loaded()
    ]
    return {
        "default": registry.default_name,
        "models": models,
        "loading": sorted(lifecycle.loading - set(registry.models)),
        "refused": registry.refused,
        "worker": {"pid": os.getpid(), "generation": lifecycle.generation},
    }


@router.get("/models/{name}", responses={404: ERROR_RESPONSES[404]})
async def model_card(name: str, registry: RegistryDep, request: Request) -> dict[str, Any]:
    """The model's card, without the held-out score arrays."""
    model = registry.get(name)
    request.state.model = model.name
    return model.card.summary()


@router.post(
    "/models/{name}/load",
    response_model=LoadResult,
    dependencies=[Depends(require_admin)],
    responses={**ADMIN_RESPONSES, 409: _error("The card reuses the served version's string")},
)
async def load_model(name: str, lifecycle: LifecycleDep, request: Request) -> dict[str, Any]:
    """Load or reload ``<model dir>/<name>/``: checked as at start-up (card, sha256, graph
    signature), warmed up with one inference, then swapped in; requests already running
    finish on the old version. A failure leaves the old version serving."""
    outcome = await lifecycle.load(name)
    request.state.model = name
    return {
        "name": name,
        "version": outcome.model.card.version,
        "previous_version": outcome.previous.card.version if outcome.previous else None,
        "changed": outcome.changed,
        "sha256": outcome.model.card.onnx.sha256,
        "generation": outcome.generation,
        "seconds": round(outcome.seconds, 6),
    }


@router.post(
    "/models/{name}/unload",
    response_model=UnloadResult,
    dependencies=[Depends(require_admin)],
    responses={**ADMIN_RESPONSES, 409: _error("The default model, or the last one loaded")},
)
async def unload_model(name: str, lifecycle: LifecycleDep, request: Request) -> dict[str, Any]:
    """Stop serving a model (not the default one); requests already running finish."""
    model = await lifecycle.unload(name)
    request.state.model = name
    return {"name": name, "version": model.card.version, "generation": lifecycle.generation}
