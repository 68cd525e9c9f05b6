"""The JSON decoding behind /predict and /invocations: orjson on the fast path must give
exactly what the standard library gives, and whatever orjson refuses must still be decided
(accepted or refused with the usual message) as before."""

from __future__ import annotations

import json

import pytest

from service.codecs import decode_csv, decode_json_request, decode_jsonlines
from service.errors import InvalidInputError, MalformedRequestError

VALID_BODIES = [
    b'{"instances": [[17.99, 1.038e1, 122.8, -0.0, 1E-310, 0.1, 3]]}',
    b'{"instances": [[1.7976931348623157e308]], "model": "medical"}',
    b'{"instances": [[123456789012345678901234567890]]}',  # past 64 bits
    b'{"instances": [[1]], "model": "m\\u00e9dical", "threshold": 0.25, "margin": 0}',
    b'{"instances": [["\\ud800"]]}',  # a lone surrogate: orjson refuses, json accepts
    b'{"instances": [[1]], "instances": [[2]]}',  # duplicate keys: the last wins
    b"  \n[[0.30000000000000004, 2.5e-8]]  ",
]


@pytest.mark.parametrize("body", VALID_BODIES)
def test_decoding_equals_the_standard_library(body):
    expected = json.loads(body)
    decoded = decode_json_request(body)
    instances = expected if isinstance(expected, list) else expected["instances"]
    assert _as_floats(decoded.instances) == _as_floats(instances)


def _as_floats(instances: list) -> list:
    # orjson gives an integer past 64 bits as the nearest float, which is what the model's
    # input matrix holds either way; every other value arrives exactly as json gives it.
    return [[float(v) if type(v) in (int, float) else v for v in row] for row in instances]


@pytest.mark.parametrize(
    ("body", "error", "words"),
    [
        (b'{"instances": [[NaN]]}', InvalidInputError, ["NaN is not valid JSON"]),
        (b'{"instances": [[-Infinity]]}', InvalidInputError, ["-Infinity"]),
        (b'{"instances": [[1,]]}', MalformedRequestError, ["line 1, column", "malformed JSON"]),
        # a leading BOM is dropped (service.codecs.body_text); bytes still count it
        (b"\xef\xbb\xbf[[1]]\xff", MalformedRequestError, ["not UTF-8", "byte 8"]),
        (b"[[1]]\xff", MalformedRequestError, ["not UTF-8", "byte 5"]),
        (b"[" * 5000, MalformedRequestError, ["nested too deeply"]),
    ],
)
def test_refusals_name_what_and_where(body, error, words):
    with pytest.raises(error) as caught:
        decode_json_request(body)
    for word in words:
        assert word in str(caught.value)


def test_jsonlines_errors_name_the_line():
    with pytest.raises(MalformedRequestError, match="body line 2: malformed JSON"):
        decode_jsonlines(b"[1, 2]\n[1, \n", ["a", "b"])


def test_a_csv_value_beyond_float32_is_named_as_the_number_it_is():
    with pytest.raises(InvalidInputError) as caught:
        decode_csv(b"1,2\n3,1e39\n", ["a", "b"])
    assert str(caught.value) == "body, row 2, column 2 (b): 1e+39 is outside float32 range"
