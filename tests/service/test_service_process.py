"""The real ``serve`` process over HTTP, and what the service process imports."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest
from _servicekit import REPO, csv_body, free_port

SERVE = Path(sys.executable).parent / "serve"


def serve_command() -> list[str]:
    # The console script SageMaker runs; `python -m service` if this env lacks it.
    return [str(SERVE)] if SERVE.exists() else [sys.executable, "-m", "service"]


def wait_for_ping(base: str, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"serve exited early: {process.communicate()[1]}")
        try:
            if httpx.get(f"{base}/ping", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("serve did not answer /ping in time")


@pytest.fixture(scope="module")
def server(model_dir: Path, tmp_path_factory) -> Iterator[tuple[str, subprocess.Popen]]:
    port = free_port()
    env = {
        **os.environ,
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "COSTAWARE_MODEL_DIR": str(model_dir),
        "COSTAWARE_HOST": "127.0.0.1",
    }
    env.pop("COSTAWARE_PORT", None)
    # Started as SageMaker starts it: the `serve` word, plus an argument we do not know.
    process = subprocess.Popen(
        [*serve_command(), "serve", "--unknown-flag"],
        env=env,
        cwd=tmp_path_factory.mktemp("cwd"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_ping(base, process)
        yield base, process
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_concurrent_requests_each_get_their_own_answer(server, instances):
    # Requests arriving together are scored together (service/batching.py); each must
    # still get exactly the answer it gets alone, bad ones their own error. Runs before
    # the test that stops the server.
    base, _ = server
    bodies = [
        {"model": model, "instances": instances[i : i + 1 + i % 3].tolist()}
        for i in range(len(instances) - 3)
        for model in ("medical", "builtin", "custom-5to1")
    ]
    bodies.insert(10, {"instances": [instances[0].tolist()[:5]]})
    with httpx.Client(base_url=base) as client:
        alone = [client.post("/predict", json=body) for body in bodies]
    with httpx.Client(base_url=base) as client, ThreadPoolExecutor(16) as pool:
        together = list(pool.map(lambda body: client.post("/predict", json=body), bodies))
    assert [r.status_code for r in alone] == [r.status_code for r in together]
    assert alone[10].status_code == 422
    assert sum(r.status_code == 200 for r in together) == len(bodies) - 1
    assert [r.content for r in alone] == [r.content for r in together]


def test_end_to_end_over_http_then_clean_sigterm(server, model_dir, instances):
    base, process = server
    ping = httpx.get(f"{base}/ping")
    assert (ping.status_code, ping.content) == (200, b"")

    predict = httpx.post(f"{base}/predict", json={"instances": instances.tolist()})
    assert predict.status_code == 200
    session = ort.InferenceSession(str(model_dir / "medical" / "model.onnx"))
    expected = session.run(None, {"features": instances.astype(np.float32)})[0].reshape(-1)
    scores = np.array([p["score"] for p in predict.json()["predictions"]], dtype=np.float32)
    np.testing.assert_array_equal(scores, expected)

    invocations = httpx.post(
        f"{base}/invocations",
        content=csv_body(instances),
        headers={"content-type": "text/csv", "accept": "text/csv"},
    )
    assert invocations.status_code == 200
    assert invocations.headers["content-type"].startswith("text/csv")
    lines = invocations.text.splitlines()
    assert len(lines) == len(instances)
    np.testing.assert_array_equal(
        np.array([float(line.split(",")[0]) for line in lines], dtype=np.float32), expected
    )
    for line, score in zip(lines, expected, strict=True):
        _, label, close, _out_of_range = line.split(",")
        assert label == str(int(score >= 0.3))
        assert close == ("true" if abs(float(score) - 0.3) < 0.1 else "false")

    bad = httpx.post(
        f"{base}/invocations", content=b"1,2,x\n", headers={"content-type": "text/csv"}
    )
    assert bad.status_code == 422
    assert httpx.get(f"{base}/ping").status_code == 200

    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert "ignoring unknown arguments: --unknown-flag" in stderr
    assert "Application shutdown complete" in stderr
    assert "Traceback" not in stderr


def test_bad_setting_is_one_line_not_a_traceback():
    env = {**os.environ, "COSTAWARE_WORKERS": "many"}
    result = subprocess.run([*serve_command()], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "WORKERS" in lines[0] and "'many'" in lines[0]


NO_TRAINING_STACK = """
import sys
from service.app import create_app
from service.cli import main
from service.settings import Settings
app = create_app(Settings(model_dir={model_dir!r}))
from fastapi.testclient import TestClient
with TestClient(app) as client:
    assert client.get("/ping").status_code == 200
    client.post("/predict", json={{"instances": [[0.0] * 30]}})
    client.get("/metrics")
    client.get("/docs")
banned = sorted(m for m in sys.modules if m.split(".")[0] in {{"tensorflow", "keras", "tf2onnx"}})
print(",".join(banned))
"""


def test_service_imports_no_training_stack(model_dir):
    """In a fresh interpreter: import the service, build the app, serve a request."""
    result = subprocess.run(
        [sys.executable, "-c", NO_TRAINING_STACK.format(model_dir=str(model_dir))],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
