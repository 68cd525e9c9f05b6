"""Liveness and readiness for orchestrators other than SageMaker (which uses /ping)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from service.errors import NotReadyError
from service.routes.common import RegistryDep

router = APIRouter(tags=["health"])


@router.get("/health/live")
async def live() -> dict[str, str]:
    """The process is up and answering."""
    return {"status": "alive"}


@router.get("/health/ready", responses={503: {"description": "No model loaded"}})
async def ready(registry: RegistryDep) -> dict[str, Any]:
    """At least one model is loaded; lists them and any refused model folders."""
    if not registry.ready:
        reasons = "; ".join(registry.refused.values()) or "the directory holds no model folder"
        raise NotReadyError(f"no model loaded from {registry.model_dir}: {reasons}")
    return {"status": "ready", "models": registry.names(), "refused": registry.refused}
