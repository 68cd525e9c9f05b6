"""``GET /metrics``: Prometheus text exposition."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from service.routes.common import MetricsDep

router = APIRouter(tags=["operations"])


@router.get("/metrics", response_class=Response)
async def metrics(metrics: MetricsDep) -> Response:
    """Requests and latency by endpoint and model, predictions by label, close-confusion
    rate per model."""
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)
