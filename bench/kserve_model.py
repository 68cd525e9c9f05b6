"""KServe 0.21's Python ModelServer with a custom ``kserve.Model`` on onnxruntime, for
bench/load.py's V2 JSON comparison; runs only in its own environment
(``make bench-env-kserve``):

    .venv-bench-kserve/bin/python bench/kserve_model.py --http_port 8080 --grpc_port 8081
"""

from __future__ import annotations

from typing import Any

from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer
from v2_baseline import MODEL_NAME, Scorer


class Classifier(Model):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.load()

    def load(self) -> bool:
        self.scorer = Scorer()
        self.ready = True
        return self.ready

    def predict(self, payload: InferRequest, headers: dict[str, str] | None = None) -> Any:
        outputs = []
        for name, value in self.scorer.outputs(payload.inputs[0].as_numpy()).items():
            datatype = "FP32" if value.dtype.kind == "f" else "BOOL"
            output = InferOutput(name=name, shape=list(value.shape), datatype=datatype)
            output.set_data_from_numpy(value, binary_data=False)
            outputs.append(output)
        return InferResponse(model_name=self.name, infer_outputs=outputs, response_id=payload.id)


if __name__ == "__main__":
    ModelServer(workers=1, enable_docs_url=False, enable_latency_logging=False).start(
        [Classifier(MODEL_NAME)]
    )
