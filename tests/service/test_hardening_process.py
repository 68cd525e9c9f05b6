"""The real ``serve`` process against what an attacker sends (issue 22): memory kept after
refusals, oversized request heads, connections that trickle or idle, clients that go away
mid-body. Every test is bounded in time and memory."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from _servicekit import running_serve


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
