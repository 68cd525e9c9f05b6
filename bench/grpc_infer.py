"""V2 gRPC ModelInfer against the ``serve`` process (COSTAWARE_GRPC_PORT), driven by a
Python client (ghz is not installed here): one instance of models/builtin per call, as
tritonclient sends it (raw_input_contents), one worker.

    .venv/bin/python bench/grpc_infer.py [--seconds 5] [--rounds 3] [--concurrency 32]

c=1: one blocking call after another (tritonclient.grpc), p50 latency and calls/s.
c=N: N calls kept in flight on one channel (tritonclient.grpc.aio), calls/s. The client
is Python and shares the machine's cores with the server, so these figures are the
client's limit as much as the server's; they are reported beside the wrk figures of
bench/load.py, not compared with them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import tritonclient.grpc as triton
import tritonclient.grpc.aio as triton_aio

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "service"))
from _servicekit import free_port  # noqa: E402  (the tests' helper, not a test)


def instance() -> triton.InferInput:
    row = np.random.default_rng(0).uniform(0, 30, size=(1, 30)).astype(np.float32)
    tensor = triton.InferInput("features", [1, 30], "FP32")
    tensor.set_data_from_numpy(row)
    return tensor


def sequential(address: str, seconds: float) -> tuple[float, float]:
    tensor = instance()
    with triton.InferenceServerClient(address) as client:
        times = []
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            start = time.perf_counter()
            client.infer("builtin", [tensor])
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times), len(times) / sum(times)


async def concurrent(address: str, seconds: float, concurrency: int) -> float:
    tensor = instance()
    async with triton_aio.InferenceServerClient(address) as client:
        count = 0
        end = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal count
            while time.perf_counter() < end:
                await client.infer("builtin", [tensor])
                count += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return count / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    http, grpc_port = free_port(), free_port()
    env = {
        **os.environ,
        "COSTAWARE_PORT": str(http),
        "COSTAWARE_GRPC_PORT": str(grpc_port),
        "COSTAWARE_HOST": "127.0.0.1",
        "COSTAWARE_WORKERS": "1",
        "COSTAWARE_MODEL_DIR": str(REPO / "models"),
    }
    python = REPO / ".venv-serve" / "bin" / "python"
    server = subprocess.Popen(
        [str(python), "-m", "service"], env=env, cwd=REPO, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    address = f"127.0.0.1:{grpc_port}"
    try:
        with triton.InferenceServerClient(address) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if client.is_server_ready():
                        break
                except Exception:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise
                time.sleep(0.3)
        sequential(address, 1)  # warm-up
        p50s, rps1, rps = [], [], []
        for _ in range(args.rounds):
            p50, calls = sequential(address, args.seconds)
            p50s.append(p50)
            rps1.append(calls)
            rps.append(asyncio.run(concurrent(address, args.seconds, args.concurrency)))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    print(
        f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; V2 gRPC ModelInfer, one "
        f"instance of builtin, raw contents, Python client; medians of {args.rounds} rounds"
    )
    print(f"  c=1 p50 {statistics.median(p50s):.3f} ms, {statistics.median(rps1):.0f} calls/s")
    print(f"  c={args.concurrency} {statistics.median(rps):.0f} calls/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
