"""The V2 REST adapter in-process: the direct path (service.middleware) and FastAPI's
router give the same bytes, headers and metric samples for answers and refusals; a
replaced model's new version is in the answer and in the metadata; the other protocols'
answers are untouched by the V2 routes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import test_direct_routes
from _servicekit import LogisticSpec, write_model
from fastapi.testclient import TestClient

from service.app import create_app
from service.routes.common import DirectLanes
from service.settings import Settings

ROWS = np.random.default_rng(5).normal(0, 2, size=(3, 30)).round(3)
WINE = np.random.default_rng(5).normal(5, 2, size=(2, 13)).round(3)


def _infer(x: np.ndarray, **fields) -> bytes:
    tensor = {"name": "features", "datatype": "FP64", "shape": list(x.shape), "data": x.tolist()}
    return json.dumps({"inputs": [tensor], **fields}).encode()


def _binary(x: np.ndarray) -> tuple[bytes, dict[str, str]]:
    raw = x.astype("<f4").tobytes()
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "features",
                    "datatype": "FP32",
                    "shape": list(x.shape),
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    return head + raw, {"Inference-Header-Content-Length": str(len(head))}


def _cases() -> list[tuple[str, bytes, dict[str, str]]]:
    binary, headers = _binary(ROWS)
    return [
        ("/v2/models/builtin/infer", _infer(ROWS, id="a"), {}),
        ("/v2/models/builtin/infer", _infer(ROWS), {"content-type": "application/json"}),
        ("/v2/models/builtin/infer", binary, headers),
        (
            "/v2/models/builtin/infer",
            _infer(ROWS, parameters={"cost_tp": 1, "cost_fp": -1, "cost_tn": 0, "cost_fn": -9}),
            {},
        ),
        (
            "/v2/models/builtin/infer",
            _infer(
                ROWS,
                outputs=[{"name": "label"}, {"name": "score", "parameters": {"binary_data": True}}],
            ),
            {},
        ),
        ("/v2/models/wine/infer", _infer(WINE), {}),
        ("/v2/models/builtin/infer", _infer(WINE), {}),
        ("/v2/models/builtin/infer", b"{", {}),
        ("/v2/models/builtin/infer", b"[]", {"content-type": "text/plain"}),
        ("/v2/models/nope/infer", _infer(ROWS), {}),
        ("/v2/models/builtin/versions/0/infer", _infer(ROWS), {}),
        ("/v2/models/builtin/infer", binary, {"Inference-Header-Content-Length": "999999"}),
    ]


# The direct and the routed app on the shipped models, as test_direct_routes has them.
clients = test_direct_routes.clients


def _metrics(client: TestClient) -> list[str]:
    return test_direct_routes.comparable_metrics(client.get("/metrics").text)


_UUID7 = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def _without_ids(content: bytes) -> bytes:
    return _UUID7.sub(b"<prediction id of 36 characters here.>"[:36], content)


def test_direct_and_routed_answer_alike(clients) -> None:
    direct, routed = clients
    # The infer routes are in the direct lane, found by template.
    lanes = DirectLanes(direct.app.routes)
    found = lanes.find("POST", "/v2/models/wine/versions/7/infer")
    assert found is not None and found[0] == "/v2/models/{name}/versions/{version}/infer"
    assert found[2] == {"name": "wine", "version": "7"}
    statuses = set()
    for path, body, headers in _cases():
        a = direct.post(path, content=body, headers=headers)
        b = routed.post(path, content=body, headers=headers)
        assert a.status_code == b.status_code, (path, a.text)
        # Each answer's generated prediction ids differ (same length, so every size holds).
        assert _without_ids(a.content) == _without_ids(b.content), path
        assert a.headers.multi_items() == b.headers.multi_items(), path
        statuses.add(a.status_code)
    assert statuses == {200, 400, 404}
    assert _metrics(direct) == _metrics(routed)
    assert any(
        'endpoint="/v2/models/{name}/infer",model="wine"' in line for line in _metrics(direct)
    )


def test_binary_answer_layout(clients) -> None:
    direct, _ = clients
    body, headers = _binary(ROWS)
    answer = direct.post("/v2/models/builtin/infer", content=body, headers=headers)
    length = int(answer.headers["inference-header-content-length"])
    head = json.loads(answer.content[:length])
    sizes = [item["parameters"]["binary_data_size"] for item in head["outputs"]]
    assert length + sum(sizes) == len(answer.content)
    assert head["outputs"][0]["name"] == "score"
    score = np.frombuffer(answer.content[length : length + sizes[0]], "<f4")
    plain = direct.post("/v2/models/builtin/infer", content=_infer(ROWS.astype(np.float32)))
    assert plain.headers["content-type"] == "application/json"
    assert "inference-header-content-length" not in plain.headers
    data = plain.json()["outputs"][0]["data"]
    assert np.array_equal(score, np.array(data, dtype=np.float32))


def _write(folder: Path, version: str, seed: int) -> None:
    write_model(folder, "medical", LogisticSpec.random(seed))
    card = json.loads((folder / "model-card.json").read_text())
    card["version"] = version
    (folder / "model-card.json").write_text(json.dumps(card))


def test_a_replaced_model_answers_with_its_new_version(tmp_path: Path) -> None:
    _write(tmp_path / "medical", "m1", 1)
    key = "v2-admin-key-0123456789"
    app = create_app(Settings(model_dir=tmp_path, default_model="medical", admin_keys=key))
    with TestClient(app) as client:
        first = client.post("/v2/models/medical/infer", content=_infer(ROWS)).json()
        assert first["model_version"] == first["parameters"]["version"] == "m1"
        _write(tmp_path / "medical", "m2", 2)
        loaded = client.post("/models/medical/load", headers={"Authorization": f"Bearer {key}"})
        assert loaded.status_code == 200, loaded.text
        second = client.post("/v2/models/medical/infer", content=_infer(ROWS)).json()
        assert second["model_version"] == second["parameters"]["version"] == "m2"
        assert first["outputs"][0]["data"] != second["outputs"][0]["data"]
        assert client.get("/v2/models/medical").json()["versions"] == ["m2"]
        assert client.get("/v2/models/medical/versions/m1/ready").status_code == 404
        assert client.get("/v2/models/medical/versions/m2/ready").status_code == 200
