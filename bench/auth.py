"""What API keys cost on the hot path. Prints figures; exits 0 whatever they are.

    .venv/bin/python bench/auth.py [--rounds 5] [--seconds 5] [--baseline-dir DIR]

Needs wrk (as bench/load.py). Starts the service (one worker, access log off, shipped
models) twice: without keys, and with ten inference keys and one admin key, wrk sending
the last configured inference key (every digest is compared whichever key matches). With
``--baseline-dir`` (a checkout of another commit, e.g. ``git archive main | tar -x -C
DIR``) a third server runs that code without keys, to show what the key check costs when
none is configured. ``POST /predict`` with one instance; p50 at concurrency 1, requests/s
and server CPU per request at concurrency 32; the servers are measured in every round, in
turn, and the medians over rounds are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.load import REPO, cpu_seconds, descendants, feature_rows, free_port, wrk

KEYS = [f"bench-inference-key-{i:02d}-0123456789abcdef" for i in range(10)]


@contextmanager
def serving(env: dict[str, str], cwd: Path) -> dict:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "service", "--port", str(port)],
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ping", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the service did not start in {cwd}")
            time.sleep(0.3)
        yield {"port": port, "pid": process.pid}
    finally:
        process.terminate()
        process.wait(timeout=30)


def measure(server: dict, body_file: Path, key: str | None, seconds: float) -> dict:
    url = f"http://127.0.0.1:{server['port']}/predict"
    if key:
        os.environ["WRK_AUTHORIZATION"] = f"Bearer {key}"  # read by bench/wrk_post.lua
    try:
        single = wrk(url, body_file, 1, seconds)
        pids = descendants(server["pid"])
        before = cpu_seconds(pids)
        loaded = wrk(url, body_file, 32, seconds)
        cpu = cpu_seconds(pids) - before
    finally:
        os.environ.pop("WRK_AUTHORIZATION", None)
    if single.errors or loaded.errors:
        raise SystemExit(f"errors: {single.errors} {loaded.errors}")
    requests = loaded.rps * max(1, round(seconds))
    return {"p50_ms": single.p50_ms, "rps": loaded.rps, "server_us": 1e6 * cpu / requests}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--baseline-dir", type=Path)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")

    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("COSTAWARE_", "SAGEMAKER_"))
    }
    env.update(
        COSTAWARE_MODEL_DIR=str(REPO / "models"),
        COSTAWARE_HOST="127.0.0.1",
        COSTAWARE_LOG_LEVEL="warning",
        COSTAWARE_ACCESS_LOG="false",
    )
    keyed = {
        **env,
        "COSTAWARE_API_KEYS": ",".join(KEYS),
        "COSTAWARE_ADMIN_KEYS": "bench-admin-key-0123456789abcdef",
    }
    setups = {"no keys": (env, REPO, None), "10 keys": (keyed, REPO, KEYS[-1])}
    if args.baseline_dir:
        setups = {"baseline": (env, args.baseline_dir.resolve(), None), **setups}

    with tempfile.TemporaryDirectory() as scratch, ExitStack() as stack:
        body_file = Path(scratch) / "body.json"
        body_file.write_text(json.dumps({"instances": [feature_rows()[0].tolist()]}))
        servers = {
            name: stack.enter_context(serving(server_env, cwd))
            for name, (server_env, cwd, _) in setups.items()
        }
        samples: dict[str, list[dict]] = {name: [] for name in setups}
        for _ in range(args.rounds):
            for name, server in servers.items():
                samples[name].append(measure(server, body_file, setups[name][2], args.seconds))

    print(f"POST /predict, one instance, wrk; medians of {args.rounds} rounds")
    for name, rounds in samples.items():
        p50, rps, cpu = (
            statistics.median(r[key] for r in rounds) for key in ("p50_ms", "rps", "server_us")
        )
        print(
            f"  {name:<9} c=1 p50 {p50:6.3f} ms   c=32 {rps:6.0f} req/s   "
            f"server CPU {cpu:4.0f} us/request   rounds: "
            + " ".join(f"{r['rps']:.0f}" for r in rounds)
        )


if __name__ == "__main__":
    main()
