"""A throw-away PostgreSQL cluster for the decision-log tests: Debian's postgresql, the
newest major version installed (``make test`` installs it when missing), initdb and pg_ctl
as the ``postgres`` user in a temporary folder, on a free port, removed afterwards."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


def _newest_bin() -> Path:
    """Debian installs each major version under /usr/lib/postgresql/<major>/bin (15 on
    Debian 12, 17 on Debian 13): the newest one present, else 15's path (for the message)."""
    found = [path.parent for path in Path("/usr/lib/postgresql").glob("*/bin/initdb")]
    found.sort(key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else -1)
    return found[-1] if found else Path("/usr/lib/postgresql/15/bin")


BIN = Path(os.environ["COSTAWARE_PG_BIN"]) if "COSTAWARE_PG_BIN" in os.environ else _newest_bin()
USER = "postgres"


def available() -> str | None:
    """Why no cluster can be started here, or None when one can."""
    if not (BIN / "initdb").exists():
        return f"PostgreSQL is not installed ({BIN}/initdb): apt-get install postgresql"
    try:
        pwd.getpwnam(USER)
    except KeyError:
        return "there is no postgres user"
    if os.geteuid() != 0 and pwd.getpwuid(os.geteuid()).pw_name != USER:
        return "starting a cluster as the postgres user needs root (or to be postgres)"
    return None


def _as_postgres(*command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    prefix = [] if pwd.getpwuid(os.geteuid()).pw_name == USER else ["runuser", "-u", USER, "--"]
    return subprocess.run(
        [*prefix, *command], check=True, capture_output=True, text=True, timeout=timeout
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Cluster:
    data: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://{USER}@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        _as_postgres(
            str(BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.data / "server.log"),
            "-o",
            f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1",
            "-w",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        _as_postgres(str(BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")


@contextmanager
def running_cluster() -> Iterator[Cluster]:
    root = Path(tempfile.mkdtemp(prefix="costaware-pg-"))
    try:
        shutil.chown(root, USER)
        data = root / "data"
        _as_postgres(
            str(BIN / "initdb"),
            "-D",
            str(data),
            "-U",
            USER,
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        )
        cluster = Cluster(data, _free_port())
        cluster.start()
        try:
            yield cluster
        finally:
            with contextlib.suppress(subprocess.CalledProcessError):  # stopped by the test
                cluster.stop("immediate")
    finally:
        shutil.rmtree(root, ignore_errors=True)
