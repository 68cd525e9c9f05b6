"""POST /evaluate on 200,000 posted labeled scores, over HTTP, against the same work in-process.

Run: ``.venv/bin/python bench/evaluate.py [--n 200000] [--repeats 7]``

The HTTP side is a real uvicorn server (one worker, the shipped models) started on a free
loopback port, driven by an httpx client that posts the same pre-encoded JSON body each
time. The in-process side is measured two ways:

* ``compute``: ``costaware.economics.evaluate`` on numpy arrays already in memory;
* ``pipeline``: the route's own decode-evaluate-encode function on the same body bytes,
  without HTTP (what the server does minus the network and the ASGI stack).

Prints median wall times and the ratios; the target is HTTP <= 2x in-process.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from costaware import economics
from service.dataplane import DataPlane
from service.registry import ModelRegistry
from service.routes.evaluate import EvaluateOptions, _respond

ROOT = Path(__file__).resolve().parents[1]

QALY = {"tp": -35280.0, "fp": -1287.67, "tn": 0.0, "fn": -252000.0}


def make_body(n: int, seed: int) -> tuple[bytes, np.ndarray, np.ndarray]:
    """Labeled float32 scores, as a model would return them, in a /evaluate JSON body."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.3).astype(np.int8)
    scores = rng.beta(np.where(labels == 1, 5.0, 1.5), np.where(labels == 1, 1.5, 5.0))
    scores = scores.astype(np.float32)
    score_text = ",".join(scores.astype(str).tolist())
    label_text = ",".join(map(str, labels.tolist()))
    body = (
        f'{{"cost_matrix": {json.dumps(QALY)}, "scores": [{score_text}], "labels": [{label_text}]}}'
    ).encode()
    return body, labels, scores.astype(np.float64)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(port: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "COSTAWARE_MODEL_DIR": str(ROOT / "models"),
        "COSTAWARE_LOG_LEVEL": "warning",
        "COSTAWARE_ACCESS_LOG": "false",
    }
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "service.app:create_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    server = subprocess.Popen(command, cwd=ROOT, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ping", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.terminate()
    raise SystemExit("the server did not become ready within 60 s")


def timed(function, repeats: int) -> tuple[float, object]:
    result = function()  # warm-up (imports, allocator, connection)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seed", type=int, default=4)
    args = parser.parse_args()

    body, labels, scores = make_body(args.n, args.seed)
    costs = economics.CostMatrix(**QALY)
    dataplane = DataPlane(ModelRegistry.load(ROOT / "models", "medical"))
    options = EvaluateOptions(
        plot=None, models=None, costs=dict.fromkeys(economics.OUTCOMES), threshold=None, margin=None
    )

    compute_s, in_memory = timed(lambda: economics.evaluate(labels, scores, costs), args.repeats)
    pipeline_s, _ = timed(
        lambda: _respond(body, "application/json", "application/json", options, dataplane),
        args.repeats,
    )

    port = free_port()
    server = start_server(port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:

            def post() -> dict:
                response = client.post(
                    "/evaluate", content=body, headers={"content-type": "application/json"}
                )
                response.raise_for_status()
                return response.json()

            http_s, answer = timed(post, args.repeats)
    finally:
        server.terminate()
        server.wait(timeout=30)

    (entry,) = answer["results"]
    assert entry["total_value"] == in_memory["total_value"], "HTTP and in-process disagree"
    print(f"/evaluate, {args.n:,} posted labeled scores, body {len(body) / 1e6:.2f} MB")
    print(f"median of {args.repeats} runs after one warm-up; server: uvicorn, 1 worker, loopback")
    print(f"  in-process economics.evaluate (arrays in memory): {compute_s * 1e3:8.1f} ms")
    print(f"  in-process route pipeline (decode+evaluate+encode): {pipeline_s * 1e3:6.1f} ms")
    print(f"  HTTP POST /evaluate (real server):                  {http_s * 1e3:6.1f} ms")
    print(f"  ratio HTTP / in-process pipeline: {http_s / pipeline_s:.2f}x (target <= 2x)")
    print(f"  ratio HTTP / in-process compute:  {http_s / compute_s:.2f}x")


if __name__ == "__main__":
    main()
