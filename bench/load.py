"""Load benchmark for the prediction service (issue 3). Prints figures and ratios.

    .venv/bin/python bench/load.py [--model-dir models] [--seconds 5] [--requests 2000]

Starts two servers on loopback, each one uvicorn worker with the access log off: the
service (`python -m service`, the shipped models) and a bare FastAPI endpoint returning a
constant (bench/bare_app.py). The client is a minimal asyncio HTTP/1.1 keep-alive client in
this process (lighter than httpx, so the servers and not the client are measured as far as
two shared cores allow). Measures:

(a) POST /predict with one instance: p50/p99 latency at concurrency 1, requests/s at
    concurrency 32, each against the bare endpoint;
(b) POST /invocations with a ~5 MB CSV (Accept: text/csv): rows/s over HTTP against the same
    parse-infer-format pipeline (service.inference.run_pipeline) run in this process;
(c) the serving worker's resident memory with the three models loaded, after the load.

Targets: p50 <= 1.5x bare; throughput >= 0.7x bare; CSV rows/s >= 0.5x in-process;
RSS < 150 MB. Exit status 0 whether or not targets are met: this reports, it does not gate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CSV_BYTES = 5 * 1024 * 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def server(command: list[str], env: dict[str, str], port: int, cwd: Path = REPO):
    process = subprocess.Popen(
        command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"server failed to start: {command}") from None
                time.sleep(0.2)
        yield process
    finally:
        process.terminate()
        process.wait(timeout=30)


class Connection:
    """One keep-alive HTTP/1.1 connection; enough protocol for these two servers."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        return cls(reader, writer)

    async def send(self, raw: bytes) -> tuple[int, bytes]:
        self.writer.write(raw)
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


def http_request(path: str, body: bytes, content_type: str, accept: str = "*/*") -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
        f"Accept: {accept}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def latencies(port: int, raw: bytes, n: int) -> list[float]:
    conn = await Connection.open(port)
    for _ in range(min(200, n)):  # warm-up
        await conn.send(raw)
    out = []
    for _ in range(n):
        start = time.perf_counter()
        status, _ = await conn.send(raw)
        out.append(time.perf_counter() - start)
        assert status == 200, status
    conn.close()
    return out


async def throughput(port: int, raw: bytes, concurrency: int, seconds: float) -> float:
    conns = [await Connection.open(port) for _ in range(concurrency)]
    for conn in conns:
        await conn.send(raw)
    done = 0
    deadline = time.perf_counter() + seconds

    async def loop(conn: Connection) -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            status, _ = await conn.send(raw)
            assert status == 200, status
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(loop(conn) for conn in conns))
    elapsed = time.perf_counter() - start
    for conn in conns:
        conn.close()
    return done / elapsed


async def csv_over_http(port: int, raw: bytes, repeats: int) -> list[float]:
    conn = await Connection.open(port)
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        status, body = await conn.send(raw)
        out.append(time.perf_counter() - start)
        assert status == 200, body[:200]
    conn.close()
    return out


def csv_payload(x_pool: np.ndarray) -> tuple[bytes, int]:
    lines = [",".join(f"{v:.6g}" for v in row) for row in x_pool]
    line_bytes = sum(len(line) + 1 for line in lines) / len(lines)
    n_rows = int(CSV_BYTES // line_bytes)
    body = "\n".join(lines[i % len(lines)] for i in range(n_rows)) + "\n"
    return body.encode(), n_rows


def feature_rows(model_dir: Path) -> np.ndarray:
    try:
        from sklearn.datasets import load_breast_cancer

        return load_breast_cancer().data
    except ImportError:  # the serving env has no scikit-learn: plausible positive values
        return np.random.default_rng(0).uniform(0, 30, size=(569, 30))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def in_process_rows_per_s(model_dir: Path, body: bytes, n_rows: int, repeats: int) -> float:
    from service.codecs import CSV
    from service.inference import run_pipeline
    from service.registry import ModelRegistry, session_options

    registry = ModelRegistry.load(model_dir, "medical", session_options(1, 1))
    run_pipeline(registry, body, CSV, CSV)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run_pipeline(registry, body, CSV, CSV)
        times.append(time.perf_counter() - start)
    return n_rows / statistics.median(times)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured_throughput(
    pid: int, port: int, raw: bytes, concurrency: int, seconds: float
) -> tuple[float, float, float]:
    """Requests/s, and the server's and this client's CPU microseconds per request: which
    side of the two shared cores is the bottleneck."""
    server_cpu, client_cpu = cpu_seconds(pid), time.process_time()
    start = time.perf_counter()
    rps = asyncio.run(throughput(port, raw, concurrency, seconds))
    requests = rps * (time.perf_counter() - start)
    server_cpu, client_cpu = cpu_seconds(pid) - server_cpu, time.process_time() - client_cpu
    return rps, 1e6 * server_cpu / requests, 1e6 * client_cpu / requests


def ratio_line(label: str, value: float, target: str, ok: bool) -> str:
    return f"  {label:<44} {value:6.2f}x   target {target:<7} {'MET' if ok else 'MISSED'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=REPO / "models")
    parser.add_argument("--requests", type=int, default=1000, help="latency samples per round")
    parser.add_argument("--seconds", type=float, default=3.0, help="per throughput run")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--csv-repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per server")
    args = parser.parse_args()

    env = {
        **os.environ,
        "COSTAWARE_MODEL_DIR": str(args.model_dir.resolve()),
        "COSTAWARE_HOST": "127.0.0.1",
        "COSTAWARE_WORKERS": "1",
        "COSTAWARE_LOG_LEVEL": "warning",
        "COSTAWARE_ACCESS_LOG": "false",
    }
    for name in ("SAGEMAKER_BIND_TO_PORT", "SAGEMAKER_MODEL_SERVER_WORKERS", "COSTAWARE_PORT"):
        env.pop(name, None)
    x_pool = feature_rows(args.model_dir)
    one = json.dumps({"instances": [x_pool[0].tolist()]}).encode()
    predict_raw = http_request("/predict", one, "application/json")
    csv_body, n_rows = csv_payload(x_pool)
    csv_raw = http_request("/invocations", csv_body, "text/csv", "text/csv")

    bare_port, svc_port = free_port(), free_port()
    bare_cmd = [
        sys.executable, "-m", "uvicorn", "bench.bare_app:app", "--host", "127.0.0.1",
        "--port", str(bare_port), "--workers", "1", "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip
    svc_cmd = [sys.executable, "-m", "service", "--port", str(svc_port)]
    ports = {"bare": bare_port, "service": svc_port}
    # Both servers up at once and measured in alternating rounds, medians over rounds: the
    # machine is shared, and a burst of someone else's work should hit both sides alike.
    samples: dict[str, dict[str, list[float]]] = {
        name: {"p50_ms": [], "p99_ms": [], "rps": [], "server_us": [], "client_us": []}
        for name in ports
    }
    with (
        server(bare_cmd, env, bare_port) as bare_process,
        server(svc_cmd, env, svc_port) as svc_process,
    ):
        pids = {"bare": bare_process.pid, "service": svc_process.pid}
        for _ in range(args.rounds):
            for name, port in ports.items():
                lat = asyncio.run(latencies(port, predict_raw, args.requests))
                samples[name]["p50_ms"].append(1000 * float(np.percentile(lat, 50)))
                samples[name]["p99_ms"].append(1000 * float(np.percentile(lat, 99)))
            for name, port in ports.items():
                rps, server_us, client_us = measured_throughput(
                    pids[name], port, predict_raw, args.concurrency, args.seconds
                )
                samples[name]["rps"].append(rps)
                samples[name]["server_us"].append(server_us)
                samples[name]["client_us"].append(client_us)
        times = asyncio.run(csv_over_http(svc_port, csv_raw, args.csv_repeats))
        rss = rss_mb(svc_process.pid)
    results = {
        name: {key: statistics.median(values) for key, values in figures.items()}
        for name, figures in samples.items()
    }
    results["service"]["csv_rows_s"] = n_rows / statistics.median(times)
    results["service"]["csv_s"] = statistics.median(times)
    in_process = in_process_rows_per_s(args.model_dir, csv_body, n_rows, args.csv_repeats)

    bare, svc = results["bare"], results["service"]
    print(
        f"machine: {os.cpu_count()} cores; one uvicorn worker each; asyncio client; "
        f"medians of {args.rounds} alternating rounds"
    )
    print("(a) POST /predict, one instance")
    for name, r in results.items():
        print(
            f"  {name:<8} c=1 p50 {r['p50_ms']:7.3f} ms  p99 {r['p99_ms']:7.3f} ms   "
            f"c={args.concurrency} {r['rps']:8.0f} req/s "
            f"(CPU per request: server {r['server_us']:4.0f} us, client {r['client_us']:4.0f} us)"
        )
    print(f"(b) POST /invocations, {len(csv_body) / 1e6:.2f} MB CSV, {n_rows} rows, CSV out")
    print(f"  over HTTP   {svc['csv_rows_s']:9.0f} rows/s ({svc['csv_s'] * 1000:.0f} ms/request)")
    print(f"  in-process  {in_process:9.0f} rows/s (service.inference.run_pipeline)")
    print(f"(c) serving worker RSS with {args.model_dir.name}/ loaded: {rss:.1f} MB (target < 150)")
    print("ratios:")
    p50 = svc["p50_ms"] / bare["p50_ms"]
    p99 = svc["p99_ms"] / bare["p99_ms"]
    rps = svc["rps"] / bare["rps"]
    csv = svc["csv_rows_s"] / in_process
    print(ratio_line("p50 latency, service / bare", p50, "<= 1.5", p50 <= 1.5))
    print(f"  {'p99 latency, service / bare':<44} {p99:6.2f}x   (no target)")
    print(ratio_line(f"throughput c={args.concurrency}, service / bare", rps, ">= 0.7", rps >= 0.7))
    print(ratio_line("CSV rows/s, HTTP / in-process", csv, ">= 0.5", csv >= 0.5))
    print(f"  {'worker RSS':<44} {rss:6.1f} MB target < 150  {'MET' if rss < 150 else 'MISSED'}")


if __name__ == "__main__":
    main()
