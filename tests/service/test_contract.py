"""OpenAPI = behaviour: schemathesis against the app in-process, every phase (examples,
coverage, fuzzing, stateful) and every check, on the shipped models. The run must
generate at least 2,000 cases and find no failure and no server error; the only refusals
of a schema-valid request it accepts are the two the document states (see _contract.py).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest
import schemathesis
from _contract import config, install_evaluate_rules, run
from _servicekit import SHIPPED, free_port
from fastapi.testclient import TestClient
from test_service_process import serve_command, wait_for_ping

from costaware.card import read_card
from service.app import create_app
from service.settings import Settings

MODELS = ("builtin", "custom-5to1", "medical", "tuned")


def held_out_sizes() -> dict[str, int]:
    return {name: len(read_card(SHIPPED / name).held_out.labels) for name in MODELS}


def test_schemathesis_in_process_finds_nothing():
    app = create_app(Settings(model_dir=SHIPPED))
    with TestClient(app):  # runs the lifespan: the registry is loaded
        schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config(10))
        install_evaluate_rules(schema, held_out_sizes())
        outcome = run(schema)
    report = "\n".join(outcome.failures + outcome.errors)
    assert outcome.failures == [] and outcome.errors == [], report
    assert outcome.server_errors == 0, outcome.statuses
    assert outcome.cases >= 2000, outcome.cases
    assert set(outcome.phases) >= {"examples", "coverage", "fuzzing", "stateful"}
    assert outcome.phases["stateful"] == "success", outcome.phases
    # Valid requests were answered, not only refused: every operation saw a 200.
    answered = {(method, path) for method, path, status in outcome.statuses if status == 200}
    for operation in [("POST", "/predict"), ("POST", "/invocations"), ("POST", "/evaluate")]:
        assert operation in answered, sorted(answered)


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[str]:
    """The real ``serve`` process on the shipped models, on a free loopback port."""
    port = free_port()
    env = {
        **os.environ,
        "COSTAWARE_PORT": str(port),
        "COSTAWARE_HOST": "127.0.0.1",
        "COSTAWARE_MODEL_DIR": str(SHIPPED),
        "COSTAWARE_ACCESS_LOG": "false",
    }
    env.pop("SAGEMAKER_BIND_TO_PORT", None)
    process = subprocess.Popen(
        serve_command(),
        env=env,
        cwd=tmp_path_factory.mktemp("cwd"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_ping(base, process)
        yield base
    finally:
        process.terminate()
        process.communicate(timeout=30)


def test_schemathesis_against_the_serve_process_finds_nothing(served):
    schema = schemathesis.openapi.from_url(f"{served}/openapi.json", config=config(3, seed=2))
    install_evaluate_rules(schema, held_out_sizes())
    outcome = run(schema)
    report = "\n".join(outcome.failures + outcome.errors)
    assert outcome.failures == [] and outcome.errors == [], report
    assert outcome.server_errors == 0, outcome.statuses
    assert outcome.phases["stateful"] == "success", outcome.phases
    assert outcome.cases >= 1000, outcome.cases
