"""The OpenAPI document, built to match what the service does.

FastAPI lists the routes and their path and query parameters; this module states, per
operation, the request bodies (JSON from :mod:`service.schemas`' pydantic models; CSV and
JSON lines as patterns), every status the operation can answer with the one error body,
and the constraints that come from the loaded models. Built per request of
``/openapi.json``, so it follows the registry.

The loaded models are grouped by the shape of their requests (:class:`ModelGroup`: binary
or multiclass, features, classes). A JSON prediction body is a ``oneOf`` with one variant
per group and way of deciding, told apart by ``model``; each states that group's instance
(length and feature names), cost matrix and margin. What JSON Schema cannot tie together
(the model a SageMaker header chooses and the width of the body's rows; a per-instance
list as long as the instances) is stated in the operation's description.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from costaware.core import MAX_ABS_VALUE, ORIENTATION
from costaware.decision import MODEL_NAME_PATTERN
from costaware.economics import MAX_OUTCOME_VALUE, OUTCOMES
from service.codecs import CSV, JSON, JSONLINES
from service.decisionlog.ids import ID_CHARACTERS
from service.errors import ServiceError
from service.inference import CUSTOM_ATTRIBUTES_HEADER, TARGET_MODEL_HEADER
from service.protocols.v2 import tensors as v2
from service.schemas import (
    ERROR_DESCRIPTIONS,
    ErrorBody,
    EvaluateRequest,
    EvaluateResponse,
    ExecutionParameters,
    ModelList,
    MulticlassEvaluateResponse,
    OutcomesRequest,
    OutcomesResponse,
    PredictRequest,
    PredictResponse,
    ValuedPredictResponse,
    ValueReport,
    instance_schema,
    model_name_schema,
    number_schema,
)

PNG = "image/png"
UNIT_INTERVAL = {"type": "number", "minimum": 0, "maximum": 1}
NULL = {"type": "null"}
DOLLARS = {"type": "number", "minimum": 0}
OUTCOME_VALUE = {"type": "number", "minimum": -MAX_OUTCOME_VALUE, "maximum": MAX_OUTCOME_VALUE}
VALUE_MATRIX_CELL = {"type": "number", "minimum": -MAX_ABS_VALUE, "maximum": MAX_ABS_VALUE}
PREDICT_RULES = (
    " The body is one of the variants below: the `model` chosen (omitted: the default "
    "model) fixes the instance's length and feature names, and how it decides fixes the "
    "rest. A binary model decides by its threshold, or by expected value under a posted "
    "`cost_matrix` (tp, fp, tn, fn; then no threshold, and `margin` is in dollars >= 0); a "
    "multiclass model decides by expected value under its card's value matrix or a "
    "posted one with its classes (no threshold; `margin` in dollars). Rules JSON Schema "
    "cannot state: each per-instance list of a cost matrix has one value per instance; a "
    "posted matrix must prefer some decision for some truth (all zeros, v_tp = v_fn with "
    "v_tn = v_fp, or a value matrix of constant rows is refused)."
)
INVOCATIONS_RULES = (
    " The model is the one X-Amzn-SageMaker-Target-Model names, else `model=` in "
    "X-Amzn-SageMaker-Custom-Attributes, else (JSON) the body's `model`, else the default "
    "model, {default}. Every CSV or JSON-lines row, and every instance of a JSON body, has "
    "that model's features: a body of another model's width is refused with 422 naming "
    "the row."
)
EVALUATE_RULES = (
    " Rules JSON Schema cannot state: `labels` has one label per score or instance; a "
    "per-instance cost list has one value per instance (for the held-out split, per "
    "held-out instance); with a text/csv or empty body the query holds the options: "
    "for binary models tp, fp, tn and fn (all required) with the other options, for "
    "multiclass models `value_matrix` with `models` and no other option (no plot); a "
    "text/csv body has the rows of the models so chosen (a multiclass row's label is a "
    "class name or index); beside a JSON body a query option overrides the body's field "
    "(tp, fp, tn and fn: the entries of its binary cost matrix, refused beside a value "
    "matrix; `value_matrix`: its cost_matrix), and `models` in the query goes with posted "
    "instances or the held-out split, not posted scores; a figure (plot, or "
    "Accept: image/png) needs exactly one binary model; `prevalence` needs both classes "
    "among the labels. With a value matrix: `values` is K x K for its K classes, each row "
    "of `scores` has K probabilities summing to 1 (within 1e-6) and each label is one of "
    "the classes (or its index). A cost or value matrix must prefer some decision for "
    "some truth (all zeros, v_tp = v_fn with v_tn = v_fp, or constant rows are refused). "
    "Breaking one is a 422 naming the field."
)
ALL_ERRORS = (400, 404, 406, 413, 415, 422, 503)
REFUSALS_422 = (
    "422 `invalid_input` names the row, column, feature or field. Two refusals of a body "
    "the schema accepts: `non_finite_score` (the model gave NaN or an infinity for an "
    "instance: no decision is made on it) and `out_of_range` (only with on_out_of_range = "
    "refuse: an instance has features outside the model's training range)."
)
# Canonical numbers in CSV and JSON lines: at most 38 integer digits, or one digit before
# an exponent of at most 37, so every value the pattern admits is within float32's range.
# The decoders also take any other spelling Python's float() reads (within that range).
_NUMBER = (
    r"-?(?:(?:0|[1-9][0-9]{0,37})(?:\.[0-9]{1,17})?"
    r"|[0-9](?:\.[0-9]{1,17})?[eE][-+]?(?:[0-9]|[12][0-9]|3[0-7]))"
)


def _rows_schema(row: str, description: str) -> dict[str, Any]:
    return {"type": "string", "pattern": f"^(?:{row}\\n)*{row}\\n?$", "description": description}


def _per_width(
    widths: Sequence[int], row: Callable[[int], str], description: str
) -> dict[str, Any]:
    """A text body whose rows all have one of ``widths`` values (the loaded models' feature
    counts): one pattern per width; which width is right depends on the chosen model."""
    if not widths:
        return {"type": "string", "minLength": 1, "description": description}
    if len(widths) == 1:
        return _rows_schema(row(widths[0]), description)
    return {
        "description": description,
        "anyOf": [_rows_schema(row(n), f"rows of {n} values") for n in widths],
    }


def labelled_csv_schema(widths: Sequence[int], multiclass: Sequence[ModelGroup]) -> dict[str, Any]:
    """/evaluate's text/csv body: rows of a binary model (``widths``: 0/1 label, for tp,
    fp, tn and fn in the query) or of a multiclass group (its class names or indices as
    labels, for value_matrix in the query)."""
    binary = csv_schema(widths, labelled=True)
    if not multiclass:
        return binary
    rows = [binary] if widths else []
    for group in multiclass:
        assert group.classes is not None
        names, n = group.classes, len(group.features)
        label = "|".join([*(re.escape(name) for name in names), f"[0-{len(names) - 1}]"])
        rows.append(
            _rows_schema(
                f"(?:{label}),{_NUMBER}(?:,{_NUMBER}){{{n - 1}}}",
                f"rows of {', '.join(group.names)} (with value_matrix in the query): the "
                f"label, a class name or index, then the {n} features",
            )
        )
    return {"description": "Headerless CSV, one labelled instance per line", "anyOf": rows}


def csv_schema(widths: Sequence[int], *, labelled: bool = False) -> dict[str, Any]:
    description = (
        "Headerless CSV, one instance per line"
        + (", the 0/1 label first, then" if labelled else ",")
        + " the model's features in its card's order. Blank lines are skipped and \\r\\n "
        "line ends accepted; a value may be any spelling Python's float() reads, finite "
        "and within float32's range (the pattern shows the canonical form)."
    )
    first = f"[01](?:\\.0)?,{_NUMBER}" if labelled else _NUMBER
    return _per_width(widths, lambda n: f"{first}(?:,{_NUMBER}){{{n - 1}}}", description)


def jsonlines_schema(widths: Sequence[int]) -> dict[str, Any]:
    description = (
        "One instance per line: a JSON array of the model's features, or an object keyed "
        "by feature name (the pattern shows arrays); blank lines are skipped."
    )
    return _per_width(widths, lambda n: f"\\[{_NUMBER}(?:,{_NUMBER}){{{n - 1}}}\\]", description)


@dataclass(frozen=True)
class ModelGroup:
    """Loaded models whose requests have one shape: the same kind, the same features in
    the same order and, for multiclass models, the same classes. One schema serves them."""

    names: tuple[str, ...]
    features: tuple[str, ...]
    classes: tuple[str, ...] | None = None  # None: a binary model

    @property
    def multiclass(self) -> bool:
        return self.classes is not None

    @property
    def key(self) -> str:
        """The suffix of the group's component names: its first model's name."""
        return self.names[0]

    def describe(self) -> str:
        kind = f"multiclass ({', '.join(self.classes)})" if self.classes else "binary"
        return f"{', '.join(self.names)}: {kind}, {len(self.features)} features"


def model_groups(models: Sequence[Any]) -> list[ModelGroup]:
    """The loaded ``models`` (in the registry's order) grouped by request shape."""
    found: dict[tuple[tuple[str, ...], tuple[str, ...] | None], list[str]] = {}
    for model in models:
        classes = tuple(model.card.classes) if model.multiclass else None
        found.setdefault((tuple(model.card.features), classes), []).append(model.name)
    return [
        ModelGroup(tuple(names), features, classes) for (features, classes), names in found.items()
    ]


def default_model_name(registry: Any) -> str | None:
    """The model a request that names none gets, or None when such a request is refused."""
    try:
        return registry.get(None).name
    except ServiceError:
        return None


class _Builder:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.components: dict[str, Any] = document.setdefault("components", {}).setdefault(
            "schemas", {}
        )

    def schema(self, model: type[BaseModel]) -> dict[str, Any]:
        """``model``'s JSON Schema, nested models moved to the components."""
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in schema.pop("$defs", {}).items():
            self.components[name] = sub
        self.components[model.__name__] = schema
        return {"$ref": f"#/components/schemas/{model.__name__}"}

    def add(self, name: str, schema: dict[str, Any]) -> dict[str, Any]:
        """``schema`` as the component ``name``; a reference to it."""
        self.components[name] = schema
        return {"$ref": f"#/components/schemas/{name}"}

    def errors(self, statuses: Sequence[int], notes: dict[int, str] | None = None) -> dict:
        error = self.schema(ErrorBody)
        return {
            str(status): {
                "description": (notes or {}).get(status) or ERROR_DESCRIPTIONS[status],
                "content": {JSON: {"schema": error}},
            }
            for status in statuses
        }

    def instance(self, group: ModelGroup) -> dict[str, Any]:
        return self.add(
            f"Instance_{group.key}",
            instance_schema(group.features)
            | {"description": f"One instance for {group.describe()}"},
        )

    def binary_cost_matrix(self) -> dict[str, Any]:
        outcome = {
            "anyOf": [OUTCOME_VALUE, {"type": "array", "items": OUTCOME_VALUE, "minItems": 1}]
        }
        return self.add(
            "BinaryCostMatrix",
            {
                "title": "BinaryCostMatrix",
                "description": "Dollar value of each outcome of a binary decision (negative = "
                "loss): a number, or a list with one value per instance (as many as the "
                "instances, or for the held-out split as its instances).",
                "type": "object",
                "properties": dict.fromkeys(OUTCOMES, outcome),
                "required": list(OUTCOMES),
                "additionalProperties": False,
            },
        )

    def value_matrix(self, group: ModelGroup | None) -> dict[str, Any]:
        """A multiclass value matrix for ``group``'s classes, or (None) for any classes."""
        description = f"{ORIENTATION} (row = truth, column = decision), dollars per instance"
        if group is None:
            k: dict[str, Any] = {"minItems": 2}
            classes: dict[str, Any] = {
                "type": "array",
                "items": {"type": "string", "minLength": 1},
                "uniqueItems": True,
            } | k
            name, description = "ValueMatrix", description + "; K x K for K classes"
        else:
            assert group.classes is not None
            k = {"minItems": len(group.classes), "maxItems": len(group.classes)}
            classes = {"const": list(group.classes)}
            name = f"ValueMatrix_{group.key}"
        row = {"type": "array", "items": VALUE_MATRIX_CELL} | k
        return self.add(
            name,
            {
                "title": name,
                "description": description,
                "type": "object",
                "properties": {"classes": classes, "values": {"type": "array", "items": row} | k},
                "required": ["classes", "values"],
                "additionalProperties": False,
            },
        )


def _operation(document: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    return document["paths"][path][method]


def _set_responses(operation: dict[str, Any], ok: dict[str, Any], errors: dict[str, Any]) -> None:
    operation["responses"] = {"200": ok, **errors}


def _example_row(model: Any) -> list[float] | None:
    ranges = model.card.feature_ranges
    if ranges is None:
        return None
    return [round((item.min + item.max) / 2, 4) for item in ranges]


def _nullable(schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    return {"anyOf": [schema, NULL]} | ({"description": description} if description else {})


def _predict_variants(
    build: _Builder, groups: Sequence[ModelGroup], default: str | None
) -> list[dict[str, Any]]:
    """One request body per group of models and way of deciding, told apart by ``model``
    (and, for binary models, by whether a cost_matrix is posted)."""
    base = PredictRequest.model_json_schema()
    described = {key: value.get("description", "") for key, value in base["properties"].items()}
    dollars = _nullable(
        DOLLARS,
        "close_confusion when the best two actions' expected values differ by less than "
        "this many dollars; default: see margin_note in the answer",
    )
    variants = []
    for group in groups:
        names = {"enum": list(group.names)}
        holds_default = default in group.names
        model = (
            _nullable(names, f"Model name; omitted or null: the default model, {default}")
            if holds_default
            else names | {"description": "Model name"}
        )
        common = {
            "instances": {"type": "array", "items": build.instance(group), "minItems": 1}
            | {"description": described["instances"]},
            "model": model,
            "on_out_of_range": base["properties"]["on_out_of_range"],
        }
        required = ["instances"] + ([] if holds_default else ["model"])
        if group.multiclass:
            ways = [
                (
                    f"PredictMulticlass_{group.key}",
                    "Decided by expected value under the card's value matrix, or the "
                    "posted one; no threshold.",
                    {
                        "threshold": NULL,
                        "margin": dollars,
                        "cost_matrix": _nullable(build.value_matrix(group), "default: the card's"),
                    },
                )
            ]
        else:
            score_margin = _nullable(
                UNIT_INTERVAL,
                "close_confusion = |score - threshold| < margin, a score margin; default: "
                "the card's",
            )
            ways = [
                (
                    f"PredictByThreshold_{group.key}",
                    "Decided by the threshold: label = score >= threshold.",
                    {
                        "threshold": _nullable(UNIT_INTERVAL, described["threshold"]),
                        "margin": score_margin,
                        "cost_matrix": NULL,
                    },
                ),
                (
                    f"PredictByValue_{group.key}",
                    "Decided by expected value under the posted cost matrix (each "
                    "per-instance list as long as instances); no threshold.",
                    {
                        "threshold": NULL,
                        "margin": dollars,
                        "cost_matrix": build.binary_cost_matrix(),
                    },
                ),
            ]
        for title, note, fields in ways:
            # Deciding by a posted binary matrix needs one; the other ways take none or null.
            posted = title.startswith("PredictByValue")
            schema = {
                "title": title,
                "description": f"{note} Models {group.describe()}.",
                "type": "object",
                "properties": common | fields,
                "required": required + (["cost_matrix"] if posted else []),
                "additionalProperties": False,
            }
            variants.append(build.add(title, schema))
    return variants


def openapi_document(app: FastAPI) -> dict[str, Any]:
    """The document for ``app`` with the models its registry holds now."""
    document = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        description=app.description,
        routes=app.routes,
    )
    registry = getattr(app.state, "registry", None)
    models = [registry.models[name] for name in registry.names()] if registry else []
    by_name = {model.name: model for model in models}
    names = list(by_name)
    groups = model_groups(models)
    default = default_model_name(registry) if registry and models else None
    widths = sorted({len(group.features) for group in groups})
    build = _Builder(document)
    # FastAPI's own validation-error shapes are never sent: every error is ErrorBody.
    for name in ("HTTPValidationError", "ValidationError"):
        build.components.pop(name, None)

    if groups:
        variants = _predict_variants(build, groups, default)
        if default is not None:
            (home,) = (group for group in groups if default in group.names)
            variants.append(
                {
                    "type": "array",
                    "items": build.instance(home),
                    "minItems": 1,
                    "description": f"The instances alone, for the default model, {default}",
                }
            )
        predict_json: dict[str, Any] = {"oneOf": variants}
    else:
        # No model loaded (every prediction is a 503): the body as the parser defines it.
        body = copy.deepcopy(PredictRequest.model_json_schema())
        body["properties"]["instances"]["items"] = instance_schema(None)
        predict_json = {"anyOf": [build.add("PredictRequest", body), {"type": "array"}]}
    predict_ok = {
        "description": "One prediction per instance (decided by expected value with a "
        "cost_matrix or a multiclass model)",
        "content": {
            JSON: {
                "schema": {
                    "anyOf": [build.schema(PredictResponse), build.schema(ValuedPredictResponse)]
                }
            }
        },
    }
    prediction_errors = build.errors(ALL_ERRORS, {422: REFUSALS_422})

    # An example from the default model: the middle of each feature's training range.
    example = _example_row(by_name[default]) if default is not None else None
    json_example = {"example": {"instances": [example]}} if example else {}
    operation = _operation(document, "/predict", "post")
    operation["description"] = (operation.get("description") or "") + PREDICT_RULES
    operation["requestBody"] = {
        "required": True,
        "content": {JSON: {"schema": predict_json, **json_example}},
    }
    _set_responses(operation, predict_ok, prediction_errors)

    operation = _operation(document, "/invocations", "post")
    operation["description"] = (
        (operation.get("description") or "")
        + PREDICT_RULES
        + INVOCATIONS_RULES.format(default=default or "(none: name a model)")
    )
    operation["requestBody"] = {
        "required": True,
        "content": {
            CSV: {
                "schema": csv_schema(widths),
                **({"example": ",".join(map(repr, example)) + "\n"} if example else {}),
            },
            JSON: {"schema": predict_json, **json_example},
            JSONLINES: {
                "schema": jsonlines_schema(widths),
                **({"example": "[" + ",".join(map(repr, example)) + "]\n"} if example else {}),
            },
        },
    }
    # As inference.target_model_name reads it: the last path part, without .tar.gz then
    # .tgz; a blank header (or none) means the default model, a last part that names
    # nothing ("builtin/") is refused.
    empty = "?" if default is not None else ""
    alternatives = "|".join(name.replace(".", "[.]") for name in names)
    named = f"(?:.*/)?(?:{alternatives})(?:\\.tgz)?(?:\\.tar\\.gz)?"
    target = (
        {"type": "string", "pattern": f"^\\s*(?:{named}){empty}\\s*$"}
        if names
        else {"type": "string"}
    )
    operation["parameters"] = [
        {
            "name": TARGET_MODEL_HEADER,
            "in": "header",
            "required": False,
            "schema": target,
            "description": "Model name (any path and a .tar.gz suffix are dropped); it "
            "chooses the model whatever the body says.",
        },
        {
            "name": CUSTOM_ATTRIBUTES_HEADER,
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
            "description": "`key=value` pairs separated by , or ;: model=, threshold= and "
            "margin= (numbers in [0, 1]; no threshold for a multiclass model or with a "
            "cost_matrix), on_out_of_range=flag|refuse; other keys ignored.",
        },
    ]
    _set_responses(
        operation,
        {
            "description": "One prediction per instance, in the Accept-ed format. CSV lines: "
            "decided by threshold, score,label,close_confusion,out_of_range; by a posted "
            "binary cost_matrix, score,decision,ev_0,ev_1,close_confusion,out_of_range; by a "
            "multiclass model, p_1..p_K,decision,ev_1..ev_K,close_confusion,out_of_range "
            "(classes in the card's order); out_of_range is the feature names separated by ; "
            "(empty when none). A calibrated model's lines add at the end its probability "
            "(binary) or its raw class scores s_1..s_K (multiclass, whose p_j are then the "
            "calibrated probabilities); an uncalibrated model's lines keep these columns. "
            "JSON lines: one prediction record a line, with calibrated.",
            "content": {
                JSON: predict_ok["content"][JSON],
                CSV: {"schema": {"type": "string"}},
                JSONLINES: {"schema": {"type": "string"}},
            },
        },
        prediction_errors,
    )

    _evaluate(document, build, groups)
    _outcomes(document, build)
    calibrated = [model.name for model in models if model.calibrated]
    _reads(
        document,
        build,
        names,
        [n for g in groups if not g.multiclass for n in g.names],
        calibrated,
    )
    _admin(document, [name for name in names if name != default])
    _v2(document, build, models, getattr(app.state, "keys", None))
    _framework_errors(document, build)
    return document


V2_RULES = (
    " Rules JSON Schema cannot state: the one input `features` has the shape [N, F] of the "
    "named model (F: its features, in the card's order, GET /v2/models/{name}), N >= 1, and "
    "`data` holds N x F values, flat or nested, row-major; an integer datatype takes "
    "integers within its range. Deciding by threshold (a binary model without cost_tp, "
    "cost_fp, cost_tn, cost_fn) the margin is a score margin in [0, 1]; the cost "
    "parameters come all four or none, for a binary model only, and must prefer some "
    "decision for some truth; `threshold` only for a binary model without them. `outputs` "
    "names outputs of this answer, each once (decision and expected_values only when "
    "deciding by expected value). The binary tensor data extension: with the header "
    "Inference-Header-Content-Length the body's first that many bytes are the JSON, each "
    "input with parameters.binary_data_size takes that many bytes of what follows, in "
    "order (little-endian), and outputs asked for as binary (outputs[].parameters."
    "binary_data, or parameters.binary_data_output) follow the answer's JSON the same way."
)


def _v2(document: dict[str, Any], build: _Builder, models: Sequence[Any], keys: Any) -> None:
    """The Open Inference Protocol's paths (service.routes.v2), from the core's
    definitions (service.protocols.v2.tensors): its own error body on every path."""
    error = build.add(
        "V2Error",
        {
            "type": "object",
            "properties": {"error": {"type": "string"}},
            "required": ["error"],
            "additionalProperties": False,
        },
    )
    descriptions = {
        400: "Bad request: the message names the tensor, element, parameter or field",
        401: "No API key, or not a valid one",
        404: "Unknown model or version, or no such /v2 route",
        413: "Body over the size limit",
        503: "No model loaded",
    }

    def errors(path: str, statuses: Sequence[int]) -> dict[str, Any]:
        guarded = keys is not None and keys.guards(path)
        return {
            str(status): {"description": descriptions[status], "content": {JSON: {"schema": error}}}
            for status in (*statuses, *((401,) if guarded else ()))
        }

    def ok(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            "description": description,
            "content": {JSON: {"schema": schema or {"type": "object"}}},
        }

    names = [model.name for model in models]
    versions = sorted({model.card.version for model in models})
    outputs = sorted({item["name"] for model in models for item in v2.output_metadata(model)})
    number = number_schema()
    build.add(
        "V2Data",
        {"type": "array", "items": {"anyOf": [number, {"$ref": "#/components/schemas/V2Data"}]}},
    )
    tensor_variants = [
        {
            "type": "object",
            "properties": {
                "name": {"const": v2.INPUT_NAME},
                "datatype": {"enum": [name for name in v2.NUMERIC_DATATYPES if name[0] == "F"]},
                "shape": {
                    "type": "array",
                    "items": {"type": "integer", "minimum": 1},
                    "minItems": 2,
                    "maxItems": 2,
                },
                "data": {"$ref": "#/components/schemas/V2Data"},
                "parameters": {"type": "object"},
            },
            "required": ["name", "datatype", "shape", "data"],
            "additionalProperties": False,
        }
    ]
    for name, dtype in v2.NUMERIC_DATATYPES.items():
        if dtype.kind not in "iu":
            continue
        info = np.iinfo(dtype)
        integer = {"type": "integer", "minimum": int(info.min), "maximum": int(info.max)}
        component = f"V2Data{name}"
        build.add(
            component,
            {
                "type": "array",
                "items": {"anyOf": [integer, {"$ref": f"#/components/schemas/{component}"}]},
            },
        )
        variant = copy.deepcopy(tensor_variants[0])
        variant["properties"]["datatype"] = {"const": name}
        variant["properties"]["data"] = {"$ref": f"#/components/schemas/{component}"}
        tensor_variants.append(variant)
    ignored = {
        key: {"description": "accepted and ignored"} for key in sorted(v2.IGNORED_PARAMETERS)
    }
    request = build.add(
        "V2InferRequest",
        {
            "type": "object",
            "properties": {
                "id": {"type": "string", "description": "echoed in the answer"},
                "parameters": {
                    "type": "object",
                    "properties": ignored
                    | {
                        "binary_data_output": {"type": "boolean"},
                        "threshold": UNIT_INTERVAL,
                        "margin": DOLLARS,
                        "on_out_of_range": {"enum": ["flag", "refuse"]},
                    }
                    | dict.fromkeys(v2.COST_PARAMETERS, OUTCOME_VALUE),
                    "additionalProperties": False,
                },
                "inputs": {
                    "type": "array",
                    "items": {"oneOf": tensor_variants},
                    "minItems": 1,
                    "maxItems": 1,
                },
                "outputs": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "name": {"enum": outputs} if outputs else {"type": "string"},
                            "parameters": {
                                "type": "object",
                                "properties": {"binary_data": {"type": "boolean"}},
                                "additionalProperties": False,
                            },
                        },
                        "required": ["name"],
                        "additionalProperties": False,
                    },
                },
            },
            "required": ["inputs"],
            "additionalProperties": False,
        },
    )
    answer = build.add(
        "V2InferResponse",
        {
            "type": "object",
            "properties": {
                "model_name": {"type": "string"},
                "model_version": {"type": "string"},
                "id": {"type": "string"},
                "parameters": {"type": "object"},
                "outputs": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string"},
                            "datatype": {"type": "string"},
                            "shape": {"type": "array", "items": {"type": "integer"}},
                            "data": {"type": "array"},
                            "parameters": {"type": "object"},
                        },
                        "required": ["name", "datatype", "shape"],
                    },
                },
            },
            "required": ["model_name", "model_version", "parameters", "outputs"],
        },
    )
    paths = document["paths"]
    prefix = "/v2"
    for path, operations in paths.items():
        if not (path == prefix or path.startswith(prefix + "/")):
            continue
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path" and parameter["name"] == "name":
                    parameter["schema"] = model_name_schema(names)
                elif parameter["in"] == "path" and parameter["name"] == "version":
                    parameter["schema"] = (
                        {"type": "string", "enum": versions} if versions else {"type": "string"}
                    )
            if method == "post":
                operation["description"] = (operation.get("description") or "") + V2_RULES
                operation["requestBody"] = {
                    "required": True,
                    "content": {JSON: {"schema": request}},
                }
                _set_responses(
                    operation,
                    {
                        "description": "The outputs (JSON; with binary outputs, JSON and "
                        "their bytes: see the description)",
                        "content": {
                            JSON: {"schema": answer},
                            "application/octet-stream": {
                                "schema": {"type": "string", "format": "binary"}
                            },
                        },
                    },
                    errors(path, (400, 404, 413, 503)),
                )
            elif path.endswith(("/live", prefix)):
                _set_responses(operation, ok("Live, or the server's metadata"), errors(path, ()))
            elif path.endswith("/health/ready"):
                _set_responses(operation, ok("A model is loaded"), errors(path, (503,)))
            else:
                _set_responses(
                    operation, ok("The model's metadata or readiness"), errors(path, (404, 503))
                )


def _framework_errors(document: dict[str, Any], build: _Builder) -> None:
    """Routes this module does not state one by one (the admin routes, say) keep FastAPI's
    responses, except that its validation errors are answered with the one error body."""
    error = build.schema(ErrorBody)
    for operations in document["paths"].values():
        for operation in operations.values():
            for response in operation.get("responses", {}).values():
                for media in response.get("content", {}).values():
                    ref = media.get("schema", {}).get("$ref", "")
                    if ref.endswith(("/HTTPValidationError", "/ValidationError")):
                        media["schema"] = error


def _evaluate(document: dict[str, Any], build: _Builder, groups: Sequence[ModelGroup]) -> None:
    """/evaluate's body: one variant per kind of model and source of data (held-out split,
    posted scores, posted instances), the instances those of a group of models."""
    base = copy.deepcopy(EvaluateRequest.model_json_schema())
    props = base["properties"]
    binary = [group for group in groups if not group.multiclass]
    binary_names = [name for group in binary for name in group.names]

    def names_list(names: Sequence[str], *, optional: bool) -> dict[str, Any]:
        schema = {"type": "array", "items": {"enum": list(names)}, "minItems": 1}
        return (
            _nullable(schema | {"uniqueItems": True})
            if optional
            else schema | {"uniqueItems": True}
        )

    def variant(
        title: str, fields: dict[str, Any], require: Sequence[str], drop: Sequence[str] = ()
    ) -> dict[str, Any]:
        schema = copy.deepcopy(base)
        schema["title"] = title
        schema["properties"] |= fields
        for key in drop:
            # Absent or null: the parser takes null for absent.
            schema["properties"][key] = NULL
        schema["required"] = ["cost_matrix", *require]
        return build.add(title, schema)

    data = ("instances", "scores", "labels")
    binary_label = {"type": "array", "items": {"enum": [0, 1, True, False]}, "minItems": 1}
    scores = {"type": "array", "items": UNIT_INTERVAL, "minItems": 1}
    variants = []
    # Binary models: a cost matrix of tp, fp, tn, fn and a score margin.
    binary_fields = {
        "cost_matrix": build.binary_cost_matrix(),
        "margin": _nullable(UNIT_INTERVAL, props["margin"].get("description", "")),
    }
    if binary:
        variants.append(
            variant(
                "EvaluateHeldOut",
                binary_fields | {"models": names_list(binary_names, optional=True)},
                (),
                data,
            )
        )
    variants.append(
        variant(
            "EvaluateScores",
            binary_fields | {"scores": scores, "labels": binary_label},
            ("scores", "labels"),
            ("instances", "models"),
        )
    )
    for group in binary:
        variants.append(
            variant(
                f"EvaluateInstances_{group.key}",
                binary_fields
                | {
                    "models": names_list(group.names, optional=len(binary) == 1),
                    "instances": {"type": "array", "items": build.instance(group), "minItems": 1},
                    "labels": binary_label,
                },
                ("instances", "labels") if len(binary) == 1 else ("instances", "labels", "models"),
                ("scores",),
            )
        )
    # Multiclass models: a value matrix and a margin in dollars; no threshold, and no
    # prevalence or value curve (the data plane refuses them).
    multiclass_fields = {
        "margin": _nullable(
            DOLLARS, "dollars per instance; default: 5% of the matrix's largest regret"
        ),
        "threshold": NULL,
        "prevalence": NULL,
        "curve": {"enum": [False, None]},
    }
    variants.append(
        variant(
            "EvaluateMulticlassScores",
            multiclass_fields
            | {
                "cost_matrix": build.value_matrix(None),
                "scores": {
                    "type": "array",
                    "items": {"type": "array", "items": UNIT_INTERVAL, "minItems": 2},
                    "minItems": 1,
                },
                "labels": {
                    "type": "array",
                    "items": {"anyOf": [{"type": "string"}, {"type": "integer", "minimum": 0}]},
                    "minItems": 1,
                },
            },
            ("scores", "labels"),
            ("instances", "models"),
        )
    )
    for group in (group for group in groups if group.multiclass):
        assert group.classes is not None
        same_classes = [g for g in groups if g.classes == group.classes]
        held_out_names = [name for g in same_classes for name in g.names]
        matrix = build.value_matrix(group)
        if group is same_classes[0]:
            variants.append(
                variant(
                    f"EvaluateMulticlassHeldOut_{group.key}",
                    multiclass_fields
                    | {"cost_matrix": matrix, "models": names_list(held_out_names, optional=True)},
                    (),
                    data,
                )
            )
        label = {"anyOf": [{"enum": list(group.classes)}, _class_index(len(group.classes))]}
        alone = len(same_classes) == 1
        variants.append(
            variant(
                f"EvaluateMulticlassInstances_{group.key}",
                multiclass_fields
                | {
                    "cost_matrix": matrix,
                    "models": names_list(group.names, optional=alone),
                    "instances": {"type": "array", "items": build.instance(group), "minItems": 1},
                    "labels": {"type": "array", "items": label, "minItems": 1},
                },
                ("instances", "labels") if alone else ("instances", "labels", "models"),
                ("scores",),
            )
        )
    operation = _operation(document, "/evaluate", "post")
    operation["description"] = operation.get("description", "") + EVALUATE_RULES
    widths = sorted({len(group.features) for group in binary})
    multiclass = [group for group in groups if group.multiclass]
    operation["requestBody"] = {
        "required": False,
        "content": {
            JSON: {"schema": {"oneOf": variants}},
            CSV: {"schema": labelled_csv_schema(widths, multiclass)},
        },
    }
    _set_responses(
        operation,
        {
            "description": "The evaluation (JSON), or a figure (PNG)",
            "content": {
                JSON: {
                    "schema": {
                        "anyOf": [
                            build.schema(EvaluateResponse),
                            build.schema(MulticlassEvaluateResponse),
                        ]
                    }
                },
                PNG: {"schema": {"type": "string", "format": "binary"}},
            },
        },
        build.errors(ALL_ERRORS, {422: REFUSALS_422}),
    )
    for parameter in operation.get("parameters", []):
        if parameter["name"] in OUTCOMES:
            parameter["schema"] = OUTCOME_VALUE
        elif parameter["name"] in ("threshold", "margin", "prevalence"):
            parameter["schema"] = UNIT_INTERVAL
        elif parameter["name"] == "models":
            # Only with a text/csv or empty body: binary models, or multiclass ones with
            # value_matrix.
            parameter["schema"] = {
                "type": "array",
                "items": model_name_schema(
                    [*binary_names, *(name for group in multiclass for name in group.names)]
                ),
                "uniqueItems": True,
            }
        elif parameter["name"] == "value_matrix":
            # JSON text in the query: the value matrix of a multiclass group's classes.
            matrices = _unique(build.value_matrix(group) for group in multiclass)
            del parameter["schema"]
            parameter["content"] = {
                JSON: {"schema": matrices[0] if len(matrices) == 1 else {"anyOf": matrices}}
            }
    if not multiclass:
        # No multiclass model is served: no value matrix can be valued.
        operation["parameters"] = [
            p for p in operation.get("parameters", []) if p["name"] != "value_matrix"
        ]


def _admin(document: dict[str, Any], examples: Sequence[str]) -> None:
    """Load and unload take any model name (the folder or the served model may not exist:
    404); a served model other than the default is the example."""
    for action in ("load", "unload"):
        operation = document["paths"].get(f"/models/{{name}}/{action}", {}).get("post")
        for parameter in (operation or {}).get("parameters", []):
            if parameter["name"] == "name":
                parameter["schema"] = {"type": "string", "pattern": MODEL_NAME_PATTERN}
                if examples:
                    parameter["example"] = examples[0]


def _unique(schemas: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for schema in schemas:
        if schema not in out:
            out.append(schema)
    return out


def _class_index(k: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": 0, "maximum": k - 1}


# ISO 8601 durations the value report takes (whole seconds up to days; a 0 is refused).
DURATION_PATTERN = r"^P(?:[1-9][0-9]{0,3}D|T[1-9][0-9]{0,5}[HMS])$"


OUTCOMES_CSV_PATTERN = (
    rf"^(?:id,label\n)?(?:{ID_CHARACTERS}{{1,200}},[A-Za-z0-9_.-]{{1,50}}\n)"
    rf"{{0,99}}{ID_CHARACTERS}{{1,200}},[A-Za-z0-9_.-]{{1,50}}\n?$"
)


def _outcomes(document: dict[str, Any], build: _Builder) -> None:
    """``POST /outcomes``: JSON from OutcomesRequest, or text/csv rows ``id,label``."""
    if "/outcomes" not in document["paths"]:
        return
    operation = _operation(document, "/outcomes", "post")
    operation["requestBody"] = {
        "required": True,
        "content": {
            JSON: {"schema": build.schema(OutcomesRequest)},
            CSV: {
                "schema": {
                    "type": "string",
                    "description": "rows id,label (a header line "
                    "id,label is optional), at most 100,000",
                }
            },
        },
    }
    ok = {
        "description": "Stored, unchanged and unknown",
        "content": {JSON: {"schema": build.schema(OutcomesResponse)}},
    }
    _set_responses(
        operation,
        ok,
        build.errors(
            (400, 409, 413, 415, 422, 503),
            {409: "An id already has a different label (post replace: true to change it)"},
        ),
    )


def _reads(
    document: dict[str, Any],
    build: _Builder,
    names: Sequence[str],
    binary: Sequence[str],
    calibrated: Sequence[str],
) -> None:
    def ok(content: dict[str, Any] | None, description: str = "OK") -> dict[str, Any]:
        return {"description": description, **({"content": content} if content else {})}

    name_schema = model_name_schema(names)
    table: dict[tuple[str, str], tuple[dict[str, Any], tuple[int, ...]]] = {
        ("/ping", "get"): (ok(None, "A model is loaded; empty body"), (503,)),
        ("/health/live", "get"): (ok({JSON: {"schema": {"type": "object"}}}), ()),
        ("/health/ready", "get"): (ok({JSON: {"schema": {"type": "object"}}}), (503,)),
        ("/models", "get"): (ok({JSON: {"schema": build.schema(ModelList)}}), (503,)),
        ("/models/{name}", "get"): (ok({JSON: {"schema": {"type": "object"}}}), (404, 503)),
        ("/models/{name}/distribution.png", "get"): (
            ok({PNG: {"schema": {"type": "string", "format": "binary"}}}),
            (404, 422, 503),
        ),
        ("/models/{name}/calibration.png", "get"): (
            ok({PNG: {"schema": {"type": "string", "format": "binary"}}}),
            (404, 409, 503),
        ),
        ("/execution-parameters", "get"): (
            ok({JSON: {"schema": build.schema(ExecutionParameters)}}),
            (),
        ),
        ("/metrics", "get"): (ok({"text/plain": {"schema": {"type": "string"}}}), ()),
        ("/models/{name}/value", "get"): (
            ok({JSON: {"schema": build.schema(ValueReport)}}),
            (404, 422, 503),
        ),
    }
    if not calibrated:
        # The reliability diagram exists only for a calibrated model (409 for the others):
        # with none loaded the operation has no name to take.
        document["paths"].pop("/models/{name}/calibration.png", None)
    for (path, method), (answer, errors) in table.items():
        if path not in document["paths"]:
            continue
        operation = _operation(document, path, method)
        _set_responses(
            operation, answer, build.errors(errors, {409: "The model has no calibration map"})
        )
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "path" and parameter["name"] == "name":
                # The close-confusion figure is drawn for binary models only, the
                # reliability diagram for calibrated ones.
                if path.endswith("distribution.png"):
                    parameter["schema"] = model_name_schema(binary)
                elif path.endswith("calibration.png"):
                    parameter["schema"] = model_name_schema(calibrated)
                else:
                    parameter["schema"] = name_schema
            elif parameter["name"] in ("threshold", "margin"):
                parameter["schema"] = UNIT_INTERVAL
            elif path.endswith("/value") and parameter["name"] in ("from", "to"):
                parameter["schema"] = {"type": "string", "format": "date-time"}
            elif path.endswith("/value") and parameter["name"] == "window":
                parameter["schema"] = {"type": "string", "pattern": DURATION_PATTERN}
