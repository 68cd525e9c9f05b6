"""The real ``serve`` process over HTTP, and what the service process imports."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest
from _servicekit import REPO, csv_body, running_serve, serve_command


@pytest.fixture(scope="module")
def server(model_dir: Path, tmp_path_factory) -> Iterator[tuple[str, subprocess.Popen]]:
    # Started as SageMaker starts it: the `serve` word, plus an argument we do not know.
    with running_serve(model_dir, tmp_path_factory.mktemp("cwd"), "serve", "--unknown-flag") as s:
        yield s


def test_serves_on_uvloop_and_httptools(server):
    """The standard stack (uvicorn[standard]) is installed with the service and used: the
    running worker reports the loop it runs on and the HTTP implementation that called it."""
    base, _ = server
    assert importlib.util.find_spec("uvloop") and importlib.util.find_spec("httptools")
    live = httpx.get(f"{base}/health/live").json()
    assert live["server"] == {"loop": "uvloop", "http": "httptools"}


def test_loop_and_http_settings_choose_the_stack(model_dir, tmp_path):
    # For debugging: the pure-Python stack on request, named in the start-up log line.
    with running_serve(model_dir, tmp_path, COSTAWARE_LOOP="asyncio", COSTAWARE_HTTP="h11") as (
        base,
        process,
    ):
        live = httpx.get(f"{base}/health/live").json()
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert live["server"] == {"loop": "asyncio", "http": "h11"}
    assert "server stack: uvicorn with the asyncio event loop and the h11 HTTP parser" in stderr


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

    # Each body its own request id, the same both times: its answer's prediction ids too.
    def post(client: httpx.Client, index: int) -> httpx.Response:
        return client.post("/predict", json=bodies[index], headers={"X-Request-ID": f"b{index}"})

    with httpx.Client(base_url=base) as client:
        alone = [post(client, index) for index in range(len(bodies))]
    with httpx.Client(base_url=base) as client, ThreadPoolExecutor(16) as pool:
        together = list(pool.map(lambda index: post(client, index), range(len(bodies))))
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


def metric_value(text: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            key, value = line.rsplit(" ", 1)
            if all(f'{label}="{wanted}"' in key for label, wanted in labels.items()):
                total += float(value)
    return total


def parent_pid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_metrics_add_up_every_workers_requests(model_dir, instances, tmp_path):
    """With two workers, /metrics (whichever worker answers it) counts the requests both
    answered: each connection asks /health/live which worker it reached, then predicts."""
    with running_serve(model_dir, tmp_path, COSTAWARE_WORKERS="2") as (base, process):

        def one_connection(n: int) -> tuple[int, int]:
            with httpx.Client(base_url=base) as client:
                pid = client.get("/health/live").json()["pid"]
                body = {"instances": instances[: 1 + n % 4].tolist()}
                assert client.post("/predict", json=body).status_code == 200
            return pid, 1 + n % 4

        answered: list[tuple[int, int]] = []
        with ThreadPoolExecutor(4) as pool:
            for start in range(0, 400, 8):  # bounded: stops as soon as both have answered
                answered += pool.map(one_connection, range(start, start + 8))
                per_worker = {pid for pid, _ in answered}
                if len(per_worker) == 2 and len(answered) >= 16:
                    break
        text = httpx.get(f"{base}/metrics").text
        workers = {pid for pid, _ in answered}
        assert len(workers) == 2, "every connection went to the same worker"
        # Both are the serve process's own workers.
        assert {parent_pid(pid) for pid in workers} == {process.pid}

    requests, rows = len(answered), sum(n for _, n in answered)
    assert metric_value(text, "costaware_requests_total", endpoint="/predict") == requests
    assert metric_value(text, "costaware_requests_total", endpoint="/health/live") == requests
    assert metric_value(text, "costaware_predictions_total", model="medical") == rows
    assert metric_value(text, "costaware_scoring_call_rows_sum", model="medical") == rows
