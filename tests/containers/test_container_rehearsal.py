"""SageMaker rehearsal: the image's entrypoint, train then serve, against an /opt/ml-shaped tree.

No Docker engine runs here, so the serve image's /app is rebuilt in a temporary folder by
replaying the Dockerfile's own COPY and `uv sync` steps (offline, from the uv cache that
`make install` filled): the server then runs from exactly the environment the serve image
would have — serving dependencies only — through docker/entrypoint, as SageMaker starts it.
Training runs the `train` executable of the dev environment (which has the train extra).
"""

from __future__ import annotations

import io
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from _containerfiles import REPO, DockerIgnore, parse_dockerfile

from costaware.card import read_card, verify_model_file

PAYLOAD_TOTAL_BYTES = 20 * 1024 * 1024
READY_TIMEOUT_S = 90
STOP_TIMEOUT_S = 30


def _uv() -> str:
    local = REPO / ".tools/bin/uv"
    found = str(local) if local.exists() else shutil.which("uv")
    assert found, "uv is not installed: run `make install` first"
    return found


def _base_python() -> str:
    # The interpreter the Makefile builds its environments from; the image's is
    # /usr/local/bin/python3.11, the same minor version.
    return shutil.which("python3.11") or sys._base_executable


def _clean_env(**extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("COSTAWARE_", "SAGEMAKER_", "UV_", "VIRTUAL_ENV"))
    }
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def image_app(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The serve image's /app, built by replaying the Dockerfile's steps for that target."""
    dockerfile = parse_dockerfile(REPO / "Dockerfile")
    app = tmp_path_factory.mktemp("image") / "app"
    app.mkdir()
    env = _clean_env()
    for ins in dockerfile.stage("builder").of("ENV"):
        for word in shlex.split(ins.args):
            key, _, value = word.partition("=")
            env[key] = value
    env.update(
        UV_PYTHON=_base_python(),
        UV_OFFLINE="1",
        # Bytecode and full copies only make the image start faster; here they only cost time.
        UV_COMPILE_BYTECODE="0",
        UV_LINK_MODE="hardlink",
    )

    context = DockerIgnore((REPO / ".dockerignore").read_text(encoding="utf-8"))

    def copy_into_app(source: str, dest: str) -> None:
        # Only what reaches the build context, so a .dockerignore that drops something the
        # server needs fails here as it would in a real build.
        origin = REPO / source.rstrip("/")
        target = app / dest.removeprefix("/app").lstrip("/")
        if origin.is_dir():
            for relative in context.included_files(REPO, source.rstrip("/")):
                inside = Path(relative).relative_to(source.rstrip("/"))
                (target / inside).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / relative, target / inside)
        else:
            assert not context.excluded(source), f"{source} is not in the build context"
            target = target / origin.name if dest.endswith("/") else target
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, target)

    # serve-deps (the builder stage only installs uv itself), then runtime and serve.
    for stage_name in ("serve-deps", "runtime", "serve"):
        for ins in dockerfile.stage(stage_name).instructions:
            if ins.keyword == "COPY":
                flags, operands = ins.flags_and_operands()
                if "from" in flags:
                    continue
                *sources, dest = operands
                for source in sources:
                    copy_into_app(source, dest)
            elif ins.keyword == "RUN" and stage_name == "serve-deps":
                words = [w for w in shlex.split(ins.args) if not w.startswith("--mount=")]
                assert words[0] == "uv", ins.args
                result = subprocess.run(
                    [_uv(), *words[1:]], cwd=app, env=env, capture_output=True, text=True
                )
                assert result.returncode == 0, f"{ins.args}\n{result.stderr[-3000:]}"
    assert (app / ".venv/bin/serve").exists()
    return app


def test_serve_image_environment_has_no_tensorflow(image_app: Path):
    python = image_app / ".venv/bin/python"
    probe = "import importlib.util as u; print(u.find_spec('tensorflow'), u.find_spec('keras'))"
    result = subprocess.run([python, "-c", probe], capture_output=True, text=True)
    assert result.stdout.split() == ["None", "None"], result.stdout + result.stderr


# ---------------------------------------------------------------- helpers acting as SageMaker


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class Server:
    def __init__(self, app: Path, base: Path, log: Path, argv: list[str]) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        env = _clean_env(
            PATH=f"{app / '.venv/bin'}{os.pathsep}{os.environ.get('PATH', '')}",
            SAGEMAKER_BIND_TO_PORT=str(self.port),
            COSTAWARE_SAGEMAKER_BASE=str(base),
        )
        self._log_handle = log.open("wb")
        self.process = subprocess.Popen(
            [str(app / "docker/entrypoint"), *argv],
            env=env,
            cwd=base,
            stdout=self._log_handle,
            stderr=subprocess.STDOUT,
        )

    def logs(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-4000:]

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"server exited with {self.process.returncode}:\n{self.logs()}")
            try:
                status, _ = _get(f"{self.url}/ping", timeout=2)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        pytest.fail(f"/ping not 200 within {READY_TIMEOUT_S} s:\n{self.logs()}")

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT_S)
        finally:
            self._log_handle.close()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self._log_handle.close()


@pytest.fixture
def start_server(image_app: Path, tmp_path: Path) -> Iterator:
    started: list[Server] = []

    def start(base: Path, argv: list[str]) -> Server:
        server = Server(image_app, base, tmp_path / f"server-{len(started)}.log", argv)
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()


def _healthcheck(app: Path, port: int) -> int:
    env = _clean_env(SAGEMAKER_BIND_TO_PORT=str(port))
    script = app / "docker/healthcheck.py"
    return subprocess.run([sys.executable, script], env=env, capture_output=True).returncode


# ---------------------------------------------------------------- the /opt/ml tree


def _reference_data() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    # The experiment codes malignant as 1; scikit-learn codes it as 0.
    return data.data, 1 - data.target


def _lay_out_opt_ml(base: Path, model_folder: Path, hyperparameters: dict[str, str]) -> None:
    """What SageMaker does before it starts the container."""
    base.mkdir(parents=True)
    archive = base.parent / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(model_folder, arcname=model_folder.name)
    (base / "model").mkdir(parents=True)
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(base / "model", filter="data")
    config = base / "input/config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters), encoding="utf-8")
    train = base / "input/data/train"
    train.mkdir(parents=True)
    features, labels = _reference_data()
    table = np.column_stack([labels, features])
    np.savetxt(train / "train.csv", table, delimiter=",", fmt="%.10g")
    (base / "output").mkdir()


def _batch_csv(n_bytes: int, seed: int) -> bytes:
    """About ``n_bytes`` of CSV rows like the reference data, each row a plausible patient."""
    features, _ = _reference_data()
    rng = np.random.default_rng(seed)

    def rows(n: int) -> bytes:
        picked = features[rng.integers(0, len(features), n)]
        out = io.BytesIO()
        np.savetxt(
            out, picked * rng.lognormal(0.0, 0.05, size=picked.shape), delimiter=",", fmt="%.7g"
        )
        return out.getvalue()

    per_row = len(rows(1000)) / 1000
    body = rows(int(n_bytes / per_row * 1.05))
    # Whole lines only, just under n_bytes.
    return body[: body.rindex(b"\n", 0, n_bytes) + 1]


def _split_payloads(body: bytes, max_bytes: int) -> list[bytes]:
    """Batch Transform's MultiRecord split: whole lines, each payload at most max_bytes."""
    payloads: list[bytes] = []
    start = 0
    while start < len(body):
        end = min(start + max_bytes, len(body))
        if end < len(body):
            end = body.rindex(b"\n", start, end) + 1
        payloads.append(body[start:end])
        start = end
    return payloads


def _parse_answer_lines(
    lines: list[str], calibrated: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """CSV answer rows: score, label, close_confusion, out_of_range and, for a calibrated
    model only, its probability."""
    truth = {"true": True, "1": True, "false": False, "0": False}
    width = 5 if calibrated else 4
    scores, labels, close, probabilities = [], [], [], []
    for line in lines:
        fields = line.split(",")
        assert len(fields) == width, f"expected {width} columns: {line!r}"
        score, label, near, _out_of_range = fields[:4]
        scores.append(float(score))
        labels.append(int(float(label)))
        close.append(truth[near.strip().lower()])
        if calibrated:
            probabilities.append(float(fields[4]))
    return (
        np.array(scores),
        np.array(labels),
        np.array(close),
        np.array(probabilities) if calibrated else None,
    )


def _check_against_onnxruntime(model_folder: Path, csv_body: bytes, lines: list[str]) -> None:
    card = read_card(model_folder)
    session = ort.InferenceSession(
        str(verify_model_file(model_folder, card)), providers=["CPUExecutionProvider"]
    )
    features = np.loadtxt(io.BytesIO(csv_body), delimiter=",", dtype=np.float64, ndmin=2)
    calibration = card.calibration
    outputs = [card.onnx.output_name] + ([calibration.output_name] if calibration else [])
    ran = session.run(outputs, {card.onnx.input_name: features.astype(np.float32)})
    expected = ran[0].reshape(-1)
    scores, labels, close, probabilities = _parse_answer_lines(lines, calibration is not None)
    assert len(scores) == len(expected)
    np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-6)
    if calibration is not None:
        # The calibrated model's rows add the graph's own probability output.
        np.testing.assert_allclose(probabilities, ran[1].reshape(-1), rtol=0, atol=1e-6)
    # The label and the closeness flag stay on the raw score and the card's threshold.
    # Rows whose score sits within float noise of a cut could go either way; none is
    # expected, but they would not be a serving error.
    clear_label = np.abs(expected - card.threshold) > 1e-6
    np.testing.assert_array_equal(
        labels[clear_label], (expected >= card.threshold)[clear_label].astype(int)
    )
    distance = np.abs(expected - card.threshold)
    clear_close = np.abs(distance - card.margin) > 1e-6
    np.testing.assert_array_equal(close[clear_close], (distance < card.margin)[clear_close])


# ---------------------------------------------------------------- the rehearsal


def test_sagemaker_training_then_hosting_and_batch_transform(
    image_app: Path, tmp_path, start_server
):
    base = tmp_path / "opt/ml"
    shipped = image_app / "models/medical"
    hyperparameters = {
        "loss_function_type": "custom",
        "fn_cost": "5",
        "fp_cost": "1",
        "seed": "7",
        "name": "retrained",
    }
    _lay_out_opt_ml(base, shipped, hyperparameters)

    # Training job: `docker run IMAGE train`.
    train_env = _clean_env(
        PATH=f"{REPO / '.venv/bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        COSTAWARE_SAGEMAKER_BASE=str(base),
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    trained = subprocess.run(
        [str(image_app / "docker/entrypoint"), "train"],
        env=train_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert trained.returncode == 0, trained.stdout[-3000:] + trained.stderr[-3000:]
    assert not (base / "output/failure").exists()
    retrained = base / "model/retrained"
    card = read_card(retrained)
    verify_model_file(retrained, card)
    assert (card.loss.type, card.loss.fn_cost, card.loss.fp_cost) == ("custom", 5.0, 1.0)

    # Hosting: `docker run IMAGE serve` with the platform's port.
    server = start_server(base, ["serve"])
    server.wait_ready()
    assert _healthcheck(image_app, server.port) == 0

    status, body = _get(f"{server.url}/models")
    assert status == 200
    served = {model["name"] for model in json.loads(body)["models"]}
    assert served == {"medical", "retrained"}, "the model dir must resolve to <base>/model"

    # Batch Transform: ask for the limits, then send MultiRecord payloads within them.
    status, body = _get(f"{server.url}/execution-parameters")
    assert status == 200
    parameters = json.loads(body)
    assert parameters["BatchStrategy"] == "MULTI_RECORD"
    assert parameters["MaxConcurrentTransforms"] >= 1
    max_bytes = int(parameters["MaxPayloadInMB"]) * 1024 * 1024

    csv_body = _batch_csv(PAYLOAD_TOTAL_BYTES, seed=20)
    assert len(csv_body) > 0.99 * PAYLOAD_TOTAL_BYTES
    payloads = _split_payloads(csv_body, max_bytes)
    assert len(payloads) >= 2 and all(len(p) <= max_bytes for p in payloads)
    assert b"".join(payloads) == csv_body
    headers = {"Content-Type": "text/csv", "Accept": "text/csv"}
    answer_lines: list[str] = []
    for payload in payloads:
        status, body = _post(f"{server.url}/invocations", payload, headers)
        assert status == 200, body[:500]
        lines = body.decode("utf-8").splitlines()
        assert len(lines) == payload.count(b"\n")
        answer_lines.extend(lines)
    # Without a model named, Batch Transform gets the default model (medical).
    _check_against_onnxruntime(base / "model/medical", csv_body, answer_lines)

    # The retrained model, named the way a SageMaker client can.
    sample = b"".join(csv_body.splitlines(keepends=True)[:200])
    status, body = _post(
        f"{server.url}/invocations",
        sample,
        {**headers, "X-Amzn-SageMaker-Custom-Attributes": "model=retrained"},
    )
    assert status == 200, body[:500]
    _check_against_onnxruntime(retrained, sample, body.decode("utf-8").splitlines())

    # SageMaker stops the container with SIGTERM and expects it gone promptly.
    assert server.terminate() == 0, server.logs()
    assert _healthcheck(image_app, server.port) != 0


def test_no_argument_serves_the_baked_in_models_when_opt_ml_model_is_empty(
    image_app: Path, tmp_path, start_server
):
    base = tmp_path / "opt/ml"
    (base / "model").mkdir(parents=True)
    server = start_server(base, [])
    server.wait_ready()
    status, body = _get(f"{server.url}/models")
    assert status == 200
    served = {model["name"] for model in json.loads(body)["models"]}
    baked = {p.parent.name for p in (image_app / "models").glob("*/model-card.json")}
    assert baked and served == baked
    assert server.terminate() == 0, server.logs()
