"""The real ``serve`` process against what an attacker sends (issue 22): memory kept after
refusals, oversized request heads, connections that trickle or idle, clients that go away
mid-body. Every test is bounded in time and memory."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from _servicekit import KeepAliveClient, running_serve


def rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` in MB, from /proc (the serve process itself)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


@pytest.fixture(scope="module")
def server(model_dir: Path, tmp_path_factory) -> Iterator[tuple[str, subprocess.Popen]]:
    with running_serve(model_dir, tmp_path_factory.mktemp("cwd")) as s:
        yield s


def test_refused_csv_bodies_leave_no_memory_behind(server):
    # A 500 kB body of one-column rows for a 30-feature model: a 422 after the parser has
    # split it into 250,000 lines (~25 MB of Python objects). The refusal used to keep
    # them in a reference cycle (through the thread pool's future), ~25 MB per request.
    base, process = server
    body = b"0\n" * 250_000
    csv = {"content-type": "text/csv"}
    with httpx.Client(base_url=base, timeout=60) as client:
        first = client.post("/invocations", content=body, headers=csv)
        assert first.status_code == 422
        assert first.json()["detail"] == "body, row 1: expected 30 columns, found 1"
        before = rss_mb(process.pid)
        for _ in range(20):
            assert client.post("/invocations", content=body, headers=csv).status_code == 422
        assert client.get("/ping").status_code == 200
        grown = rss_mb(process.pid) - before
    # Twenty refusals kept ~500 MB before the fix; now the pages are reused.
    assert grown < 50, f"RSS grew by {grown:.0f} MB over 20 refused bodies"


def _connect(base: str, timeout: float = 10.0) -> socket.socket:
    host, port = base.removeprefix("http://").rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=timeout)


def _read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (a socket timeout fails the test:
    the server kept the connection open)."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def _status_and_error(answer: bytes) -> tuple[int, dict]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"connection: close" in head.lower()
    return int(head.split()[1]), json.loads(body)


ROW = [0.5] * 30


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_oversized_request_head_is_refused_and_predict_unaffected(model_dir, tmp_path, http):
    with running_serve(model_dir, tmp_path, COSTAWARE_HTTP=http) as (base, _):
        predicted: list[int] = []

        def predict_meanwhile() -> None:
            with httpx.Client(base_url=base, timeout=30) as client:
                for _ in range(20):
                    predicted.append(client.post("/predict", json={"instances": [ROW]}).status_code)

        sock = _connect(base)
        sent = 0
        worker = threading.Thread(target=predict_meanwhile)
        worker.start()
        try:
            # One header value that never ends, 100 kB at a time, up to 20 MB.
            sock.sendall(b"GET /ping HTTP/1.1\r\nHost: test\r\nX-Big: ")
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                while sent < 20_000_000:
                    sock.sendall(b"a" * 100_000)
                    sent += 100_000
            status, error = _status_and_error(_read_until_closed(sock))
        finally:
            sock.close()
            worker.join(timeout=60)
        # A head that arrives whole in one read is measured too.
        with _connect(base) as whole:
            fields = b"".join(b"X-%d: %s\r\n" % (i, b"b" * 1000) for i in range(100))
            whole.sendall(b"GET /ping HTTP/1.1\r\nHost: test\r\n" + fields + b"\r\n")
            whole_status, _ = _status_and_error(_read_until_closed(whole))
        # Under the bound (60 kB of headers) a request is served.
        fields = {f"x-{i}": "b" * 1000 for i in range(60)}
        below = httpx.get(f"{base}/ping", headers=fields).status_code
    assert (status, error["error"]) == (431, "request_header_fields_too_large")
    assert "65536 bytes (COSTAWARE_MAX_HEADER_BYTES)" in error["detail"]
    assert sent < 5_000_000  # refused near the bound, not after reading the lot
    assert whole_status == 431
    assert below == 200
    assert predicted == [200] * 20


@pytest.fixture(scope="module")
def impatient_server(model_dir: Path, tmp_path_factory) -> Iterator[tuple[str, subprocess.Popen]]:
    bounds = {
        "COSTAWARE_KEEP_ALIVE_TIMEOUT_SECONDS": "1",
        "COSTAWARE_HEADER_TIMEOUT_SECONDS": "1",
        "COSTAWARE_BODY_TIMEOUT_SECONDS": "1",
    }
    with running_serve(model_dir, tmp_path_factory.mktemp("cwd"), **bounds) as s:
        yield s


def _trickle(sock: socket.socket, stop: threading.Event) -> None:
    # One byte every 0.2 s until the server closes the connection or the test ends.
    with contextlib.suppress(OSError):
        while not stop.wait(0.2):
            sock.sendall(b"x")


def test_a_connection_that_sends_nothing_is_closed(impatient_server):
    base, _ = impatient_server
    with _connect(base) as sock:
        assert _read_until_closed(sock) == b""


@pytest.mark.parametrize(
    ("start", "variable"),
    [
        (b"GET /ping HTTP/1.1\r\nHost: test\r\nX-Slow: ", "COSTAWARE_HEADER_TIMEOUT_SECONDS"),
        (
            b"POST /invocations HTTP/1.1\r\nHost: test\r\nContent-Type: text/csv\r\n"
            b"Content-Length: 1000\r\n\r\n0",
            "COSTAWARE_BODY_TIMEOUT_SECONDS",
        ),
    ],
    ids=["head", "body"],
)
def test_a_trickled_request_is_answered_408_and_closed(impatient_server, start, variable):
    base, _ = impatient_server
    stop = threading.Event()
    with _connect(base) as sock:
        sock.sendall(start)
        trickler = threading.Thread(target=_trickle, args=(sock, stop))
        trickler.start()
        try:
            status, error = _status_and_error(_read_until_closed(sock))
        finally:
            stop.set()
            trickler.join()
    assert (status, error["error"]) == (408, "request_timeout")
    assert error["detail"].endswith(f"within 1 s ({variable})")


def test_keep_alive_connection_serves_requests_then_closes_when_idle(impatient_server):
    base, _ = impatient_server
    # uvicorn's own default (5 s) would outlast this socket's timeout.
    client = KeepAliveClient(base, timeout=4)
    try:
        for _ in range(3):
            status, _ = client.post("/predict", json.dumps({"instances": [ROW]}).encode())
            assert status == 200
        assert _read_until_closed(client.sock) == b""
    finally:
        client.close()


def test_client_gone_mid_body_is_one_debug_line(model_dir, tmp_path):
    with running_serve(model_dir, tmp_path, COSTAWARE_LOG_LEVEL="debug") as (base, process):
        for path in ("/invocations", "/evaluate", "/invocations"):
            with _connect(base) as sock:
                sock.sendall(
                    f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: text/csv\r\n"
                    "Content-Length: 100000\r\n\r\n".encode()
                    + b"0," * 1000
                )
                time.sleep(0.2)  # the request is under way, waiting for the rest
        assert httpx.get(f"{base}/ping").status_code == 200
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    gone = [line for line in stderr.splitlines() if "client disconnected" in line]
    assert gone == [
        f"DEBUG:    client disconnected before its whole request body arrived: POST {path}"
        for path in ("/invocations", "/evaluate", "/invocations")
    ]
    assert "Traceback" not in stderr and "ClientDisconnect" not in stderr


def test_one_access_line_per_request_as_shipped(model_dir, tmp_path):
    # The default settings (as `make run`): every request, answered or refused, is one
    # line on stdout with its status, latency and model; written by the access log's
    # thread, and whatever is pending when SIGTERM comes is written before exit.
    with running_serve(model_dir, tmp_path) as (base, process):
        with httpx.Client(base_url=base) as client:
            for _ in range(5):
                assert client.post("/predict", json={"instances": [ROW]}).status_code == 200
            assert client.post("/predict", json={"instances": [ROW[:3]]}).status_code == 422
            assert client.get("/models/builtin").status_code == 200
            assert client.get("/no%0aINFO: forged").status_code == 404
        process.send_signal(signal.SIGTERM)
        stdout, _ = process.communicate(timeout=30)
    lines = [line for line in stdout.splitlines() if '"' in line and "/ping" not in line]
    shapes = [
        re.sub(r"127\.0\.0\.1:\d+", "CLIENT", re.sub(r"\d+\.\d\d ms", "T ms", line))
        for line in lines
    ]
    assert shapes == [
        *['INFO:     CLIENT - "POST /predict HTTP/1.1" 200 T ms medical'] * 5,
        'INFO:     CLIENT - "POST /predict HTTP/1.1" 422 T ms -',
        'INFO:     CLIENT - "GET /models/builtin HTTP/1.1" 200 T ms builtin',
        'INFO:     CLIENT - "GET /no\\nINFO: forged HTTP/1.1" 404 T ms -',
    ]
