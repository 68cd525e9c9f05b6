"""What the two Open Inference Protocol baselines of bench/load.py compute, shared: the
ONNX model's session (one thread) and its answer to a ``features`` matrix (score, label
and close confusion at the card's threshold and margin, as ``/predict`` gives). Plain
numpy and onnxruntime; bench/mlserver_runtime.py and bench/kserve_model.py wrap it in
MLServer's and KServe's own model classes, each in its own environment."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

MODEL_DIR = Path(
    os.environ.get("BENCH_V2_MODEL_DIR", Path(__file__).resolve().parents[1] / "models/builtin")
)
MODEL_NAME = MODEL_DIR.name


class Scorer:
    def __init__(self, model_dir: Path = MODEL_DIR) -> None:
        self.card = json.loads((model_dir / "model-card.json").read_text())
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(model_dir / "model.onnx"), sess_options=options, providers=["CPUExecutionProvider"]
        )
        onnx = self.card["onnx"]
        self.input_name, self.output_name = onnx["input_name"], onnx["output_name"]

    def outputs(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """score [N, 1] FP32, label [N] BOOL, close_confusion [N] BOOL."""
        x = np.asarray(x, dtype=np.float32).reshape(-1, self.session.get_inputs()[0].shape[1])
        (scores,) = self.session.run([self.output_name], {self.input_name: x})
        scores = scores.reshape(-1, 1).astype(np.float32)
        threshold, margin = self.card["threshold"], self.card["margin"]
        flat = scores.reshape(-1)
        return {
            "score": scores,
            "label": flat >= threshold,
            "close_confusion": np.abs(flat - threshold) < margin,
        }
