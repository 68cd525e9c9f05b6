"""The hand-written instance decoder (service.codecs.instances_to_matrix, kept for speed
and for messages naming row, column and feature) and the instance schema the OpenAPI
document shows (service.schemas.instance_schema) agree: every instance the schema accepts
is decoded, every one it rejects is refused with a 422. Edge cases here; schemathesis
generates thousands more in test_contract.py."""

from __future__ import annotations

import jsonschema
import pytest

from service.codecs import instances_to_matrix
from service.errors import InvalidInputError
from service.schemas import FLOAT32_MAX, PredictRequest, instance_schema

FEATURES = ["a", "b", "c"]
BIG_INT = int(FLOAT32_MAX)  # float32's maximum, exactly, as a JSON integer

INSTANCES = [
    [0, 1, 2],
    [0.5, -1e-300, 1e30],
    [FLOAT32_MAX, -FLOAT32_MAX, 0],
    [BIG_INT, -BIG_INT, 7],
    [BIG_INT + 1, 0, 0],  # rounds to float32's maximum as a float, yet is past it
    [3.5e38, 0, 0],
    [1, 2],
    [1, 2, 3, 4],
    [],
    [True, 0, 0],
    ["1", 0, 0],
    [None, 0, 0],
    [[1], 0, 0],
    {"a": 1, "b": 2, "c": 3},
    {"a": 1, "b": 2},
    {"a": 1, "b": 2, "c": 3, "d": 4},
    {"a": 1, "b": 2, "c": "x"},
    {"a": 1, "b": 2, "c": -FLOAT32_MAX},
    {},
    "1,2,3",
    3,
    None,
]


@pytest.mark.parametrize("instance", INSTANCES, ids=[repr(i)[:40] for i in INSTANCES])
def test_decoder_and_schema_agree(instance):
    schema = instance_schema(FEATURES)
    schema_accepts = jsonschema.Draft202012Validator(schema).is_valid(instance)
    try:
        matrix = instances_to_matrix([instance], FEATURES, "instances")
    except InvalidInputError:
        decoder_accepts = False
    else:
        decoder_accepts = True
        assert matrix.shape == (1, 3)
    assert decoder_accepts == schema_accepts


def test_the_documented_body_is_the_parsing_model():
    schema = PredictRequest.model_json_schema()
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == set(PredictRequest.model_fields)
    threshold = schema["properties"]["threshold"]["anyOf"][0]
    assert (threshold["minimum"], threshold["maximum"]) == (0, 1)
