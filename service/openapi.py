"""The OpenAPI document, built to match what the service does.

FastAPI lists the routes and their path and query parameters; this module states, per
operation, the request bodies (JSON from :mod:`service.schemas`' pydantic models; CSV and
JSON lines as patterns), every status the operation can answer with the one error body,
and the constraints that come from the loaded models (model names, an instance's length
and feature names). Built per request of ``/openapi.json``, so it follows the registry.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from costaware.economics import MAX_OUTCOME_VALUE
from service.codecs import CSV, JSON, JSONLINES
from service.inference import CUSTOM_ATTRIBUTES_HEADER, TARGET_MODEL_HEADER
from service.schemas import (
    ERROR_DESCRIPTIONS,
    ErrorBody,
    EvaluateRequest,
    EvaluateResponse,
    ExecutionParameters,
    ModelList,
    PredictRequest,
    PredictResponse,
    ValuedPredictResponse,
    instance_schema,
    model_name_schema,
)

PNG = "image/png"
UNIT_INTERVAL = {"type": "number", "minimum": 0, "maximum": 1}
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


def _rows_pattern(first: str, n: int) -> str:
    row = first + f"(?:,{_NUMBER}){{{n - 1}}}" if first else f"{_NUMBER}(?:,{_NUMBER}){{{n - 1}}}"
    return f"^(?:{row}\\n)*{row}\\n?$"


def csv_schema(n: int | None, *, labelled: bool = False) -> dict[str, Any]:
    description = (
        "Headerless CSV, one instance per line"
        + (", the 0/1 label first, then" if labelled else ",")
        + " the model's features in its card's order. Blank lines are skipped and \\r\\n "
        "line ends accepted; a value may be any spelling Python's float() reads, finite "
        "and within float32's range (the pattern shows the canonical form)."
    )
    if n is None:
        return {"type": "string", "minLength": 1, "description": description}
    first = f"[01](?:\\.0)?,{_NUMBER}" if labelled else ""
    if labelled:
        row = f"{first}(?:,{_NUMBER}){{{n - 1}}}"
        pattern = f"^(?:{row}\\n)*{row}\\n?$"
    else:
        pattern = _rows_pattern("", n)
    return {"type": "string", "pattern": pattern, "description": description}


def jsonlines_schema(n: int | None) -> dict[str, Any]:
    description = (
        "One instance per line: a JSON array of the model's features, or an object keyed "
        "by feature name (the pattern shows arrays); blank lines are skipped."
    )
    if n is None:
        return {"type": "string", "minLength": 1, "description": description}
    row = f"\\[{_NUMBER}(?:,{_NUMBER}){{{n - 1}}}\\]"
    return {"type": "string", "pattern": f"^(?:{row}\\n)*{row}\\n?$", "description": description}


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

    def errors(self, statuses: Sequence[int], notes: dict[int, str] | None = None) -> dict:
        error = self.schema(ErrorBody)
        return {
            str(status): {
                "description": (notes or {}).get(status, ERROR_DESCRIPTIONS[status]),
                "content": {JSON: {"schema": error}},
            }
            for status in statuses
        }


def _operation(document: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    return document["paths"][path][method]


def _set_responses(operation: dict[str, Any], ok: dict[str, Any], errors: dict[str, Any]) -> None:
    operation["responses"] = {"200": ok, **errors}


def _example_row(models: Sequence[Any]) -> list[float] | None:
    ranges = next((m.card.feature_ranges for m in models if m.card.feature_ranges), None)
    if ranges is None:
        return None
    return [round((item.min + item.max) / 2, 4) for item in ranges]


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
    names = [model.name for model in models]
    feature_sets = {tuple(model.card.features) for model in models}
    features = list(next(iter(feature_sets))) if len(feature_sets) == 1 else None
    n = None if features is None else len(features)
    build = _Builder(document)
    # FastAPI's own validation-error shapes are never sent: every error is ErrorBody.
    for name in ("HTTPValidationError", "ValidationError"):
        build.components.pop(name, None)

    instance = instance_schema(features)
    name_schema = model_name_schema(names)
    nullable_name = {"anyOf": [name_schema, {"type": "null"}]}

    predict_body = copy.deepcopy(PredictRequest.model_json_schema())
    predict_body["properties"]["instances"] |= {"type": "array", "items": instance}
    predict_body["properties"]["model"] = nullable_name | {"description": "Model name"}
    # A score margin; a dollar margin (>= 0) goes with a cost_matrix, stated in prose.
    predict_body["properties"]["margin"] = {
        "anyOf": [UNIT_INTERVAL, {"type": "null"}],
        "description": predict_body["properties"]["margin"].get("description", ""),
    }
    build.components["PredictRequest"] = predict_body
    predict_json = {
        "anyOf": [
            {"$ref": "#/components/schemas/PredictRequest"},
            {"type": "array", "items": instance, "minItems": 1, "description": "instances"},
        ]
    }
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

    # An example from the loaded models: the middle of each feature's training range.
    example = _example_row(models) if features is not None else None
    json_example = {"example": {"instances": [example]}} if example else {}
    operation = _operation(document, "/predict", "post")
    operation["requestBody"] = {
        "required": True,
        "content": {JSON: {"schema": predict_json, **json_example}},
    }
    _set_responses(operation, predict_ok, prediction_errors)

    operation = _operation(document, "/invocations", "post")
    operation["requestBody"] = {
        "required": True,
        "content": {
            CSV: {
                "schema": csv_schema(n),
                **({"example": ",".join(map(repr, example)) + "\n"} if example else {}),
            },
            JSON: {"schema": predict_json, **json_example},
            JSONLINES: {
                "schema": jsonlines_schema(n),
                **({"example": "[" + ",".join(map(repr, example)) + "]\n"} if example else {}),
            },
        },
    }
    target = (
        {
            "type": "string",
            "pattern": f"^\\s*(?:(?:.*/)?(?:{'|'.join(names)})(?:\\.tar\\.gz|\\.tgz)?)?\\s*$",
        }
        if names
        else {"type": "string"}
    )
    operation["parameters"] = [
        {
            "name": TARGET_MODEL_HEADER,
            "in": "header",
            "required": False,
            "schema": target,
            "description": "Model name (any path and a .tar.gz suffix are dropped).",
        },
        {
            "name": CUSTOM_ATTRIBUTES_HEADER,
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
            "description": "`key=value` pairs separated by , or ;: model=, threshold= and "
            "margin= (numbers in [0, 1]), on_out_of_range=flag|refuse; other keys ignored.",
        },
    ]
    _set_responses(
        operation,
        {
            "description": "One prediction per instance, in the Accept-ed format. CSV: "
            "score,label,close_confusion,out_of_range lines, out_of_range being the feature "
            "names separated by ; (empty when none).",
            "content": {
                JSON: predict_ok["content"][JSON],
                CSV: {"schema": {"type": "string"}},
                JSONLINES: {"schema": {"type": "string"}},
            },
        },
        prediction_errors,
    )

    _evaluate(document, build, instance, name_schema, n)
    _reads(document, build, names)
    _framework_errors(document, build)
    return document


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


def _evaluate(
    document: dict[str, Any],
    build: _Builder,
    instance: dict[str, Any],
    name_schema: dict[str, Any],
    n: int | None,
) -> None:
    base = copy.deepcopy(EvaluateRequest.model_json_schema())
    props = base["properties"]
    value = {"type": "number", "minimum": -MAX_OUTCOME_VALUE, "maximum": MAX_OUTCOME_VALUE}
    outcome = {"anyOf": [value, {"type": "array", "items": value, "minItems": 1}]}
    props["cost_matrix"] |= {
        "type": "object",
        "properties": dict.fromkeys(("tp", "fp", "tn", "fn"), outcome),
        "required": ["tp", "fp", "tn", "fn"],
        "additionalProperties": False,
    }
    # The documented variants value binary models (tp, fp, tn, fn): a score margin.
    props["margin"] = {"anyOf": [UNIT_INTERVAL, {"type": "null"}]}
    props["models"] |= {
        "anyOf": [
            {"type": "array", "items": name_schema, "minItems": 1, "uniqueItems": True},
            {"type": "null"},
        ]
    }
    label = {"enum": [0, 1, True, False]}
    props["labels"] |= {"type": "array", "items": label, "minItems": 1}
    props["instances"] |= {"type": "array", "items": instance, "minItems": 1}
    props["scores"] |= {
        "type": "array",
        "items": {"type": "number", "minimum": 0, "maximum": 1},
        "minItems": 1,
    }

    def variant(title: str, drop: Sequence[str], require: Sequence[str]) -> dict[str, Any]:
        schema = copy.deepcopy(base)
        schema["title"] = title
        for key in drop:
            schema["properties"].pop(key)
        schema["required"] = ["cost_matrix", *require]
        return schema

    held_out = variant("EvaluateHeldOut", ("instances", "scores", "labels"), ())
    posted = variant("EvaluateScores", ("instances", "models"), ("scores", "labels"))
    scored = variant("EvaluateInstances", ("scores",), ("instances", "labels"))
    for schema in (held_out, posted, scored):
        build.components[schema["title"]] = schema
    rules = (
        " Rules JSON Schema cannot state: `labels` has one label per score or instance; a "
        "per-instance cost list has one value per instance (for the held-out split, per "
        "held-out instance); query parameters other than `plot` only with a text/csv or "
        "empty body, where tp, fp, tn and fn are all required; a figure (plot, or Accept: "
        "image/png) needs exactly one model; `prevalence` needs both classes among the "
        "labels. Breaking one is a 422 naming the field."
    )
    operation = _operation(document, "/evaluate", "post")
    operation["description"] = operation.get("description", "") + rules
    operation["requestBody"] = {
        "required": False,
        "content": {
            JSON: {
                "schema": {
                    "oneOf": [
                        {"$ref": f"#/components/schemas/{schema['title']}"}
                        for schema in (held_out, posted, scored)
                    ]
                }
            },
            CSV: {"schema": csv_schema(n, labelled=True)},
        },
    }
    _set_responses(
        operation,
        {
            "description": "The evaluation (JSON), or a figure (PNG)",
            "content": {
                JSON: {"schema": build.schema(EvaluateResponse)},
                PNG: {"schema": {"type": "string", "format": "binary"}},
            },
        },
        build.errors(ALL_ERRORS, {422: REFUSALS_422}),
    )
    for parameter in operation.get("parameters", []):
        if parameter["name"] in ("tp", "fp", "tn", "fn"):
            parameter["schema"] = value
        elif parameter["name"] in ("threshold", "margin", "prevalence"):
            parameter["schema"] = UNIT_INTERVAL
        elif parameter["name"] == "models":
            parameter["schema"] = {"type": "array", "items": name_schema, "uniqueItems": True}


def _reads(document: dict[str, Any], build: _Builder, names: Sequence[str]) -> None:
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
        ("/execution-parameters", "get"): (
            ok({JSON: {"schema": build.schema(ExecutionParameters)}}),
            (),
        ),
        ("/metrics", "get"): (ok({"text/plain": {"schema": {"type": "string"}}}), ()),
    }
    for (path, method), (answer, errors) in table.items():
        if path not in document["paths"]:
            continue
        operation = _operation(document, path, method)
        _set_responses(operation, answer, build.errors(errors))
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "path" and parameter["name"] == "name":
                parameter["schema"] = name_schema
            elif parameter["name"] in ("threshold", "margin"):
                parameter["schema"] = UNIT_INTERVAL
