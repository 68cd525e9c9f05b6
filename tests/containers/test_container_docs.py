"""docs/CONTAINERS.md names only targets, services, profiles and variables that exist."""

from __future__ import annotations

import re

import yaml
from _containerfiles import REPO, parse_dockerfile

DOC = (REPO / "docs/CONTAINERS.md").read_text(encoding="utf-8")
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))
DOCKERFILE = parse_dockerfile(REPO / "Dockerfile")


def _known_variables() -> set[str]:
    from service.settings import Settings

    names = set()
    for name, field in Settings.model_fields.items():
        names.add(f"COSTAWARE_{name.upper()}")
        alias = field.validation_alias
        for choice in getattr(alias, "choices", []):
            if isinstance(choice, str) and choice.isupper():
                names.add(choice)
    sources = [
        (REPO / "docker-compose.yml").read_text(encoding="utf-8"),
        (REPO / "docker/entrypoint").read_text(encoding="utf-8"),
        (REPO / "docker/healthcheck.py").read_text(encoding="utf-8"),
        (REPO / "training/sagemaker.py").read_text(encoding="utf-8"),
    ]
    for text in sources:
        names.update(re.findall(r"\b(?:COSTAWARE|SAGEMAKER)_[A-Z_]+\b", text))
    return names


def test_targets_services_and_profiles_exist():
    targets = re.findall(r"--target (\S+)", DOC)
    assert targets and all(DOCKERFILE.has_stage(t) for t in targets), targets
    for profile, service in re.findall(r"--profile (\S+) run (?:--rm )?(\S+)", DOC):
        assert profile in COMPOSE["services"][service].get("profiles", []), (profile, service)
    for service in re.findall(r"docker compose restart (\S+)", DOC):
        assert service in COMPOSE["services"], service


def test_variables_exist():
    known = _known_variables()
    mentioned = set(re.findall(r"\b(?:COSTAWARE|SAGEMAKER)_[A-Z_]+\b", DOC))
    assert mentioned <= known, sorted(mentioned - known)


def test_pinned_versions_match_the_dockerfile():
    assert DOCKERFILE.global_args["PYTHON_IMAGE"] in DOC
    (uv,) = set(re.findall(r"uv==(\S+)", (REPO / "Dockerfile").read_text()))
    assert f"uv {uv}" in DOC
    assert "com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true" in DOC


def test_sample_hyperparameters_are_as_documented():
    import json

    hyperparameters = json.loads(
        (REPO / "docker/train-input/config/hyperparameters.json").read_text(encoding="utf-8")
    )
    assert f"named `{hyperparameters['name']}`" in DOC
    assert f"`fn_cost` {hyperparameters['fn_cost']}" in DOC
