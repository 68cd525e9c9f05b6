"""Service configuration: one pydantic-settings class, read from ``COSTAWARE_*`` variables.

SageMaker's own variables (``SAGEMAKER_BIND_TO_PORT``, ``SAGEMAKER_MODEL_SERVER_WORKERS``)
win over ours because the platform, not the operator, decides where the container listens.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from costaware.card import CARD_FILENAME, MAX_CARD_BYTES, MAX_MODEL_BYTES
from costaware.decision import MODEL_NAME_PATTERN

SAGEMAKER_MODEL_DIR = Path("/opt/ml/model")
# The checkout's (and the container's baked-in) models/, found relative to this package
# so that `serve` works from any working directory.
BUNDLED_MODEL_DIR = Path(__file__).resolve().parent.parent / "models"

LogLevel = Literal["critical", "error", "warning", "info", "debug"]

# What an HTTP Bearer credential may hold (RFC 6750's b64token), so every key can be sent.
_KEY = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")
# Settings whose values are never shown, not even in a start-up error.
SECRET_SETTINGS = frozenset({"api_keys", "admin_keys", "decision_log"})
Keys = Annotated[list[SecretStr], NoDecode]


class Settings(BaseSettings):
    """Everything the service reads from its environment, validated at start-up."""

    model_config = SettingsConfigDict(
        env_prefix="COSTAWARE_",
        extra="ignore",
        populate_by_name=True,
        protected_namespaces=(),
    )

    model_dir: Path | None = Field(
        default=None,
        description="Folder of model folders; unset means resolve_model_dir() decides.",
    )
    sagemaker_model_dir: Path = Field(
        default=SAGEMAKER_MODEL_DIR,
        description="Where SageMaker unpacks model.tar.gz; used when it holds models.",
    )
    default_model: str = Field(default="medical", pattern=MODEL_NAME_PATTERN)
    host: str = "0.0.0.0"
    port: int = Field(
        default=8080,
        ge=1,
        le=65535,
        validation_alias=AliasChoices("SAGEMAKER_BIND_TO_PORT", "COSTAWARE_PORT", "port"),
    )
    # The Open Inference Protocol over gRPC (service/protocols/v2/grpc_server.py) on this
    # port, on the same host, in every worker; unset: no gRPC server.
    grpc_port: int | None = Field(default=None, ge=1, le=65535)
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        validation_alias=AliasChoices(
            "SAGEMAKER_MODEL_SERVER_WORKERS", "COSTAWARE_WORKERS", "workers"
        ),
    )
    max_body_bytes: int = Field(default=6 * 1024 * 1024, ge=1024)
    # A request's line and headers in all (service/server.py): over it, 431 and the
    # connection is closed. 64 KiB is eight times what common proxies accept by default.
    max_header_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)
    # Connection time limits (service/server.py). Keep-alive: a connection with no request
    # in progress (before the first one too) is closed after this long. A request head
    # must arrive within header_timeout of its first byte, a body within body_timeout of
    # the end of its head (a 6 MB body in 30 s is 200 kB/s), else 408 and close.
    keep_alive_timeout_seconds: float = Field(default=5, gt=0, le=3600)
    header_timeout_seconds: float = Field(default=10, gt=0, le=3600)
    body_timeout_seconds: float = Field(default=30, gt=0, le=3600)
    log_level: LogLevel = "info"
    access_log: bool = True
    # The server stack: auto is uvloop and httptools (uvicorn[standard], installed with the
    # service); asyncio and h11 are there for debugging and comparison.
    loop: Literal["auto", "uvloop", "asyncio"] = "auto"
    http: Literal["auto", "httptools", "h11"] = "auto"
    # One intra-op and one inter-op thread per session: the models are tiny, and with
    # several uvicorn workers on a 2-core machine any more would only oversubscribe.
    ort_intra_op_threads: int = Field(default=1, ge=1, le=64)
    ort_inter_op_threads: int = Field(default=1, ge=1, le=64)
    # Small requests decoded in the same turn of the event loop share one session call
    # (service/batching.py); off, each request calls its session itself.
    batch_scoring: bool = True
    # FastAPI's native OpenTelemetry instrumentation. The serving environment installs no
    # OpenTelemetry SDK, so with this on every request would only pay for FastAPI looking
    # for providers that cannot be there; turn it on after installing and configuring one.
    opentelemetry: bool = False
    max_concurrent_transforms: int | None = Field(
        default=None, ge=1, description="Reported to Batch Transform; unset means `workers`."
    )
    # Model lifecycle (service/lifecycle.py). Watching the model directory: seconds between
    # scans, 0 = off (load and unload only through the API).
    model_poll_seconds: float = Field(default=0, ge=0, le=86400)
    # On SIGTERM: stop accepting, then give in-flight requests this long (SageMaker kills
    # a container 30 s after asking it to stop).
    shutdown_timeout_seconds: float = Field(default=25, ge=0, le=3600)
    # Where several workers publish each load and unload to each other; `serve` sets it to
    # a fresh temporary directory when it starts more than one worker.
    lifecycle_dir: Path | None = None
    # API keys (service/auth.py): comma-separated, and/or one per line in a file. Unset:
    # prediction, evaluation and model endpoints are open; load and unload never are.
    api_keys: Keys = Field(default_factory=list)
    api_keys_file: Path | None = None
    admin_keys: Keys = Field(default_factory=list)
    admin_keys_file: Path | None = None
    metrics_auth: bool = False
    # What one model folder's files may hold (service/registry.py): more is refused before
    # it is read, so a card naming a huge file (or /dev/zero) costs nothing.
    max_card_bytes: int = Field(default=MAX_CARD_BYTES, ge=1024)
    max_model_bytes: int = Field(default=MAX_MODEL_BYTES, ge=1024)
    # The decision log (service.decisionlog, docs/REALIZED.md): unset, a SQLite file in
    # state_dir; a SQLAlchemy URL (postgresql+psycopg://user:pass@host/db) for a store
    # several replicas share; "off" logs nothing (and /outcomes and /value answer 503).
    state_dir: Path = Field(default=Path(tempfile.gettempdir()) / "costaware")
    decision_log: str | None = None
    # Entries wait for an unavailable store up to this long, at most this many in all;
    # past either they are dropped and counted. The writer flushes every flush interval,
    # which is what a kill -9 can lose.
    decision_log_max_wait_seconds: float = Field(default=60, ge=0, le=86400)
    decision_log_max_entries: int = Field(default=100_000, ge=1, le=10_000_000)
    decision_log_flush_seconds: float = Field(default=0.2, gt=0, le=60)

    @field_validator("decision_log")
    @classmethod
    def _check_decision_log(cls, value: str | None) -> str | None:
        if value is None or value.strip().lower() == "off":
            return value if value is None else "off"
        if not value.startswith(("sqlite", "postgresql+psycopg://")):
            raise ValueError(
                "expected off, a sqlite+pysqlite:///path URL or a postgresql+psycopg:// URL"
            )
        return value

    def decision_log_url(self) -> str | None:
        """The store's URL, or None when the log is off."""
        if self.decision_log == "off":
            return None
        if self.decision_log is None:
            return f"sqlite+pysqlite:///{self.state_dir / 'decisions.sqlite'}"
        return self.decision_log

    @field_validator("log_level", "loop", "http", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("api_keys", "admin_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        return split_keys(value) if isinstance(value, str) else value

    @field_validator("api_keys", "admin_keys")
    @classmethod
    def _check_keys(cls, keys: list[SecretStr]) -> list[SecretStr]:
        check_keys([key.get_secret_value() for key in keys])
        return keys

    @field_validator("api_keys_file", "admin_keys_file")
    @classmethod
    def _check_keys_file(cls, path: Path | None) -> Path | None:
        if path is not None:
            read_keys_file(path)
        return path

    @field_validator("grpc_port")
    @classmethod
    def _grpc_port_free(cls, port: int | None, info: ValidationInfo) -> int | None:
        if port is not None and port == info.data.get("port"):
            raise ValueError(f"the gRPC port must differ from the HTTP port ({port})")
        return port

    @field_validator("metrics_auth")
    @classmethod
    def _metrics_need_keys(cls, on: bool, info: ValidationInfo) -> bool:
        if on and not any(
            info.data.get(name)
            for name in ("api_keys", "api_keys_file", "admin_keys", "admin_keys_file")
        ):
            raise ValueError("needs COSTAWARE_API_KEYS or COSTAWARE_ADMIN_KEYS (or their _FILE)")
        return on

    def inference_keys(self) -> list[str]:
        """Keys for prediction, evaluation and model endpoints (and /metrics when it is
        guarded): ``api_keys`` plus the keys file's."""
        return _all_keys(self.api_keys, self.api_keys_file)

    def admin_key_values(self) -> list[str]:
        """Keys for load and unload: ``admin_keys`` plus the keys file's."""
        return _all_keys(self.admin_keys, self.admin_keys_file)

    def resolved_model_dir(self) -> Path:
        return resolve_model_dir(self.model_dir, self.sagemaker_model_dir)

    def effective_max_concurrent_transforms(self) -> int:
        return self.max_concurrent_transforms or self.workers

    def max_payload_mb(self) -> int:
        return max(1, self.max_body_bytes // (1024 * 1024))


def holds_models(folder: Path) -> bool:
    """True when ``folder`` is a model folder or has at least one model folder inside."""
    if not folder.is_dir():
        return False
    if (folder / CARD_FILENAME).is_file():
        return True
    return any((child / CARD_FILENAME).is_file() for child in folder.iterdir() if child.is_dir())


def resolve_model_dir(configured: Path | None, sagemaker_dir: Path = SAGEMAKER_MODEL_DIR) -> Path:
    """The model directory to serve: the configured one, else SageMaker's when it holds
    models, else the bundled ``models/``."""
    if configured is not None:
        return configured
    if holds_models(sagemaker_dir):
        return sagemaker_dir
    return BUNDLED_MODEL_DIR


def split_keys(text: str) -> list[str]:
    """Keys separated by commas or line breaks; blank entries and ``#`` comment lines
    are dropped."""
    keys = []
    for line in text.splitlines():
        if line.strip().startswith("#"):
            continue
        keys.extend(part.strip() for part in line.split(","))
    return [key for key in keys if key]


def check_keys(keys: list[str]) -> None:
    """Refuse a key that could not be sent as a Bearer credential; the message names its
    position, never the key."""
    for position, key in enumerate(keys, start=1):
        if not _KEY.match(key):
            raise ValueError(
                f"key {position} of {len(keys)} has a character outside "
                "A-Z a-z 0-9 - . _ ~ + / (and = at the end)"
            )


def read_keys_file(path: Path) -> list[str]:
    try:
        keys = split_keys(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read the keys file ({type(exc).__name__})") from None
    if not keys:
        raise ValueError("the keys file holds no key")
    check_keys(keys)
    return keys


def _all_keys(keys: list[SecretStr], path: Path | None) -> list[str]:
    values = [key.get_secret_value() for key in keys]
    return values + (read_keys_file(path) if path is not None else [])
