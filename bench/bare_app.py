"""The floor for bench/load.py: a bare FastAPI endpoint answering a pre-encoded constant
(the service's own answer to the bench's request, so the same bytes go over the wire),
served by uvicorn on the same stack as the service (uvloop + httptools)."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.responses import Response

CONSTANT = (
    b'{"model":"medical","version":"c2624e041647","threshold":0.5,"margin":0.1,'
    b'"predictions":[{"score":1.0,"label":1,"close_confusion":false,"out_of_range":[]}]}'
)

app = FastAPI()


@app.post("/predict")
async def predict() -> Response:
    return Response(CONSTANT, media_type="application/json")
