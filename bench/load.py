"""Load benchmark: the service against its peers, in one run. Prints figures and ratios.

    .venv/bin/python bench/load.py [--rounds 3] [--seconds 5] [--servers ...]

Needs wrk, a C load generator (Debian/Ubuntu: ``apt-get install wrk``); BentoML is
included when its environment exists (``make bench-env-bentoml``, never a project
dependency). Each server runs as one worker process on loopback:

- ``service``: ``python -m service`` (the shipped models), as ``make run`` starts it: its
  default settings, the access log (one line per request on stdout, service/accesslog.py)
  and info-level logging included; uvicorn with uvloop and httptools;
- ``service-quiet`` (only when asked for, ``--servers``): the same with the access log
  off and the log level at warning, to show what per-request logging costs;
- ``service-nolog`` (only when asked for): the service with the decision log off
  (``COSTAWARE_DECISION_LOG=off``), to show what logging every decision costs (issue 26:
  c=32 with the SQLite log >= 0.85x off, c=1 p50 <= 1.2x);
- ``bare``: a FastAPI endpoint answering a pre-encoded constant (bench/bare_app.py), on
  the same stack, access log off: the floor for any FastAPI service here;
- ``straightforward``: FastAPI + pydantic + onnxruntime with a synchronous endpoint
  (bench/straightforward_app.py), on the same stack;
- ``bentoml``: BentoML 1.4 on the same ONNX model (bench/bentoml_service.py), on its own
  stack.

The Open Inference Protocol (issue 25; only when asked for, ``--servers``), measured with
one instance as V2 JSON ``POST /v2/models/builtin/infer`` (models/builtin for all three):

- ``service-v2``: the service as ``service`` runs it, answering V2 JSON infer;
- ``mlserver``: MLServer 1.7 with a custom onnxruntime runtime (bench/mlserver_runtime.py;
  ``make bench-env-mlserver``), ``parallel_workers: 0``;
- ``kserve``: KServe 0.21's Python ModelServer with a custom ``kserve.Model``
  (bench/kserve_model.py; ``make bench-env-kserve``), one worker.

(a) ``POST /predict`` with one instance of the reference data, driven by wrk (one thread,
    bench/wrk_post.lua) at concurrency 1 (p50 latency, req/s) and 32 (req/s, and the
    server's CPU time per request from /proc, to show which side of the shared cores is the
    bottleneck). Every server is measured in every round, in a rotating order, and the
    medians over rounds are reported: the machine is shared, and a burst of someone else's
    work should hit all servers alike. A round with any non-2xx answer or socket error is
    reported as such.
(b) ``POST /invocations`` with a ~5 MB CSV (Accept: text/csv): rows/s over HTTP (a minimal
    Python client: one large request, the client's cost does not matter) against the same
    parse-infer-format pipeline (service.inference.run_pipeline) run in this process.
(c) the service worker's resident memory with the shipped models loaded, after the load.

Targets (issue 14): c=32 throughput >= 0.85x bare, >= 2.5x straightforward, >= 10x
BentoML; c=1 p50 <= 1.4x bare; CSV rows/s >= 0.6x in-process; RSS <= 150 MB. Exit status 0
whether or not targets are met (this reports, it does not gate); 2 when wrk is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
LUA = BENCH / "wrk_post.lua"
BENTOML = REPO / ".venv-bench-bentoml" / "bin" / "bentoml"
MLSERVER = REPO / ".venv-bench-mlserver" / "bin" / "mlserver"
KSERVE_PYTHON = REPO / ".venv-bench-kserve" / "bin" / "python"
V2_PATH = "/v2/models/builtin/infer"
V2_SERVERS = ("service-v2", "mlserver", "kserve")
CSV_BYTES = 5 * 1024 * 1024
SERVERS = (
    "service",
    "bare",
    "straightforward",
    "bentoml",
    "service-quiet",
    "service-nolog",
    *V2_SERVERS,
)
DEFAULT_SERVERS = SERVERS[:4]
# The stack uvicorn[standard] gives, named explicitly for the two comparison apps.
UVICORN_STANDARD = ["--loop", "uvloop", "--http", "httptools", "--ws", "none"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (BentoML runs its worker under an arbiter)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of the processes so far (from /proc)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class Server:
    name: str
    command: list[str]
    port: int
    env: dict[str, str]
    cwd: Path = REPO
    path: str = "/predict"
    body: bytes = b""  # the request body; empty: the /predict body
    process: subprocess.Popen | None = None
    answer: bytes = b""
    samples: dict[str, list[float]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def add(self, key: str, value: float) -> None:
        self.samples.setdefault(key, []).append(value)

    def median(self, key: str) -> float:
        values = self.samples.get(key)
        return statistics.median(values) if values else float("nan")


@contextmanager
def running(server: Server, body: bytes):
    log = tempfile.TemporaryFile()  # noqa: SIM115 (closed with the server, below)
    server.process = subprocess.Popen(
        server.command,
        env=server.env,
        cwd=server.cwd,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                status, answer = asyncio.run(
                    post(server.port, server.path, server.body or body, "application/json")
                )
                if status == 200:
                    server.answer = answer
                    break
            except OSError:
                pass
            if server.process.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                tail = log.read().decode(errors="replace")[-2000:]
                raise SystemExit(f"{server.name} failed to start: {server.command}\n{tail}")
            time.sleep(0.3)
        yield server
    finally:
        pids = descendants(server.process.pid)
        server.process.terminate()
        try:
            server.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.process.kill()
        for pid in pids[1:]:  # anything the server left behind (its own group only)
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        log.close()


@dataclass(frozen=True)
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: str  # empty when every answer was a 2xx


def wrk(url: str, body_file: Path, connections: int, seconds: float) -> WrkResult:
    command = [
        "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
        "-s", str(LUA), url,
    ]  # fmt: skip
    env = {**os.environ, "WRK_BODY_FILE": str(body_file), "WRK_CONTENT_TYPE": "application/json"}
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    match = re.search(r"^WRK_SUMMARY (.*)$", out, re.MULTILINE)
    if match is None:
        raise SystemExit(f"wrk printed no summary:\n{out}")
    values = {k: int(v) for k, v in (pair.split("=") for pair in match.group(1).split())}
    errors = []
    if values["status_errors"]:
        errors.append(f"{values['status_errors']} non-2xx answers")
    if values["socket_errors"]:
        errors.append(f"{values['socket_errors']} socket errors")
    return WrkResult(
        rps=values["requests"] / (values["duration_us"] / 1e6),
        p50_ms=values["p50_us"] / 1000,
        p99_ms=values["p99_us"] / 1000,
        errors=", ".join(errors),
    )


async def post(
    port: int, path: str, body: bytes, content_type: str, accept: str = "*/*"
) -> tuple[int, bytes]:
    """One request on a fresh connection; enough HTTP/1.1 for these servers' answers."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 24)
    try:
        writer.write(
            (
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
                f"Accept: {accept}\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body
        )
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        return int(head[9:12]), await reader.readexactly(length)
    finally:
        writer.close()


def feature_rows() -> np.ndarray:
    try:
        from sklearn.datasets import load_breast_cancer

        return load_breast_cancer().data
    except ImportError:  # the serving env has no scikit-learn: plausible positive values
        return np.random.default_rng(0).uniform(0, 30, size=(569, 30))


def csv_payload(x_pool: np.ndarray) -> tuple[bytes, int]:
    lines = [",".join(f"{v:.6g}" for v in row) for row in x_pool]
    line_bytes = sum(len(line) + 1 for line in lines) / len(lines)
    n_rows = int(CSV_BYTES // line_bytes)
    body = "\n".join(lines[i % len(lines)] for i in range(n_rows)) + "\n"
    return body.encode(), n_rows


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


def csv_over_http(port: int, body: bytes, n_rows: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        status, answer = asyncio.run(post(port, "/invocations", body, "text/csv", "text/csv"))
        times.append(time.perf_counter() - start)
        assert status == 200, answer[:200]
    return n_rows / statistics.median(times)


def v2_body(row: np.ndarray) -> bytes:
    """One instance as a V2 JSON infer request (an id: KServe's answer needs one)."""
    tensor = {"name": "features", "shape": [1, len(row)], "datatype": "FP32", "data": row.tolist()}
    return json.dumps({"id": "bench", "inputs": [tensor]}).encode()


def mlserver_folder(port: int) -> Path:
    """MLServer's settings and the model's (a fresh folder; parallel_workers 0, see the
    module)."""
    folder = Path(tempfile.mkdtemp(prefix="bench-mlserver-"))
    atexit.register(shutil.rmtree, folder, True)
    (folder / "builtin").mkdir()
    settings = {
        "parallel_workers": 0,
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": free_port(),
        "metrics_port": free_port(),
    }
    (folder / "settings.json").write_text(json.dumps(settings))
    model = {"name": "builtin", "implementation": "mlserver_runtime.OnnxRuntime"}
    (folder / "builtin" / "model-settings.json").write_text(json.dumps(model))
    return folder


def make_servers(
    names: list[str], model_dir: Path, python: str, first_port: int | None, v2: bytes = b""
) -> list[Server]:
    base_env = {
        **os.environ,
        "COSTAWARE_MODEL_DIR": str(model_dir.resolve()),
        "COSTAWARE_HOST": "127.0.0.1",
        "COSTAWARE_WORKERS": "1",
        "BENCH_MODEL_DIR": str((model_dir / "medical").resolve()),
        "BENCH_V2_MODEL_DIR": str((model_dir / "builtin").resolve()),
        "BENTOML_DO_NOT_TRACK": "true",
    }
    for name in ("SAGEMAKER_BIND_TO_PORT", "SAGEMAKER_MODEL_SERVER_WORKERS", "COSTAWARE_PORT"):
        base_env.pop(name, None)
    # The service's logging as shipped: whatever this shell sets does not count.
    for name in ("COSTAWARE_LOOP", "COSTAWARE_HTTP", "PROMETHEUS_MULTIPROC_DIR"):
        base_env.pop(name, None)
    for name in ("COSTAWARE_LOG_LEVEL", "COSTAWARE_ACCESS_LOG"):
        base_env.pop(name, None)
    quiet_env = {**base_env, "COSTAWARE_LOG_LEVEL": "warning", "COSTAWARE_ACCESS_LOG": "false"}

    def uvicorn(app: str, port: int) -> list[str]:
        return [
            python, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
            "--workers", "1", "--log-level", "warning", "--no-access-log", *UVICORN_STANDARD,
        ]  # fmt: skip

    servers = []
    for index, name in enumerate(names):
        port = free_port() if first_port is None else first_port + index
        env = quiet_env if name == "service-quiet" else base_env
        if name == "service-nolog":
            env = {**base_env, "COSTAWARE_DECISION_LOG": "off"}
        path, body, cwd = "/predict", b"", REPO
        if name in V2_SERVERS:
            path, body = V2_PATH, v2
        if name in ("service", "service-quiet", "service-nolog", "service-v2"):
            command = [python, "-m", "service", "--port", str(port)]
        elif name == "bare":
            command = uvicorn("bench.bare_app:app", port)
        elif name == "straightforward":
            command = uvicorn("bench.straightforward_app:app", port)
        elif name == "mlserver":
            command = [str(MLSERVER), "start", str(mlserver_folder(port))]
            env, cwd = {**base_env, "PYTHONPATH": str(BENCH)}, BENCH
        elif name == "kserve":
            command = [
                str(KSERVE_PYTHON), str(BENCH / "kserve_model.py"), "--http_port", str(port),
                "--grpc_port", str(free_port()),
            ]  # fmt: skip
            env, cwd = {**base_env, "PYTHONPATH": str(BENCH)}, BENCH
        else:
            command = [
                str(BENTOML), "serve", "bentoml_service:Classifier", "--working-dir",
                str(BENCH), "--host", "127.0.0.1", "--port", str(port),
            ]  # fmt: skip
        servers.append(Server(name, command, port, env, cwd=cwd, path=path, body=body))
    return servers


def ratio_line(label: str, value: float, target: str, ok: bool) -> str:
    verdict = "n/a" if value != value else ("MET" if ok else "MISSED")
    return f"  {label:<46} {value:6.2f}x  target {target:<7} {verdict}"


def main() -> int:
    nan = float("nan")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=REPO / "models")
    parser.add_argument("--seconds", type=int, default=5, help="per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per server")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--csv-repeats", type=int, default=5)
    parser.add_argument("--servers", nargs="+", choices=SERVERS, default=list(DEFAULT_SERVERS))
    parser.add_argument(
        "--first-port", type=int, help="listen on this port and the next ones (default: free ports)"
    )
    args = parser.parse_args()

    if shutil.which("wrk") is None:
        print(
            "bench/load.py needs wrk, a C load generator, and it is not on PATH.\n"
            "Install it (Debian/Ubuntu: `apt-get install wrk`; macOS: `brew install wrk`) "
            "and run again.",
            file=sys.stderr,
        )
        return 2
    names = list(dict.fromkeys(args.servers))
    skipped = ""
    if "bentoml" in names and not BENTOML.exists():
        names.remove("bentoml")
        skipped = f"bentoml: not installed ({BENTOML} missing; `make bench-env-bentoml`)"
    for name, needed in (("mlserver", MLSERVER), ("kserve", KSERVE_PYTHON)):
        if name in names and not needed.exists():
            names.remove(name)
            skipped += f"  {name}: not installed ({needed} missing; `make bench-env-{name}`)"

    x_pool = feature_rows()
    one = json.dumps({"instances": [x_pool[0].tolist()]}).encode()
    csv_body, n_rows = csv_payload(x_pool)
    servers = make_servers(
        names, args.model_dir, sys.executable, args.first_port, v2_body(x_pool[0])
    )
    by_name = {server.name: server for server in servers}
    rss = csv_http = float("nan")
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        body_files = {}
        for server in servers:
            body_files[server.name] = Path(tmp) / f"{server.name}.json"
            body_files[server.name].write_bytes(server.body or one)
            stack.enter_context(running(server, one))
            wrk(server.url, body_files[server.name], args.concurrency, 1)  # warm-up
        for round_no in range(args.rounds):
            order = servers[round_no % len(servers) :] + servers[: round_no % len(servers)]
            for connections in (1, args.concurrency):
                for server in order:
                    pids = descendants(server.process.pid)
                    cpu_before = cpu_seconds(pids)
                    result = wrk(server.url, body_files[server.name], connections, args.seconds)
                    cpu = cpu_seconds(pids) - cpu_before
                    if result.errors:
                        server.failures.append(
                            f"round {round_no + 1} c={connections}: {result.errors}"
                        )
                    if connections == 1:
                        server.add("p50_ms", result.p50_ms)
                        server.add("rps1", result.rps)
                    else:
                        server.add("rps", result.rps)
                        server.add("p99_ms", result.p99_ms)
                        server.add("server_us", 1e6 * cpu / (result.rps * args.seconds))
        if "service" in by_name:
            service = by_name["service"]
            csv_http = csv_over_http(service.port, csv_body, n_rows, args.csv_repeats)
            rss = rss_mb(service.process.pid)
    in_process = in_process_rows_per_s(args.model_dir, csv_body, n_rows, args.csv_repeats)

    c = args.concurrency
    print(
        f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; wrk 1 thread; one worker per "
        f"server; medians of {args.rounds} interleaved rounds of {args.seconds:g} s"
    )
    print("service: as `make run` starts it (access log and info-level logging on)")
    print("server stacks: service, bare, straightforward: uvicorn + uvloop + httptools; ")
    print("               bentoml: BentoML's own (as `pip install bentoml` gives it)")
    print(f"(a) POST /predict (V2 servers: {V2_PATH}), one instance; each server's answer:")
    for server in servers:
        print(f"  {server.name:<16} {server.answer.decode(errors='replace')[:150]}")
    print(f"  {'server':<16} {'c=1 p50':>10} {'c=1 req/s':>10} {f'c={c} req/s':>11} "
          f"{f'c={c} p99':>10} {'server CPU/req':>15}")  # fmt: skip
    for server in servers:
        print(
            f"  {server.name:<16} {server.median('p50_ms'):7.3f} ms {server.median('rps1'):10.0f} "
            f"{server.median('rps'):11.0f} {server.median('p99_ms'):7.2f} ms "
            f"{server.median('server_us'):12.0f} us"
        )
        for failure in server.failures:
            print(f"    ! {server.name} {failure}")
    if skipped:
        print(f"  {skipped}")
    if "service" in by_name:
        print(f"(b) POST /invocations, {len(csv_body) / 1e6:.2f} MB CSV, {n_rows} rows, CSV out")
        print(f"  over HTTP   {csv_http:9.0f} rows/s")
        print(f"  in-process  {in_process:9.0f} rows/s (service.inference.run_pipeline)")
        print(f"(c) service worker RSS with {args.model_dir.name}/ loaded: {rss:.1f} MB")

    print("ratios (medians):")
    svc = by_name.get("service")

    def ratio(key: str, other: str, invert: bool = False) -> float:
        if svc is None or other not in by_name:
            return float("nan")
        a, b = svc.median(key), by_name[other].median(key)
        return b / a if invert else a / b

    rps_bare = ratio("rps", "bare")
    p50_bare = ratio("p50_ms", "bare")
    rps_plain = ratio("rps", "straightforward")
    rps_bento = ratio("rps", "bentoml")
    print(ratio_line(f"c={c} req/s, service / bare", rps_bare, ">= 0.85", rps_bare >= 0.85))
    print(ratio_line("c=1 p50, service / bare", p50_bare, "<= 1.4", p50_bare <= 1.4))
    print(
        ratio_line(f"c={c} req/s, service / straightforward", rps_plain, ">= 2.5", rps_plain >= 2.5)
    )
    print(ratio_line(f"c={c} req/s, service / bentoml", rps_bento, ">= 10", rps_bento >= 10))
    if "service-nolog" in by_name:
        rps_log = ratio("rps", "service-nolog")
        p50_log = ratio("p50_ms", "service-nolog")
        print(ratio_line(f"c={c} req/s, decision log / off", rps_log, ">= 0.85", rps_log >= 0.85))
        print(ratio_line("c=1 p50, decision log / off", p50_log, "<= 1.2", p50_log <= 1.2))
    cpu = ratio("server_us", "bare", True)
    print(f"  {f'c={c} server CPU per request, bare / service':<46} {cpu:6.2f}x  (no target; "
          "steadier than req/s on a loaded machine)")  # fmt: skip
    if "service-quiet" in by_name:
        quiet = by_name["service-quiet"]
        for key, label in (("rps", f"c={c} req/s"), ("p50_ms", "c=1 p50")):
            to_bare = quiet.median(key) / by_name["bare"].median(key) if "bare" in by_name else nan
            shipped = svc.median(key) / quiet.median(key) if svc is not None else nan
            print(f"  {f'{label}, service-quiet / bare':<46} {to_bare:6.2f}x")
            print(f"  {f'{label}, service / service-quiet':<46} {shipped:6.2f}x  (the access log)")
    slower = ratio("p50_ms", "straightforward", True)
    print(f"  {'c=1 p50, straightforward / service':<46} {slower:6.2f}x")
    print(f"  {'c=1 p50, bentoml / service':<46} {ratio('p50_ms', 'bentoml', True):6.2f}x")
    if svc is not None:
        csv = csv_http / in_process
        print(ratio_line("CSV rows/s, HTTP / in-process", csv, ">= 0.6", csv >= 0.6))
        print(f"  {'service worker RSS':<46} {rss:6.1f} MB target <= 150  "
              f"{'MET' if rss <= 150 else 'MISSED'}")  # fmt: skip
    if "service-v2" in by_name:
        v2 = by_name["service-v2"]
        for other, target in (("service", 0.85), ("mlserver", 3.0), ("kserve", 3.0)):
            if other not in by_name:
                continue
            up = v2.median("rps") / by_name[other].median("rps")
            label = f"c={c} req/s, service-v2 / {other}"
            print(ratio_line(label, up, f">= {target:g}", up >= target))
            p50 = v2.median("p50_ms") / by_name[other].median("p50_ms")
            if other == "service":  # no latency target against its own /predict
                print(f"  {f'c=1 p50, service-v2 / {other}':<46} {p50:6.2f}x")
            else:
                print(ratio_line(f"c=1 p50, service-v2 / {other}", p50, "< 1", p50 < 1))
            cpu = v2.median("server_us") / by_name[other].median("server_us")
            print(f"  {f'c={c} server CPU/request, service-v2 / {other}':<46} {cpu:6.2f}x")
    if any(server.failures for server in servers):
        print("! some rounds had errors (see above): those servers' figures are not comparable")
    return 0


if __name__ == "__main__":
    sys.exit(main())
