"""docker-compose.yml against the Compose Specification's JSON schema, and against our images."""

from __future__ import annotations

import copy
import hashlib
import json
import re

import jsonschema
import numpy as np
import pytest
import yaml
from _containerfiles import REPO, parse_dockerfile

SCHEMA_PATH = REPO / "tests/containers/data/compose-spec.json"
# Recorded in tests/containers/data/README.md: a changed schema file is a deliberate refresh.
SCHEMA_SHA256 = "d549057ebc2925f39f62799eab0db7b9e2c18b35b6c00595199116da3ed10e64"


@pytest.fixture(scope="module")
def schema() -> dict:
    raw = SCHEMA_PATH.read_bytes()
    assert hashlib.sha256(raw).hexdigest() == SCHEMA_SHA256
    return json.loads(raw)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))


def _validator(schema: dict) -> jsonschema.protocols.Validator:
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def test_compose_file_is_valid_against_the_compose_spec(schema, compose):
    errors = sorted(_validator(schema).iter_errors(compose), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_the_schema_check_is_not_vacuous(schema, compose):
    broken = copy.deepcopy(compose)
    broken["services"]["api"]["healthcheck"]["intervall"] = "10s"
    assert list(_validator(schema).iter_errors(broken))
    broken = copy.deepcopy(compose)
    broken["services"]["api"]["ports"] = "8080:8080"
    assert list(_validator(schema).iter_errors(broken))


def _default(value: str) -> str:
    """Resolve ``${VAR:-default}`` interpolation to the default, as with an empty environment."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)


def test_api_serves_the_models_volume_read_only(compose):
    api = compose["services"]["api"]
    assert api["build"]["target"] == "serve"
    assert "profiles" not in api, "`docker compose up` must start the api"
    assert [_default(p).split(":")[-1] for p in api["ports"]] == ["8080"]
    assert _default(api["ports"][0]).split(":")[0] == "8080"
    assert all(key.startswith("COSTAWARE_") for key in api["environment"])
    (mount,) = [v for v in api["volumes"] if v["source"] == "models"]
    assert mount["type"] == "volume" and mount["read_only"] is True
    # The API reads models where the volume is mounted.
    assert api["environment"]["COSTAWARE_MODEL_DIR"] == mount["target"]
    # Mounted over the baked-in models, so a fresh volume starts as a copy of them.
    dockerfile = parse_dockerfile(REPO / "Dockerfile")
    assert dockerfile.image_path_to_repo("serve", mount["target"]) == REPO / "models"


def test_api_healthcheck_pings_with_what_the_image_has(compose):
    test = compose["services"]["api"]["healthcheck"]["test"]
    assert test[0] == "CMD"
    dockerfile = parse_dockerfile(REPO / "Dockerfile")
    healthcheck = dockerfile.effective("serve", "HEALTHCHECK")
    assert json.loads(healthcheck.args.split("CMD", 1)[1]) == test[1:]


def test_trainer_is_behind_a_profile_and_writes_the_same_volume(compose):
    api = compose["services"]["api"]
    trainer = compose["services"]["trainer"]
    assert trainer["build"]["target"] == "train"
    assert trainer["profiles"] == ["train"]
    (mount,) = [v for v in trainer["volumes"] if v.get("source") == "models"]
    assert mount["type"] == "volume" and not mount.get("read_only", False)
    base = trainer["environment"]["COSTAWARE_SAGEMAKER_BASE"]
    assert mount["target"] == f"{base}/model", "the trainer writes <base>/model/<name>/"
    assert [v["source"] for v in api["volumes"]] == ["models"]
    assert "models" in compose["volumes"]
    (inputs,) = [v for v in trainer["volumes"] if v["target"] == f"{base}/input"]
    host_dir = REPO / _default(inputs["source"])
    assert (host_dir / "config/hyperparameters.json").is_file()
    hyperparameters = json.loads((host_dir / "config/hyperparameters.json").read_text())
    assert all(isinstance(value, str) for value in hyperparameters.values()), (
        "SageMaker sends strings"
    )
    assert list((host_dir / "data/train").glob("*.csv"))


def test_trainer_sample_input_is_the_reference_data_label_first():
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    table = np.loadtxt(
        REPO / "docker/train-input/data/train/reference.csv", delimiter=",", dtype=np.float64
    )
    np.testing.assert_array_equal(table[:, 0], 1 - data.target)  # malignant = 1
    np.testing.assert_array_equal(table[:, 1:], data.data)


def test_replicas_share_one_postgres_behind_a_profile(compose):
    services = compose["services"]
    replicas = [services["api-replica-1"], services["api-replica-2"]]
    assert services["postgres"]["profiles"] == ["replicas"]
    assert all(replica["profiles"] == ["replicas"] for replica in replicas)
    logs = {replica["environment"]["COSTAWARE_DECISION_LOG"] for replica in replicas}
    assert len(logs) == 1 and logs.pop().startswith("postgresql+psycopg://")
    assert all(
        replica["depends_on"]["postgres"]["condition"] == "service_healthy" for replica in replicas
    )
