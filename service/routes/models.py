"""What is being served: the model list and each model's card."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from service.routes.common import RegistryDep
from service.schemas import ERROR_RESPONSES, ModelList

router = APIRouter(tags=["models"])


@router.get("/models", response_model=ModelList)
async def list_models(registry: RegistryDep) -> dict[str, Any]:
    """Name, version, task, classes, loss, threshold, margin and features of every loaded
    model (a multiclass model has no threshold; its margin is in dollars)."""
    models = [
        {
            "name": model.name,
            "version": model.card.version,
            "task": "multiclass" if model.multiclass else "binary",
            "classes": getattr(model.card, "classes", ["0", "1"]),
            "loss": model.card.loss.model_dump(),
            "threshold": None if model.multiclass else model.card.threshold,
            "margin": model.card.margin,
            "features": model.card.features,
        }
        for model in (registry.models[name] for name in registry.names())
    ]
    return {"default": registry.default_name, "models": models}


@router.get("/models/{name}", responses={404: ERROR_RESPONSES[404]})
async def model_card(name: str, registry: RegistryDep, request: Request) -> dict[str, Any]:
    """The model's card, without the held-out score arrays."""
    model = registry.get(name)
    request.state.model = model.name
    return model.card.summary()
