"""OpenAPI = behaviour: schemathesis against the app in-process, every phase (examples,
coverage, fuzzing, stateful) and every check, on the models as shipped (the four binary
models and the multiclass wine model, whose instances and cost matrices differ). The run
must generate at least 2,000 cases and find no failure and no server error; the only
refusals of a schema-valid request it accepts are the two the document states (see
_contract.py). The admin operations run on their own, on a throwaway model folder.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
import schemathesis
from _contract import Served, config, install_rules, run
from _servicekit import SHIPPED, running_serve
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings

SERVED = Served.read(SHIPPED)
PREDICTIONS = [("POST", "/predict"), ("POST", "/invocations"), ("POST", "/evaluate")]
ADMIN = r"^/models/\{name\}/(load|unload)$"
ADMIN_KEY = "contract-admin-key-0123456789"


def without_admin(schema):
    """The admin operations (load and unload) change which models are served, so the
    main runs leave them out; test_admin_operations_on_a_model_folder_of_its_own runs
    them."""
    return schema.exclude(path_regex=ADMIN)


def assert_found_nothing(outcome, *, min_cases: int) -> None:
    report = "\n".join(outcome.failures + outcome.errors)
    assert outcome.failures == [] and outcome.errors == [], report
    assert outcome.server_errors == 0, outcome.statuses
    assert outcome.cases >= min_cases, outcome.cases
    assert set(outcome.phases) >= {"examples", "coverage", "fuzzing", "stateful"}
    assert outcome.phases["stateful"] == "success", outcome.phases
    # Valid requests were answered, not only refused: every operation saw a 200, and
    # every shipped model (the multiclass wine too) scored a /predict request.
    answered = {(method, path) for method, path, status in outcome.statuses if status == 200}
    for operation in PREDICTIONS:
        assert operation in answered, sorted(answered)
    # The Open Inference Protocol's infer answered too (the binary and multiclass models).
    v2_answered = {path.split("/")[3] for method, path in answered if path.endswith("/infer")}
    assert {"wine", SERVED.default} <= v2_answered, sorted(answered)
    scored = {(model, matrix) for path, model, matrix in outcome.scored if path == "/predict"}
    binary = sorted(set(SERVED.features) - SERVED.multiclass)
    for model in ("wine", *binary):
        assert any(name == model for name, _ in scored), (model, outcome.scored)
    # Decisions under posted cost matrices, binary and multiclass, and by threshold.
    assert {("wine", "request"), ("wine", "card"), (SERVED.default, None)} <= scored, scored
    assert any(matrix == "request" for name, matrix in scored if name in binary), scored


def test_schemathesis_in_process_finds_nothing():
    assert "wine" in SERVED.multiclass and len(SERVED.features) == 5
    app = create_app(Settings(model_dir=SHIPPED))
    with TestClient(app):  # runs the lifespan: the registry is loaded
        schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config(10))
        schema = without_admin(schema)
        install_rules(schema, SERVED)
        outcome = run(schema)
    assert_found_nothing(outcome, min_cases=2000)
    # The multiclass model was valued under value_matrix in the query too, on a text/csv
    # body of its rows and on its held-out split.
    evaluated = {(data, kind) for path, data, kind in outcome.scored if path == "/evaluate"}
    assert {("csv", "multiclass"), ("held_out", "multiclass")} <= evaluated, evaluated


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[str]:
    """The real ``serve`` process on the shipped models, on a free loopback port."""
    cwd = tmp_path_factory.mktemp("cwd")
    with running_serve(SHIPPED, cwd, COSTAWARE_ACCESS_LOG="false") as (base, _process):
        yield base


def test_schemathesis_against_the_serve_process_finds_nothing(served):
    schema = schemathesis.openapi.from_url(f"{served}/openapi.json", config=config(3, seed=2))
    schema = without_admin(schema)
    install_rules(schema, SERVED)
    outcome = run(schema)
    assert_found_nothing(outcome, min_cases=1000)


def test_admin_operations_on_a_model_folder_of_its_own(tmp_path):
    """Load and unload with an admin key, on an app of their own (a folder linking the
    shipped models), with the reads that give the stateful phase model names. What a
    schema-valid request gets depends on what is served: 404 for a name with no folder or
    not served (unloaded earlier in the run), 409 for the default model or the last one;
    both are responses the document lists, so this run accepts them, and 422 stays limited
    to the two documented refusals."""
    for name in SERVED.features:
        # Copies: a folder linked to outside the model directory is refused (confinement).
        shutil.copytree(SHIPPED / name, tmp_path / name)
    app = create_app(Settings(model_dir=tmp_path, admin_keys=ADMIN_KEY))
    with TestClient(app):
        schema = schemathesis.openapi.from_asgi(
            "/openapi.json",
            app,
            config=config(
                10,
                expected=("2xx", "404", "409", "422"),
                headers={"Authorization": f"Bearer {ADMIN_KEY}"},
            ),
        )
        schema = schema.include(path_regex=r"^/models(/\{name\}(/(load|unload))?)?$")
        outcome = run(schema)
    report = "\n".join(outcome.failures + outcome.errors)
    assert outcome.failures == [] and outcome.errors == [], report
    assert outcome.server_errors == 0, outcome.statuses
    assert outcome.phases["stateful"] == "success", outcome.phases
    assert outcome.cases >= 100, outcome.cases
    answered = {(method, path.rsplit("/", 1)[-1]) for method, path, status in outcome.statuses}
    ok = {(m, p.rsplit("/", 1)[-1]) for m, p, status in outcome.statuses if status == 200}
    assert {("POST", "load"), ("POST", "unload")} <= ok, sorted(answered)
    # Unloading the default model is refused, and without the key nothing is done.
    assert ("POST", "/models/medical/unload", 409) in outcome.statuses, outcome.statuses
    assert any(status == 401 for _, _, status in outcome.statuses), outcome.statuses
