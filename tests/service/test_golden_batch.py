"""The golden batch outputs (issue 24): every ``python -m service.batch`` job of
``golden/batch.py`` (score and evaluate, binary and multiclass, CSV and Parquet output,
refusals) on the suite's session cluster gives exactly the recorded exit status, stdout,
refusal line and output files (``golden/batch.jsonl``; re-record with ``python -m
tests.service.golden.batch``)."""

from __future__ import annotations

import difflib
import json

import pytest
from golden.batch import JOBS, RECORD, run

RECORDED = {
    answer["name"]: answer
    for answer in map(json.loads, RECORD.read_text(encoding="utf-8").splitlines())
}


def test_the_record_covers_the_jobs():
    assert sorted(RECORDED) == sorted(JOBS)


@pytest.mark.parametrize("name", list(JOBS))
def test_batch_output_is_identical_to_the_record(cluster, name):
    got = run(name, cluster.scheduler.address)
    expected = RECORDED[name]
    if got != expected:
        diff = "\n".join(
            difflib.unified_diff(
                json.dumps(expected, indent=1, sort_keys=True).splitlines(),
                json.dumps(got, indent=1, sort_keys=True).splitlines(),
                "recorded",
                "now",
                n=2,
                lineterm="",
            )
        )
        pytest.fail(f"batch job {name!r} ({' '.join(JOBS[name])}) changed:\n{diff}")
