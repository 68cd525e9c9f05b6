"""What API keys cost on the hot path. Prints figures; exits 0 whatever they are.

    .venv/bin/python bench/auth.py [--rounds 5] [--baseline-dir DIR]

Starts the service (one uvicorn worker, access log off, shipped models) twice: without
keys, and with ten inference keys and one admin key, the client sending a valid inference
key. With ``--baseline-dir`` (a checkout of another commit, e.g. made by ``git archive
main | tar -x -C DIR``) a third server runs that code without keys, to show what the
key check costs when none is configured. The servers are measured in alternating rounds
with bench/load.py's asyncio keep-alive client: ``POST /predict`` with one instance, p50
at concurrency 1 and requests/s at concurrency 32; medians over rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
from contextlib import ExitStack
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.load import (
    REPO,
    feature_rows,
    free_port,
    http_request,
    latencies,
    measured_throughput,
    server,
)

KEYS = [f"bench-inference-key-{i:02d}-0123456789abcdef" for i in range(10)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--baseline-dir", type=Path)
    args = parser.parse_args()

    base_env = {
        **os.environ,
        "COSTAWARE_MODEL_DIR": str(REPO / "models"),
        "COSTAWARE_HOST": "127.0.0.1",
        "COSTAWARE_WORKERS": "1",
        "COSTAWARE_LOG_LEVEL": "warning",
        "COSTAWARE_ACCESS_LOG": "false",
    }
    for name in ("SAGEMAKER_BIND_TO_PORT", "SAGEMAKER_MODEL_SERVER_WORKERS", "COSTAWARE_PORT"):
        base_env.pop(name, None)
    for name in [n for n in base_env if n.startswith("COSTAWARE_") and "KEYS" in n]:
        base_env.pop(name)
    keyed_env = {**base_env, "COSTAWARE_API_KEYS": ",".join(KEYS)}
    keyed_env["COSTAWARE_ADMIN_KEYS"] = "bench-admin-key-0123456789abcdef"

    body = json.dumps({"instances": [feature_rows(REPO / "models")[0].tolist()]}).encode()
    plain = http_request("/predict", body, "application/json")
    # The last configured key: every digest is compared whichever key matches.
    keyed = plain.replace(b"\r\n\r\n", f"\r\nAuthorization: Bearer {KEYS[-1]}\r\n\r\n".encode(), 1)
    setups = {"no keys": (base_env, REPO, plain), "10 keys": (keyed_env, REPO, keyed)}
    if args.baseline_dir:
        setups = {"baseline": (base_env, args.baseline_dir.resolve(), plain), **setups}

    samples = {name: {"p50_ms": [], "rps": [], "server_us": []} for name in setups}
    with ExitStack() as stack:
        running = {}
        for name, (env, cwd, raw) in setups.items():
            port = free_port()
            command = [sys.executable, "-m", "service", "--port", str(port)]
            process = stack.enter_context(server(command, env, port, cwd=cwd))
            running[name] = (process.pid, port, raw)
        for _ in range(args.rounds):
            for name, (_, port, raw) in running.items():
                lat = asyncio.run(latencies(port, raw, args.requests))
                samples[name]["p50_ms"].append(1000 * float(np.percentile(lat, 50)))
            for name, (pid, port, raw) in running.items():
                rps, server_us, _ = measured_throughput(
                    pid, port, raw, args.concurrency, args.seconds
                )
                samples[name]["rps"].append(rps)
                samples[name]["server_us"].append(server_us)

    print(f"POST /predict, one instance; medians of {args.rounds} alternating rounds")
    for name, figures in samples.items():
        p50, rps, cpu = (statistics.median(figures[k]) for k in ("p50_ms", "rps", "server_us"))
        print(
            f"  {name:<9} c=1 p50 {p50:6.3f} ms   c={args.concurrency} {rps:6.0f} req/s   "
            f"server CPU {cpu:4.0f} us/request   rounds rps: "
            + " ".join(f"{v:.0f}" for v in figures["rps"])
        )


if __name__ == "__main__":
    main()
