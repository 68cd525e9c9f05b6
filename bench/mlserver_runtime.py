"""MLServer 1.7 with a custom onnxruntime runtime (MLServer ships none), for
bench/load.py's V2 JSON comparison; runs only in its own environment
(``make bench-env-mlserver``). bench/load.py writes the settings (``parallel_workers: 0``:
MLServer 1.7's default worker pool dies on this Python with "There is no current event
loop") and the model settings naming ``mlserver_runtime.OnnxRuntime``."""

from __future__ import annotations

from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from v2_baseline import Scorer


class OnnxRuntime(MLModel):
    async def load(self) -> bool:
        self.scorer = Scorer()
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0])
        outputs = self.scorer.outputs(x)
        return InferenceResponse(
            model_name=self.name,
            id=payload.id,
            outputs=[NumpyCodec.encode_output(name, value) for name, value in outputs.items()],
        )
