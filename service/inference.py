"""The parse-infer-format pipeline behind ``/predict`` and ``/invocations``.

Plain functions over bytes and the registry, so the load benchmark can run exactly the
same pipeline in-process and compare it with the HTTP path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.codecs import (
    CSV,
    ENCODERS,
    JSON,
    JSONLINES,
    Predictions,
    decode_csv,
    decode_json_request,
    decode_jsonlines,
    instances_to_matrix,
    unit_interval,
)
from service.registry import LoadedModel, ModelRegistry

TARGET_MODEL_HEADER = "X-Amzn-SageMaker-Target-Model"
CUSTOM_ATTRIBUTES_HEADER = "X-Amzn-SageMaker-Custom-Attributes"


@dataclass(frozen=True)
class Overrides:
    """Per-request choices that arrive outside the body (SageMaker headers)."""

    model: str | None = None
    threshold: float | None = None
    margin: float | None = None


NO_OVERRIDES = Overrides()


def target_model_name(header: str | None) -> str | None:
    """A multi-model endpoint names an artefact (``prefix/medical.tar.gz``); we serve by
    model name, so keep only the last path part without the archive suffix."""
    if header is None or not header.strip():
        return None
    name = header.strip().rsplit("/", 1)[-1]
    for suffix in (".tar.gz", ".tgz"):
        name = name.removesuffix(suffix)
    return name


def parse_custom_attributes(header: str | None) -> Overrides:
    """``model=``, ``threshold=``, ``margin=`` from ``key=value`` pairs separated by ``,``
    or ``;``; anything else in the header belongs to someone else and is ignored."""
    if header is None:
        return Overrides()
    found: dict[str, str] = {}
    for part in header.replace(";", ",").split(","):
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        if sep and key in ("model", "threshold", "margin"):
            found[key] = value.strip()
    where = CUSTOM_ATTRIBUTES_HEADER
    return Overrides(
        model=found.get("model") or None,
        threshold=(
            unit_interval(found["threshold"], f"{where} threshold")
            if "threshold" in found
            else None
        ),
        margin=unit_interval(found["margin"], f"{where} margin") if "margin" in found else None,
    )


def first_set(*values: float | str | None) -> float | str | None:
    return next((value for value in values if value is not None), None)


@dataclass(frozen=True)
class ScoringJob:
    """A decoded request: what to score, with which model, and how to label the scores."""

    model: LoadedModel
    x: np.ndarray  # raw feature rows [N, F]
    threshold: float
    margin: float


def decode_request(
    registry: ModelRegistry,
    body: bytes,
    request_format: str,
    overrides: Overrides | None = None,
) -> ScoringJob:
    """Decode ``body`` and choose the model, threshold and margin.

    Precedence for the model, threshold and margin: headers (``overrides``), then the
    JSON body, then the settings' default model and the card's threshold and margin.
    """
    overrides = overrides or NO_OVERRIDES
    if request_format == JSON:
        request = decode_json_request(body)
        model = registry.get(overrides.model or request.model)
        x = instances_to_matrix(request.instances, model.card.features, "instances")
        threshold = first_set(overrides.threshold, request.threshold, model.card.threshold)
        margin = first_set(overrides.margin, request.margin, model.card.margin)
    else:
        model = registry.get(overrides.model)
        decode = decode_csv if request_format == CSV else decode_jsonlines
        assert request_format in (CSV, JSONLINES)
        x = decode(body, model.card.features)
        threshold = first_set(overrides.threshold, model.card.threshold)
        margin = first_set(overrides.margin, model.card.margin)
    assert isinstance(threshold, float) and isinstance(margin, float)
    return ScoringJob(model=model, x=x, threshold=threshold, margin=margin)


def answer(job: ScoringJob, scores: np.ndarray, response_format: str) -> tuple[bytes, Predictions]:
    """Label ``scores`` (the job's model's raw output for ``job.x``) and encode them."""
    predictions = Predictions.from_scores(
        job.model.name, job.model.card.version, scores, job.threshold, job.margin
    )
    return ENCODERS[response_format](predictions), predictions


def run_pipeline(
    registry: ModelRegistry,
    body: bytes,
    request_format: str,
    response_format: str,
    overrides: Overrides | None = None,
) -> tuple[bytes, Predictions]:
    """Decode ``body``, score it with the chosen model and encode the answer, all in this
    call (the service scores small requests through service.batching instead)."""
    job = decode_request(registry, body, request_format, overrides)
    return answer(job, job.model.raw_scores(job.x), response_format)
