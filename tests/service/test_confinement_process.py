"""The real ``serve`` process reads nothing outside ``<model dir>/<name>/``, nothing
unbounded and nothing that blocks, and one bad folder never stops it: each red-team
folder of issue 22 (items 3 and 5) is refused with its reason, at start-up and on an
admin load, and the other models are served. What the open endpoints tell a caller
without a key (item 6): ready or not and counts, never the refusals' paths."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from _servicekit import (
    FEATURES,
    SHIPPED,
    LogisticSpec,
    logistic_graph,
    make_card,
    running_serve,
    write_model,
)
from onnx import TensorProto

from costaware.card import MODEL_FILENAME, sha256_file, write_card

API_KEY = "confinement-inference-key-1"
ADMIN_KEY = "confinement-admin-key-2"
KEYS = {"COSTAWARE_API_KEYS": API_KEY, "COSTAWARE_ADMIN_KEYS": ADMIN_KEY}
MAX_MODEL_BYTES = 1024 * 1024
# The bytes the external-data graph would take as its weights: a file in the server's
# working directory, as the README.md.
README = np.linspace(-3, 3, 30, dtype=np.float32).tobytes()
ROW = {"instances": [np.linspace(1, 30, 30).tolist()]}


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def elsewhere(outside: Path, name: str) -> Path:
    """A good model folder outside the model directory, its card naming ``name``."""
    write_model(outside / name, name, LogisticSpec.random(len(name)))
    return outside / name


def good(folder: Path) -> None:
    write_model(folder, folder.name, LogisticSpec.random(len(folder.name)))


def set_card(folder: Path, **onnx: str) -> None:
    card = json.loads((folder / "model-card.json").read_text())
    card["onnx"].update(onnx)
    (folder / "model-card.json").write_text(json.dumps(card))


def absolute(folder: Path, outside: Path) -> str:
    good(folder)
    graph = elsewhere(outside, folder.name) / MODEL_FILENAME
    (folder / MODEL_FILENAME).unlink()
    set_card(folder, file=str(graph))
    return "is an absolute path; it must be a file name in the folder"


def dot_dot(folder: Path, outside: Path) -> str:
    good(folder)
    graph = elsewhere(outside, folder.name) / MODEL_FILENAME
    (folder / MODEL_FILENAME).unlink()
    set_card(folder, file=os.path.relpath(graph, folder))
    return "is a path; it must be a file name in the folder"


def dev_zero(folder: Path, outside: Path) -> str:
    good(folder)
    set_card(folder, file="/dev/zero")
    return "is an absolute path; it must be a file name in the folder"


def linked_folder(folder: Path, outside: Path) -> str:
    folder.symlink_to(elsewhere(outside, folder.name), target_is_directory=True)
    return "a link to a place outside the model directory"


def linked_graph(folder: Path, outside: Path) -> str:
    good(folder)
    (folder / MODEL_FILENAME).unlink()
    (folder / MODEL_FILENAME).symlink_to(elsewhere(outside, folder.name) / MODEL_FILENAME)
    return "the model file named by the card is a symbolic link"


def linked_card(folder: Path, outside: Path) -> str:
    good(folder)
    (folder / "model-card.json").unlink()
    (folder / "model-card.json").symlink_to(elsewhere(outside, folder.name) / "model-card.json")
    return "the model card is a symbolic link"


def fifo_graph(folder: Path, outside: Path) -> str:
    good(folder)
    (folder / MODEL_FILENAME).unlink()
    os.mkfifo(folder / MODEL_FILENAME)
    return "the model file named by the card is not a regular file"


def fifo_card(folder: Path, outside: Path) -> str:
    good(folder)
    (folder / "model-card.json").unlink()
    os.mkfifo(folder / "model-card.json")
    return "the model card is not a regular file"


def oversized_graph(folder: Path, outside: Path) -> str:
    good(folder)
    os.truncate(folder / MODEL_FILENAME, 2 * MAX_MODEL_BYTES)  # sparse: no disk used
    return f"has {2 * MAX_MODEL_BYTES} bytes, more than {MAX_MODEL_BYTES}"


def external_data(folder: Path, outside: Path) -> str:
    """The logistic graph with its weights in ``README.md``, a file of the server's working
    directory (onnxruntime resolves it there for a graph given as bytes)."""
    folder.mkdir()
    model = logistic_graph(LogisticSpec.random(3))
    weights = next(t for t in model.graph.initializer if t.name == "w")
    weights.ClearField("raw_data")
    weights.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "README.md"), ("offset", "0"), ("length", str(len(README)))):
        entry = weights.external_data.add()
        entry.key, entry.value = key, value
    (folder / MODEL_FILENAME).write_bytes(model.SerializeToString())
    write_card(folder, make_card(folder.name, sha256_file(folder / MODEL_FILENAME), FEATURES))
    return "1 tensors ('w') keep their data in external files"


def nested_card(folder: Path, outside: Path) -> str:
    folder.mkdir()
    (folder / "model-card.json").write_bytes(b"[" * 100_000 + b"]" * 100_000)
    return "unreadable model card (nested too deep)"


def nested_section(folder: Path, outside: Path) -> str:
    """A valid card whose free-form ``tuning`` nests 100 levels: within the parser's
    recursion limit, beyond what the service shows (orjson stops at 255, Python at ~1000)."""
    good(folder)
    card = json.loads((folder / "model-card.json").read_text())
    deep: dict = {}
    for _ in range(99):
        deep = {"deeper": deep}
    card["tuning"] = deep
    (folder / "model-card.json").write_text(json.dumps(card))
    return "nested 101 levels deep, more than 64"


CASES: dict[str, Callable[[Path, Path], str]] = {
    "absolute": absolute,
    "dot-dot": dot_dot,
    "dev-zero": dev_zero,
    "linked-folder": linked_folder,
    "linked-graph": linked_graph,
    "linked-card": linked_card,
    "fifo-graph": fifo_graph,
    "fifo-card": fifo_card,
    "oversized-graph": oversized_graph,
    "external-data": external_data,
    "nested-card": nested_card,
    "nested-section": nested_section,
}


def served_dir(root: Path) -> Path:
    model_dir = root / "models"
    for name in ("medical", "builtin"):
        shutil.copytree(SHIPPED / name, model_dir / name)
    return model_dir


def working_dir(root: Path) -> Path:
    cwd = root / "cwd"
    cwd.mkdir()
    (cwd / "README.md").write_bytes(README)
    return cwd


def serve(model_dir: Path, cwd: Path, **extra: str):
    return running_serve(
        model_dir,
        cwd,
        COSTAWARE_MAX_MODEL_BYTES=str(MAX_MODEL_BYTES),
        COSTAWARE_ACCESS_LOG="false",
        **KEYS,
        **extra,
    )


@pytest.fixture(scope="module")
def started(tmp_path_factory) -> Iterator[tuple[str, Path, Path, dict[str, str]]]:
    """A server started with every bad folder beside two good ones."""
    root = tmp_path_factory.mktemp("started")
    model_dir, outside = served_dir(root), root / "outside"
    reasons = {name: case(model_dir / name, outside) for name, case in CASES.items()}
    with serve(model_dir, working_dir(root)) as (base, _):
        yield base, model_dir, outside, reasons


@pytest.fixture(scope="module")
def loading(tmp_path_factory) -> Iterator[tuple[str, Path, Path]]:
    """A server started with two good folders; the tests add bad ones and load them."""
    root = tmp_path_factory.mktemp("loading")
    model_dir = served_dir(root)
    with serve(model_dir, working_dir(root)) as (base, _):
        yield base, model_dir, root / "outside"


def test_start_up_refuses_each_bad_folder_and_serves_the_others(started):
    base, model_dir, outside, reasons = started
    ready = httpx.get(f"{base}/health/ready", headers=bearer(API_KEY), timeout=10)
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["models"] == ["builtin", "medical"]
    assert body["counts"] == {"models": 2, "refused": len(CASES)}
    refused = body["refused"]
    assert sorted(refused) == sorted(str(model_dir / name) for name in CASES)
    for name, reason in reasons.items():
        assert reason in refused[str(model_dir / name)], name
    # Nothing outside the model directory is named, not even a link's target.
    for reason in refused.values():
        assert str(outside) not in reason and "README" not in reason
    listing = httpx.get(f"{base}/models", headers=bearer(API_KEY), timeout=10).json()
    assert listing["refused"] == refused
    answer = httpx.post(f"{base}/predict", json=ROW, headers=bearer(API_KEY), timeout=10)
    assert answer.status_code == 200 and answer.json()["model"] == "medical"
    for name in CASES:
        named = httpx.post(
            f"{base}/predict", json={**ROW, "model": name}, headers=bearer(API_KEY), timeout=10
        )
        assert named.status_code == 404, name


@pytest.mark.parametrize("name", list(CASES))
def test_an_admin_load_of_a_bad_folder_is_refused_with_its_reason(loading, name):
    base, model_dir, outside = loading
    reason = CASES[name](model_dir / name, outside)
    # Bounded: a load that blocked (a FIFO read) would time out here, not hang the suite.
    response = httpx.post(f"{base}/models/{name}/load", headers=bearer(ADMIN_KEY), timeout=20)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "model_refused"
    assert reason in response.json()["detail"]
    assert str(outside) not in response.json()["detail"]
    listing = httpx.get(f"{base}/models", headers=bearer(API_KEY), timeout=10).json()
    assert [model["name"] for model in listing["models"]] == ["builtin", "medical"]
    assert reason in listing["refused"][str(model_dir / name)]
    answer = httpx.post(f"{base}/predict", json=ROW, headers=bearer(API_KEY), timeout=10)
    assert answer.status_code == 200 and answer.json()["model"] == "medical"
    assert httpx.get(f"{base}/ping", timeout=10).status_code == 200


@pytest.mark.parametrize("key", [None, "not-a-key"])
def test_health_ready_without_a_valid_key_says_ready_and_counts_only(started, key):
    base, _, _, _ = started
    ready = httpx.get(f"{base}/health/ready", headers=bearer(key) if key else {}, timeout=10)
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ready", "counts": {"models": 2, "refused": len(CASES)}}


def test_not_ready_open_endpoints_name_no_path(tmp_path):
    model_dir = tmp_path / "models"
    model_dir.mkdir()
    linked_folder(model_dir / "linked", tmp_path / "outside")
    with serve(model_dir, working_dir(tmp_path), probe="/health/live") as (base, _):
        ping = httpx.get(f"{base}/ping", timeout=10)
        assert ping.status_code == 503
        assert ping.json() == {"error": "not_ready", "detail": "no model loaded"}
        ready = httpx.get(f"{base}/health/ready", timeout=10)
        assert ready.status_code == 503
        assert ready.json() == {
            "error": "not_ready",
            "detail": "no model loaded (1 model folders refused)",
        }
        keyed = httpx.get(f"{base}/health/ready", headers=bearer(API_KEY), timeout=10)
        assert keyed.status_code == 503
        assert str(model_dir / "linked") in keyed.json()["detail"]
        assert "outside the model directory" in keyed.json()["detail"]
        assert str(tmp_path / "outside") not in keyed.json()["detail"]
