"""A comparison for bench/load.py: BentoML 1.4 serving the same ONNX model.

Runs only in its own environment (``make bench-env-bentoml``; BentoML is never a
dependency of the project):

    .venv-bench-bentoml/bin/bentoml serve bentoml_service:Classifier --working-dir bench

The service as BentoML's documentation writes one: a class with the session made in
``__init__`` and a synchronous ``@bentoml.api`` taking the instances, one worker, the
access log off (as for every server in the bench). Same request body and answer fields as
the service's ``POST /predict``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import bentoml
import numpy as np
import onnxruntime as ort

MODEL_DIR = Path(
    os.environ.get("BENCH_MODEL_DIR", Path(__file__).resolve().parents[1] / "models/medical")
)


@bentoml.service(workers=1, logging={"access": {"enabled": False}})
class Classifier:
    def __init__(self) -> None:
        self.card = json.loads((MODEL_DIR / "model-card.json").read_text())
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(MODEL_DIR / "model.onnx"), sess_options=options, providers=["CPUExecutionProvider"]
        )

    @bentoml.api
    def predict(self, instances: list[list[float]]) -> dict:
        card = self.card
        threshold, margin = card["threshold"], card["margin"]
        x = np.asarray(instances, dtype=np.float32)
        (scores,) = self.session.run([card["onnx"]["output_name"]], {card["onnx"]["input_name"]: x})
        return {
            "model": card["name"],
            "version": card["version"],
            "threshold": threshold,
            "margin": margin,
            "predictions": [
                {
                    "score": score,
                    "label": int(score >= threshold),
                    "close_confusion": abs(score - threshold) < margin,
                }
                for score in scores.reshape(-1).tolist()
            ],
        }
