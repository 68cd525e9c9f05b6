"""The FastAPI application factory. Nothing happens at import: models load in the lifespan."""

from __future__ import annotations

import functools
import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig
from starlette.types import ASGIApp

from service.accesslog import AccessLog
from service.auth import KeyRing, document_security
from service.batching import BatchScorer
from service.dataplane import DataPlane
from service.decisionlog.writer import open_decision_log
from service.lifecycle import ModelLifecycle
from service.metrics import Metrics
from service.middleware import ServiceMiddleware
from service.openapi import openapi_document
from service.registry import ReadLimits, session_options
from service.routes import (
    docs,
    evaluate,
    explorer,
    health,
    metrics,
    models,
    outcomes,
    predict,
    sagemaker,
    v2,
)
from service.routes.common import DirectLanes
from service.routes.errors import install_error_handlers
from service.settings import Settings

log = logging.getLogger(__name__)

_NO_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


def create_app(settings: Settings | None = None, *, direct_routes: bool = True) -> FastAPI:
    """Build the app; ``settings`` default to the environment (``COSTAWARE_*``).

    ``direct_routes=False`` sends the prediction endpoints through FastAPI's router too
    (the tests compare both ways of answering)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        model_dir = settings.resolved_model_dir()
        lifecycle = ModelLifecycle.start_up(
            model_dir,
            settings.default_model,
            session_options(settings.ort_intra_op_threads, settings.ort_inter_op_threads),
            lifecycle_dir=settings.lifecycle_dir,
            poll_seconds=settings.model_poll_seconds,
            limits=ReadLimits(settings.max_card_bytes, settings.max_model_bytes),
        )
        app.state.lifecycle = lifecycle
        app.state.registry = lifecycle.registry
        app.state.decision_log = open_decision_log(settings, app.state.metrics)
        app.state.dataplane = DataPlane(
            app.state.registry,
            app.state.batch_scorer,
            app.state.metrics,
            decision_log=app.state.decision_log,
        )
        # Everything built so far (FastAPI, pydantic, onnxruntime, the models) lives as
        # long as the process: out of the collector's sight, a full collection under load
        # scans only what requests allocate (tens of milliseconds less of pause, the tail
        # latency under concurrency).
        # Under concurrency the requests in flight keep a few hundred container objects
        # alive at once, which made the default threshold (700) collect about once per
        # 30 requests; ten times that still collects young garbage every few hundred.
        gc.collect()
        gc.freeze()
        gc.set_threshold(7000, 10, 10)
        log.info(
            "serving %s from %s (default %s)",
            lifecycle.registry.names() or "no models",
            model_dir,
            settings.default_model,
        )
        await lifecycle.start()
        if app.state.access_log is not None:
            app.state.access_log.start()
        if app.state.decision_log is not None:
            app.state.decision_log.start()
        # The gRPC server shares this event loop, the registry and the data plane; grpc
        # and its stubs are imported only when it is on.
        grpc_v2 = None
        if settings.grpc_port is not None:
            from service.protocols.v2 import grpc_server as grpc_v2
        grpc_server = None if grpc_v2 is None else await grpc_v2.start(app.state, settings)
        try:
            yield
        finally:
            if grpc_v2 is not None:
                await grpc_v2.stop(grpc_server, settings.shutdown_timeout_seconds)
            await lifecycle.stop()
            if app.state.decision_log is not None:
                # What is queued is written before exit (SIGTERM ends up here), waiting
                # for an unavailable store no longer than the shutdown allows.
                app.state.decision_log.stop(
                    min(settings.decision_log_max_wait_seconds, settings.shutdown_timeout_seconds)
                )
                app.state.decision_log.store.close()
            app.state.decision_log = None
            if app.state.access_log is not None:
                app.state.access_log.stop()
            app.state.registry = app.state.dataplane = app.state.lifecycle = None

    app = ServiceApp(
        title="costaware",
        summary="Cost-aware binary classifiers served with the economics attached.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # served offline by service.routes.docs
        redoc_url=None,  # ReDoc has no offline bundle installed
        telemetry=None if settings.opentelemetry else _NO_TELEMETRY,
    )
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.state.batch_scorer = BatchScorer(
        enabled=settings.batch_scoring, observe_call=app.state.metrics.observe_scoring_call
    )
    app.state.registry = app.state.dataplane = app.state.lifecycle = None
    app.state.decision_log = None
    app.state.keys = KeyRing.from_settings(settings)
    # uvicorn's own access log is off (service.cli); this one is cheap (service.accesslog).
    app.state.access_log = AccessLog.configured() if settings.access_log else None
    install_error_handlers(app)

    # Routes match in order: the prediction endpoints first, they carry the traffic.
    app.include_router(predict.router)
    app.include_router(sagemaker.router)
    app.include_router(v2.router)
    app.include_router(health.router)
    app.include_router(models.router)
    app.include_router(evaluate.router)
    app.include_router(outcomes.router)
    app.include_router(metrics.router)
    app.include_router(docs.router)
    docs.mount_assets(app)
    app.include_router(explorer.router)
    explorer.mount_assets(app)
    # The document follows the registry (model names, instance shape), so it is built for
    # each request of /openapi.json rather than cached.
    app.openapi = lambda: openapi_document(app)  # type: ignore[method-assign]

    app.service_layer = functools.partial(
        ServiceMiddleware,
        max_body_bytes=settings.max_body_bytes,
        metrics=app.state.metrics,
        # Generated from the routes: every endpoint with a direct twin (register_direct).
        direct=DirectLanes(app.routes) if direct_routes else None,
        keys=app.state.keys,
        access_log=app.state.access_log,
        # The Open Inference Protocol answers refusals in its own shape on its paths.
        error_shapes={v2.PREFIX: v2.error_shape},
    )
    document_security(app, app.state.keys)
    return app


class ServiceApp(FastAPI):
    """FastAPI with the service's own layer (service.middleware) outside Starlette's: the
    size limit applies before anything reads a body, every request is timed, and the
    prediction endpoints, which carry the traffic, are called directly."""

    service_layer: Callable[[ASGIApp], ASGIApp] | None = None

    def build_middleware_stack(self) -> ASGIApp:
        stack = super().build_middleware_stack()
        return stack if self.service_layer is None else self.service_layer(stack)
