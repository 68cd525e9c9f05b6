"""API keys in the real ``serve`` process: the whole matrix of paths and keys, with
``/metrics`` guarded and open, keys from a file and from the environment; no key in the
log."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from _servicekit import DATA, SHIPPED, csv_body, running_serve, serve_command

from costaware.card import read_any_card

INFERENCE_KEYS = ("inference-key-7Gq2", "second.inference~key+/=")
ADMIN_KEY = "admin-key-Zx81_p"
WRONG_KEY = "inference-key-7Gq3"
ROW = np.linspace(1, 30, 30)
CSV = {"content-type": "text/csv"}

GUARDED = [
    ("POST", "/predict", {"json": {"instances": [ROW.tolist()]}}),
    (
        "POST",
        "/invocations",
        {"content": csv_body(ROW[None]), "headers": {"content-type": "text/csv"}},
    ),
    ("POST", "/evaluate", {"content": (DATA / "evaluate_reference.json").read_bytes()}),
    ("GET", "/models", {}),
    ("GET", "/models/medical", {}),
    ("GET", "/models/medical/distribution.png", {}),
    ("GET", "/execution-parameters", {}),
    ("POST", "/outcomes", {"json": {"outcomes": [{"id": "nobody", "label": 1}]}}),
    ("GET", "/models/medical/value", {}),
]
# The Open Inference Protocol's paths (service.routes.v2), the medical model's.
V2_INFER = {
    "json": {
        "inputs": [{"name": "features", "datatype": "FP64", "shape": [1, 30], "data": ROW.tolist()}]
    }
}
V2_MODEL = f"/v2/models/medical/versions/{read_any_card(SHIPPED / 'medical').version}"
GUARDED += [
    ("GET", "/v2", {}),
    ("GET", "/v2/models/medical", {}),
    ("GET", "/v2/models/medical/ready", {}),
    ("GET", V2_MODEL, {}),
    ("GET", f"{V2_MODEL}/ready", {}),
    ("POST", "/v2/models/medical/infer", V2_INFER),
    ("POST", f"{V2_MODEL}/infer", V2_INFER),
]
V2_TEMPLATED = {
    "/v2/models/{name}",
    "/v2/models/{name}/ready",
    "/v2/models/{name}/infer",
    "/v2/models/{name}/versions/{version}",
    "/v2/models/{name}/versions/{version}/ready",
    "/v2/models/{name}/versions/{version}/infer",
}
OPEN = [
    "/ping",
    "/health/live",
    "/health/ready",
    "/v2/health/live",
    "/v2/health/ready",
    "/docs",
    "/openapi.json",
    "/explorer",
]
ADMIN = ["/models/builtin/load", "/models/custom-5to1/unload", "/models/custom-5to1/load"]


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


@pytest.fixture(scope="module", params=["metrics guarded", "metrics open"])
def server(request, tmp_path_factory) -> Iterator[tuple[str, subprocess.Popen, bool]]:
    guarded = request.param == "metrics guarded"
    cwd = tmp_path_factory.mktemp("cwd")
    if guarded:  # keys from a file, as from a Docker secret
        keys_file = cwd / "keys"
        keys_file.write_text(f"# inference keys\n{INFERENCE_KEYS[0]}\n\n{INFERENCE_KEYS[1]}\n")
        keys = {"COSTAWARE_API_KEYS_FILE": str(keys_file), "COSTAWARE_METRICS_AUTH": "true"}
    else:
        keys = {"COSTAWARE_API_KEYS": ",".join(INFERENCE_KEYS)}
    with running_serve(SHIPPED, cwd, COSTAWARE_ADMIN_KEYS=ADMIN_KEY, **keys) as (base, process):
        yield base, process, guarded


def call(base: str, method: str, path: str, key: str | None = None, **kwargs) -> httpx.Response:
    headers = {**kwargs.pop("headers", {}), **(bearer(key) if key else {})}
    return httpx.request(method, base + path, headers=headers, timeout=30, **kwargs)


def assert_unauthorized(response: httpx.Response, invalid: bool) -> None:
    assert response.status_code == 401, response.text
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    assert ('error="invalid_token"' in challenge) == invalid
    body = response.json()
    if response.request.url.path.startswith("/v2"):
        # The Open Inference Protocol's error body, with the same message.
        assert set(body) == {"error"} and "API key" in body["error"]
    else:
        assert set(body) == {"error", "detail"} and body["error"] == "unauthorized"


@pytest.mark.parametrize(("method", "path", "kwargs"), GUARDED, ids=[p for _, p, _ in GUARDED])
def test_guarded_paths_need_a_valid_key(server, method, path, kwargs):
    base, _, _ = server
    assert_unauthorized(call(base, method, path, **kwargs), invalid=False)
    assert_unauthorized(call(base, method, path, WRONG_KEY, **kwargs), invalid=True)
    basic = call(base, method, path, headers={"authorization": "Basic YWRtaW46YWRtaW4="})
    assert_unauthorized(basic, invalid=False)
    for key in (*INFERENCE_KEYS, ADMIN_KEY):
        assert call(base, method, path, key, **kwargs).status_code == 200


@pytest.mark.parametrize("path", OPEN)
def test_open_paths_need_no_key(server, path):
    base, _, _ = server
    assert call(base, "GET", path).status_code == 200
    assert call(base, "GET", path, WRONG_KEY).status_code == 200


def test_the_explorer_page_and_its_assets_are_open(server):
    base, _, _ = server
    assert call(base, "GET", "/").status_code == 307
    assert call(base, "GET", "/explorer/assets/explorer.js").status_code == 200


def test_metrics_guarded_only_when_asked(server):
    base, _, guarded = server
    if guarded:
        assert_unauthorized(call(base, "GET", "/metrics"), invalid=False)
        assert_unauthorized(call(base, "GET", "/metrics", WRONG_KEY), invalid=True)
    else:
        assert call(base, "GET", "/metrics").status_code == 200
    for key in (INFERENCE_KEYS[0], ADMIN_KEY):
        assert call(base, "GET", "/metrics", key).status_code == 200


def test_admin_paths_need_an_admin_key(server):
    base, _, _ = server
    for path in ADMIN:
        assert_unauthorized(call(base, "POST", path), invalid=False)
        assert_unauthorized(call(base, "POST", path, WRONG_KEY), invalid=True)
        for key in INFERENCE_KEYS:
            forbidden = call(base, "POST", path, key)
            assert forbidden.status_code == 403
            assert forbidden.json()["error"] == "forbidden"
        assert call(base, "POST", path, ADMIN_KEY).status_code == 200


def test_unknown_paths_are_guarded_too(server):
    base, _, _ = server
    assert_unauthorized(call(base, "GET", "/no-such-path"), invalid=False)
    assert call(base, "GET", "/no-such-path", INFERENCE_KEYS[0]).status_code == 404


def test_admin_endpoints_are_off_without_admin_keys(tmp_path):
    with running_serve(SHIPPED, tmp_path) as (base, _):
        assert call(base, "POST", "/predict", json={"instances": [ROW.tolist()]}).status_code == 200
        for key in (None, ADMIN_KEY):
            refused = call(base, "POST", "/models/medical/load", key)
            assert refused.status_code == 403
            assert "no admin key is configured" in refused.json()["detail"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"COSTAWARE_API_KEYS": "good-key,bad key"}, "key 2 of 2 has a character outside"),
        ({"COSTAWARE_ADMIN_KEYS": "ünïcode"}, "key 1 of 1 has a character outside"),
        ({"COSTAWARE_API_KEYS_FILE": "/nonexistent/keys"}, "cannot read the keys file"),
        ({"COSTAWARE_METRICS_AUTH": "true"}, "needs COSTAWARE_API_KEYS"),
    ],
)
def test_bad_key_settings_stop_start_up_without_showing_a_key(env, message):
    result = subprocess.run(
        serve_command(),
        env={**_clean_env(), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert message in line
    assert "bad key" not in line and "good-key" not in line and "ünïcode" not in line


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("COSTAWARE_")}


def test_openapi_offers_the_bearer_scheme(server):
    base, _, guarded = server
    document = json.loads(call(base, "GET", "/openapi.json").content)
    assert document["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": document["components"]["securitySchemes"]["bearer"]["description"],
    }
    paths = document["paths"]
    assert paths["/models/{name}/load"]["post"]["security"] == [{"bearer": []}]
    assert paths["/predict"]["post"]["security"] == [{"bearer": []}]
    assert "401" in paths["/predict"]["post"]["responses"]
    assert "security" not in paths["/ping"]["get"]
    assert ("security" in paths["/metrics"]["get"]) == guarded


def test_paths_in_the_document_match_the_matrix():
    # Every documented operation is in one of the matrix's lists, so a new route cannot
    # slip past this test unguarded.
    from service.app import create_app
    from service.settings import Settings

    document = create_app(Settings(model_dir=Path(SHIPPED))).openapi()
    tested = {p for _, p, _ in GUARDED} | set(OPEN) | {"/metrics"}
    admin = {"/models/{name}/load", "/models/{name}/unload"}
    templated = {
        "/models/{name}",
        "/models/{name}/distribution.png",
        "/models/{name}/value",
    }
    documented = set(document["paths"])
    assert documented - tested - admin - templated - V2_TEMPLATED == set()


def test_no_key_reaches_the_log(server):
    # Last: it stops the server.
    base, process, _ = server
    call(base, "POST", "/predict", WRONG_KEY, json={"instances": [ROW.tolist()]})
    call(base, "POST", "/models/builtin/load", INFERENCE_KEYS[0])
    process.terminate()
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 0
    assert "POST /predict" in stdout  # the access log was on
    for key in (*INFERENCE_KEYS, ADMIN_KEY, WRONG_KEY):
        assert key not in stdout + stderr


def test_the_compose_env_file_example_is_valid_and_sets_no_key(monkeypatch):
    from _servicekit import REPO

    from service.settings import Settings

    text = (REPO / "costaware.env.example").read_text()
    pairs = [line.split("=", 1) for line in text.splitlines() if line and line[0] != "#"]
    assert {name for name, _ in pairs} == {
        "COSTAWARE_API_KEYS",
        "COSTAWARE_ADMIN_KEYS",
        "COSTAWARE_METRICS_AUTH",
    }
    for name, value in pairs:
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.inference_keys() == [] and settings.admin_key_values() == []
