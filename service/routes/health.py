"""Liveness and readiness for orchestrators other than SageMaker (which uses /ping)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from fastapi import APIRouter, Request

from service.errors import NotReadyError
from service.routes.common import RegistryDep

router = APIRouter(tags=["health"])


@router.get("/health/live")
async def live(request: Request) -> dict[str, Any]:
    """The process is up and answering; which worker process answered, and the server
    stack it runs on (event loop and HTTP implementation, as observed, not as configured)."""
    return {"status": "alive", "pid": os.getpid(), "server": server_stack(request)}


def server_stack(request: Request) -> dict[str, str]:
    """The running event loop's package (``uvloop``, ``asyncio``) and the HTTP server's
    implementation, read off the object that owns the ``receive`` callable the server
    handed to the app (uvicorn: ``httptools_impl`` or ``h11_impl``)."""
    loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    owner = getattr(request.receive, "__self__", None)
    module = type(owner).__module__ if owner is not None else "unknown"
    http = module.rsplit(".", 1)[-1].removesuffix("_impl")
    return {"loop": loop, "http": http}


@router.get("/health/ready", responses={503: {"description": "No model loaded"}})
async def ready(registry: RegistryDep, request: Request) -> dict[str, Any]:
    """At least one model is loaded: how many are served and how many folders were
    refused; which, and why, only to a caller who may read ``GET /models`` (a valid key
    when API keys are configured): the reasons name files on the host."""
    counts = {"models": len(registry.models), "refused": len(registry.refused)}
    details = request.app.state.keys.shows_details(request.scope["headers"])
    if not registry.ready:
        if not details:
            raise NotReadyError(f"no model loaded ({counts['refused']} model folders refused)")
        reasons = "; ".join(registry.refused.values()) or "the directory holds no model folder"
        raise NotReadyError(f"no model loaded from {registry.model_dir}: {reasons}")
    if not details:
        return {"status": "ready", "counts": counts}
    return {
        "status": "ready",
        "counts": counts,
        "models": registry.names(),
        "refused": registry.refused,
    }
