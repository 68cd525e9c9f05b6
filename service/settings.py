"""Service configuration: one pydantic-settings class, read from ``COSTAWARE_*`` variables.

SageMaker's own variables (``SAGEMAKER_BIND_TO_PORT``, ``SAGEMAKER_MODEL_SERVER_WORKERS``)
win over ours because the platform, not the operator, decides where the container listens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from costaware.card import CARD_FILENAME
from costaware.decision import MODEL_NAME_PATTERN

SAGEMAKER_MODEL_DIR = Path("/opt/ml/model")
# The checkout's (and the container's baked-in) models/, found relative to this package
# so that `serve` works from any working directory.
BUNDLED_MODEL_DIR = Path(__file__).resolve().parent.parent / "models"

LogLevel = Literal["critical", "error", "warning", "info", "debug"]


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
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        validation_alias=AliasChoices(
            "SAGEMAKER_MODEL_SERVER_WORKERS", "COSTAWARE_WORKERS", "workers"
        ),
    )
    max_body_bytes: int = Field(default=6 * 1024 * 1024, ge=1024)
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

    @field_validator("log_level", "loop", "http", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

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
