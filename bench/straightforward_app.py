"""A comparison for bench/load.py: the straightforward build of the same service.

What a user would write from FastAPI's and onnxruntime's documentation: pydantic request
and response models, a synchronous endpoint (FastAPI runs it in its thread pool), one
onnxruntime session made at start-up with the same thread settings as the service's. It
serves one model (BENCH_MODEL_DIR, default models/medical) with the card's threshold and
margin, and answers ``POST /predict`` with the same fields as the service.

    uvicorn bench.straightforward_app:app --loop uvloop --http httptools
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI
from pydantic import BaseModel

MODEL_DIR = Path(
    os.environ.get("BENCH_MODEL_DIR", Path(__file__).resolve().parents[1] / "models/medical")
)
state: dict[str, object] = {}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    card = json.loads((MODEL_DIR / "model-card.json").read_text())
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    state["card"] = card
    state["session"] = ort.InferenceSession(
        str(MODEL_DIR / "model.onnx"), sess_options=options, providers=["CPUExecutionProvider"]
    )
    yield


app = FastAPI(lifespan=lifespan)


class PredictRequest(BaseModel):
    instances: list[list[float]]
    threshold: float | None = None
    margin: float | None = None


class Prediction(BaseModel):
    score: float
    label: int
    close_confusion: bool


class PredictResponse(BaseModel):
    model: str
    version: str
    threshold: float
    margin: float
    predictions: list[Prediction]


@app.post("/predict")
def predict(request: PredictRequest) -> PredictResponse:
    card = state["card"]
    session = state["session"]
    threshold = card["threshold"] if request.threshold is None else request.threshold
    margin = card["margin"] if request.margin is None else request.margin
    x = np.asarray(request.instances, dtype=np.float32)
    (scores,) = session.run([card["onnx"]["output_name"]], {card["onnx"]["input_name"]: x})
    return PredictResponse(
        model=card["name"],
        version=card["version"],
        threshold=threshold,
        margin=margin,
        predictions=[
            Prediction(
                score=score,
                label=int(score >= threshold),
                close_confusion=abs(score - threshold) < margin,
            )
            for score in scores.reshape(-1).tolist()
        ],
    )
