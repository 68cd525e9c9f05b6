"""From request bytes to the data plane and back, for ``/predict`` and ``/invocations``.

The SageMaker headers that choose a model, threshold and margin; the decoding of a body
into :class:`~service.dataplane.PredictInputs`; and :func:`run_pipeline`, bytes in and
bytes out, which the load benchmark runs in-process to compare with the HTTP path.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from costaware.tabular import data_line_numbers
from service.codecs import (
    CSV,
    ENCODERS,
    JSON,
    JSONLINES,
    decode_csv,
    decode_json_request,
    decode_jsonlines,
    encode_csv_with_ids,
    on_out_of_range,
    unit_interval,
)
from service.dataplane import DataPlane, PredictInputs, Predictions
from service.errors import NotFoundError
from service.registry import ModelRegistry
from service.valuation import ValuedPredictions

TARGET_MODEL_HEADER = "X-Amzn-SageMaker-Target-Model"
CUSTOM_ATTRIBUTES_HEADER = "X-Amzn-SageMaker-Custom-Attributes"
REQUEST_ID_HEADER = "X-Request-ID"
INFERENCE_ID_HEADER = "X-Amzn-SageMaker-Inference-Id"


@dataclass(frozen=True)
class Overrides:
    """Per-request choices that arrive outside the body (SageMaker headers)."""

    model: str | None = None
    threshold: float | None = None
    margin: float | None = None
    on_out_of_range: str | None = None
    # The request's id (X-Request-ID, or SageMaker's X-Amzn-SageMaker-Inference-Id): the
    # instances' ids are it suffixed by -<index> unless the body names its own.
    request_id: str | None = None
    # ``ids=true`` in the custom attributes: CSV answers get the id as a last column.
    csv_ids: bool = False


NO_OVERRIDES = Overrides()


def target_model_name(header: str | None) -> str | None:
    """A multi-model endpoint names an artefact (``prefix/medical.tar.gz``); we serve by
    model name, so keep only the last path part without the archive suffix. No header
    (or a blank one) means the default model; a header whose last part names nothing
    (``builtin/``, ``/``, ``.tar.gz``) is a 404 naming what was asked for, never the
    default model."""
    if header is None or not header.strip():
        return None
    name = header.strip().rsplit("/", 1)[-1]
    for suffix in (".tar.gz", ".tgz"):
        name = name.removesuffix(suffix)
    if not name:
        raise NotFoundError(
            f"{TARGET_MODEL_HEADER} {header.strip()!r} names no model (its last path part, "
            "without .tar.gz or .tgz, is empty)"
        )
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
        if sep and key in ("model", "threshold", "margin", "on_out_of_range", "ids"):
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
        on_out_of_range=(
            on_out_of_range(found["on_out_of_range"], where) if "on_out_of_range" in found else None
        ),
        csv_ids=found.get("ids", "").lower() == "true",
    )


def first_set(*values: float | None) -> float | None:
    return next((value for value in values if value is not None), None)


def decode_inputs(
    dataplane: DataPlane,
    body: bytes,
    request_format: str,
    overrides: Overrides | None = None,
) -> PredictInputs:
    """Decode ``body`` into the data plane's inputs.

    Precedence for the model, threshold and margin: headers (``overrides``), then the
    JSON body, then (in the data plane) the default model and the card's values. CSV and
    JSON lines name no model, so they are decoded against the chosen model's features.
    """
    overrides = overrides or NO_OVERRIDES
    if request_format == JSON:
        request = decode_json_request(body)
        return PredictInputs(
            instances=request.instances,
            model=overrides.model or request.model,
            threshold=first_set(overrides.threshold, request.threshold),
            margin=first_set(overrides.margin, request.margin),
            on_out_of_range=overrides.on_out_of_range or request.on_out_of_range,
            cost_matrix=request.cost_matrix,
            fields="body.",
            ids=request.ids,
            request_id=overrides.request_id,
        )
    assert request_format in (CSV, JSONLINES)
    model = dataplane.model(overrides.model)
    decode = decode_csv if request_format == CSV else decode_jsonlines
    return PredictInputs(
        instances=decode(body, model.card.features),
        model=model.name,
        threshold=overrides.threshold,
        margin=overrides.margin,
        on_out_of_range=overrides.on_out_of_range or "flag",
        source="body",
        row_name=line_namer(body, "body, row " if request_format == CSV else "body line "),
        request_id=overrides.request_id,
    )


def line_namer(body: bytes, prefix: str) -> Callable[[int], str]:
    """Names data row ``i`` of a CSV or JSON-lines body by its line (blank lines are
    skipped by both decoders); the lines are counted only if an error needs them."""

    @functools.cache
    def numbers() -> list[int]:
        return data_line_numbers(body.decode("utf-8"))

    return lambda index: f"{prefix}{numbers()[index]}"


def run_pipeline(
    registry: ModelRegistry | DataPlane,
    body: bytes,
    request_format: str,
    response_format: str,
    overrides: Overrides | None = None,
) -> tuple[bytes, Predictions]:
    """Decode ``body``, score it with the chosen model and encode the answer, all in this
    call (the service scores small requests through service.batching instead)."""
    dataplane = registry if isinstance(registry, DataPlane) else DataPlane(registry)
    predictions = dataplane.predict_now(decode_inputs(dataplane, body, request_format, overrides))
    return encoder(response_format, overrides)(predictions), predictions


def encoder(
    response_format: str, overrides: Overrides | None
) -> Callable[[Predictions | ValuedPredictions], bytes]:
    """The answer's encoder: CSV with an id column when the request asked for one."""
    if response_format == CSV and overrides is not None and overrides.csv_ids:
        return encode_csv_with_ids
    return ENCODERS[response_format]
