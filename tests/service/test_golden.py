"""The golden file (issue 24): every request of the recorded corpus
(``golden/corpus.py``, 300+ requests over the shipped models: every endpoint, answer
format and refusal) answered byte for byte as recorded in ``golden/answers.jsonl``.

A refactor that is meant to change no behaviour must leave this test passing untouched.
A change that is meant to change an answer re-records (``python -m
tests.service.golden.record``) and the diff of ``answers.jsonl`` is the review of what
changed. What is normalised, and why, is in ``golden/record.py``.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from golden.corpus import build
from golden.record import ANSWERS, client, normalise, send

REQUESTS = build()
RECORDED = {
    answer["name"]: answer
    for answer in map(json.loads, ANSWERS.read_text(encoding="utf-8").splitlines())
}


@pytest.fixture(scope="module")
def golden_client() -> Iterator[Any]:
    with client() as test_client:
        yield test_client


def _pretty(answer: dict[str, Any]) -> list[str]:
    """The answer as lines to diff: a JSON body is shown indented (the comparison itself
    is on the recorded bytes)."""
    shown = dict(answer)
    body = shown.pop("body", None)
    lines = json.dumps(shown, indent=1, sort_keys=True).splitlines()
    if body is not None:
        try:
            lines += json.dumps(json.loads(body), indent=1).splitlines()
        except ValueError:
            lines += body.splitlines()
    return lines


def test_the_record_covers_the_corpus():
    assert sorted(RECORDED) == sorted(r.name for r in REQUESTS)


@pytest.mark.parametrize("request_", REQUESTS, ids=[r.name for r in REQUESTS])
def test_answer_is_byte_identical_to_the_record(golden_client, request_):
    expected = RECORDED[request_.name]
    got = normalise(request_, send(golden_client, request_))
    if got != expected:
        diff = "\n".join(
            difflib.unified_diff(
                _pretty(expected), _pretty(got), "recorded", "now", n=2, lineterm=""
            )
        )
        pytest.fail(f"{request_.method} {request_.path} ({request_.name}) changed:\n{diff}")
