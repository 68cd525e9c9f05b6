"""The baseline for bench/load.py: a bare FastAPI endpoint returning a constant, served by
uvicorn with the same settings as the service."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.responses import Response

CONSTANT = b'{"model":"bare","predictions":[{"score":0.5,"label":1,"close_confusion":false}]}'

app = FastAPI()


@app.post("/predict")
async def predict() -> Response:
    return Response(CONSTANT, media_type="application/json")
