"""The FastAPI application factory. Nothing happens at import: models load in the lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from service.body_limit import BodyLimitMiddleware
from service.errors import install_error_handlers
from service.metrics import Metrics, MetricsMiddleware
from service.registry import ModelRegistry, session_options
from service.routes import docs, evaluate, health, metrics, models, predict, sagemaker
from service.settings import Settings

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; ``settings`` default to the environment (``COSTAWARE_*``)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        model_dir = settings.resolved_model_dir()
        app.state.registry = ModelRegistry.load(
            model_dir,
            settings.default_model,
            session_options(settings.ort_intra_op_threads, settings.ort_inter_op_threads),
        )
        log.info(
            "serving %s from %s (default %s)",
            app.state.registry.names() or "no models",
            model_dir,
            settings.default_model,
        )
        yield
        app.state.registry = None

    app = FastAPI(
        title="costaware",
        summary="Cost-aware binary classifiers served with the economics attached.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # served offline by service.routes.docs
        redoc_url=None,  # ReDoc has no offline bundle installed
    )
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.state.registry = None
    install_error_handlers(app)

    # Routes match in order: the prediction endpoints first, they carry the traffic.
    app.include_router(predict.router)
    app.include_router(sagemaker.router)
    app.include_router(health.router)
    app.include_router(models.router)
    app.include_router(evaluate.router)
    app.include_router(metrics.router)
    app.include_router(docs.router)
    docs.mount_assets(app)

    # Added last = outermost: the size limit applies before anything reads the body, and
    # the timing includes refused requests.
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    return app
