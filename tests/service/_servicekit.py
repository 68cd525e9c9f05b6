"""Fixture models for the service tests: real ONNX logistic-regression graphs built with
``onnx.helper``, with real cards written by ``costaware.card``.

The weights are known, so numpy computes the expected scores independently of both the
service and onnxruntime; the refusal cases (bad card, wrong sha256, wrong input) are made
by damaging a good folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from costaware.card import (
    CARD_FILENAME,
    MODEL_FILENAME,
    ClassReport,
    ConfusionCounts,
    DataSpec,
    HeldOut,
    HeldOutMetrics,
    LossSpec,
    ModelCard,
    OnnxSpec,
    TrainingSpec,
    sha256_file,
    write_card,
)

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "models"  # the models the service ships with
DATA = Path(__file__).resolve().parent / "data"
N_FEATURES = 30
FEATURES = [f"feature {i:02d}" for i in range(N_FEATURES)]


@dataclass(frozen=True)
class LogisticSpec:
    """score = sigmoid(((x - mean) / scale) @ weights + bias), all float32 in the graph."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float

    @classmethod
    def random(cls, seed: int, n_features: int = N_FEATURES) -> LogisticSpec:
        rng = np.random.default_rng(seed)
        return cls(
            mean=rng.uniform(-5, 5, n_features).astype(np.float32),
            scale=rng.uniform(0.5, 3, n_features).astype(np.float32),
            weights=(rng.normal(size=n_features) / np.sqrt(n_features)).astype(np.float32),
            bias=float(rng.normal()),
        )

    def expected_scores(self, x: np.ndarray) -> np.ndarray:
        """The oracle: the same arithmetic in float64 numpy, no onnxruntime involved."""
        z = (np.asarray(x, dtype=np.float64) - self.mean) / self.scale
        return 1.0 / (1.0 + np.exp(-(z @ self.weights.astype(np.float64) + self.bias)))


def logistic_graph(
    spec: LogisticSpec,
    input_name: str = "features",
    output_name: str = "score",
    *,
    output_factor: float | None = None,
) -> onnx.ModelProto:
    """The graph of ``spec``; ``output_factor`` multiplies the sigmoid in float32 (a graph
    whose arithmetic lands outside [0, 1])."""
    n = len(spec.weights)
    sigmoid = output_name if output_factor is None else "sigmoid"
    nodes = [
        helper.make_node("Sub", [input_name, "mean"], ["centred"]),
        helper.make_node("Div", ["centred", "scale"], ["z"]),
        helper.make_node("MatMul", ["z", "w"], ["logit0"]),
        helper.make_node("Add", ["logit0", "b"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], [sigmoid]),
    ]
    initializers = [
        numpy_helper.from_array(spec.mean, "mean"),
        numpy_helper.from_array(spec.scale, "scale"),
        numpy_helper.from_array(spec.weights.reshape(n, 1), "w"),
        numpy_helper.from_array(np.array([spec.bias], dtype=np.float32), "b"),
    ]
    if output_factor is not None:
        nodes.append(helper.make_node("Mul", [sigmoid, "factor"], [output_name]))
        factor = np.array([output_factor], dtype=np.float32)
        initializers.append(numpy_helper.from_array(factor, "factor"))
    graph = helper.make_graph(
        nodes,
        "logistic",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["N", n])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["N", 1])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def make_card(
    name: str,
    sha256: str,
    features: list[str],
    *,
    threshold: float = 0.5,
    margin: float = 0.1,
    fn_cost: float = 1.0,
) -> ModelCard:
    report = ClassReport(precision=0.9, recall=0.9, f1=0.9, support=10)
    return ModelCard(
        name=name,
        version="test-1",
        created_at="2026-01-01T00:00:00Z",
        description=f"fixture model {name}",
        loss=LossSpec(type="custom" if fn_cost != 1.0 else "builtin", fn_cost=fn_cost, fp_cost=1),
        threshold=threshold,
        margin=margin,
        features=features,
        onnx=OnnxSpec(input_name="features", output_name="score", opset=13, sha256=sha256),
        training=TrainingSpec(
            seed=0,
            epochs=1,
            batch_size=32,
            optimizer="sgd",
            learning_rate=0.01,
            data=DataSpec(
                source="fixture",
                sha256=hashlib.sha256(b"fixture").hexdigest(),
                n_rows=20,
                n_train=10,
                n_test=10,
                test_size=0.5,
                split_seed=1,
            ),
            library_versions={"onnx": onnx.__version__},
        ),
        metrics=HeldOutMetrics(
            threshold=threshold,
            accuracy=0.9,
            auc=0.95,
            per_class={"0": report, "1": report},
            confusion=ConfusionCounts(tp=5, fp=1, tn=4, fn=0),
        ),
        held_out=HeldOut(scores=[0.1, 0.9], labels=[0, 1]),
    )


def write_model(
    folder: Path,
    name: str,
    spec: LogisticSpec,
    *,
    features: list[str] | None = None,
    threshold: float = 0.5,
    margin: float = 0.1,
    fn_cost: float = 1.0,
    output_factor: float | None = None,
) -> ModelCard:
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(logistic_graph(spec, output_factor=output_factor), folder / MODEL_FILENAME)
    card = make_card(
        name,
        sha256_file(folder / MODEL_FILENAME),
        features or FEATURES,
        threshold=threshold,
        margin=margin,
        fn_cost=fn_cost,
    )
    write_card(folder, card)
    return card


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def csv_body(x: np.ndarray) -> bytes:
    return "".join(",".join(repr(float(v)) for v in row) + "\n" for row in x).encode()


SERVE = Path(sys.executable).parent / "serve"


def serve_command() -> list[str]:
    # The console script SageMaker runs; `python -m service` if this env lacks it.
    return [str(SERVE)] if SERVE.exists() else [sys.executable, "-m", "service"]


def wait_for_ping(
    base: str, process: subprocess.Popen, timeout: float = 30.0, probe: str = "/ping"
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"serve exited early: {process.communicate()[1]}")
        try:
            if httpx.get(f"{base}{probe}", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("serve did not answer /ping in time")


@contextmanager
def running_serve(
    model_dir: Path, cwd: Path, *args: str, probe: str = "/ping", **settings: str
) -> Iterator[tuple[str, subprocess.Popen]]:
    """The real ``serve`` process on a free port (``settings``: extra environment), its
    base URL once it answers ``probe`` (``/health/live`` for a server that serves no
    model) with 200; killed on the way out if still running."""
    port = free_port()
    env = {
        **os.environ,
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "COSTAWARE_MODEL_DIR": str(model_dir),
        "COSTAWARE_HOST": "127.0.0.1",
        **settings,
    }
    for name in ("COSTAWARE_PORT", "COSTAWARE_LOOP", "COSTAWARE_HTTP", "COSTAWARE_WORKERS"):
        if name not in settings:
            env.pop(name, None)
    process = subprocess.Popen(
        [*serve_command(), *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Its own process group, so that the workers of a multi-worker server go too.
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_ping(base, process, probe=probe)
        yield base, process
    finally:
        # Workers hold the output pipes too: stop the whole group, not just the parent
        # (which may have exited already).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()


class KeepAliveClient:
    """A minimal HTTP/1.1 client on one keep-alive connection (much lighter than httpx,
    so that a test's thousands of requests load the server, not the client)."""

    def __init__(self, base: str, timeout: float = 60.0) -> None:
        host, port = base.removeprefix("http://").rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.buffer = b""

    def post(
        self, path: str, body: bytes, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        lines = [f"POST {path} HTTP/1.1", "Host: test", f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        status, _, answer = read_response(self.sock, self)
        return status, answer

    def close(self) -> None:
        self.sock.close()


def read_response(
    sock: socket.socket, keep: KeepAliveClient | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One response with a Content-Length; bytes past it stay in ``keep.buffer``."""
    data = keep.buffer if keep else b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed before the response headers: {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in header_lines)}
    length = int(headers["content-length"])
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed inside the response body")
        rest += chunk
    if keep:
        keep.buffer = rest[length:]
    return int(status_line.split()[1]), headers, rest[:length]


# Debian's chromium for the browser tests (Playwright's own downloads are not reachable).
# Without the background-networking flags it reaches for Google's hosts at start-up.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def write_wine_with_classes(folder: Path, classes: list[str]) -> None:
    """The shipped multiclass model (its real ONNX graph and card) in ``folder``, its
    classes renamed to ``classes`` (say, names with commas and quotes)."""
    import shutil

    shutil.copytree(SHIPPED / "wine", folder)
    card_path = folder / CARD_FILENAME
    text = card_path.read_text(encoding="utf-8")
    for index, name in enumerate(classes):
        text = text.replace(f'"class_{index}"', json.dumps(name))
    card = json.loads(text)
    card["name"] = folder.name
    card_path.write_text(json.dumps(card), encoding="utf-8")
