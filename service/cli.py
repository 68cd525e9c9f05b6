"""``serve`` / ``python -m service``: run the API under uvicorn.

SageMaker starts the container as ``serve`` (and the image's entrypoint may pass it on),
so a leading ``serve`` word is accepted and ignored, as are options we do not know (with a
warning). Options are turned into ``COSTAWARE_*`` variables before the settings are read,
so worker processes, which read the environment themselves, see the same configuration.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import logging
import logging.config
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from service.settings import SECRET_SETTINGS, Settings

log = logging.getLogger("service.cli")

_OPTIONS = {
    "host": "COSTAWARE_HOST",
    "port": "COSTAWARE_PORT",
    "workers": "COSTAWARE_WORKERS",
    "model_dir": "COSTAWARE_MODEL_DIR",
    "default_model": "COSTAWARE_DEFAULT_MODEL",
    "log_level": "COSTAWARE_LOG_LEVEL",
    "loop": "COSTAWARE_LOOP",
    "http": "COSTAWARE_HTTP",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="serve",
        description="Serve the cost-aware models (settings also come from COSTAWARE_* "
        "variables; SAGEMAKER_BIND_TO_PORT and SAGEMAKER_MODEL_SERVER_WORKERS win).",
    )
    parser.add_argument("command", nargs="?", help="ignored; SageMaker passes 'serve'")
    parser.add_argument("--host")
    parser.add_argument("--port")
    parser.add_argument("--workers")
    parser.add_argument("--model-dir")
    parser.add_argument("--default-model")
    parser.add_argument("--log-level")
    parser.add_argument("--loop", help="auto (uvloop when installed), uvloop or asyncio")
    parser.add_argument("--http", help="auto (httptools when installed), httptools or h11")
    return parser


def describe_settings_error(exc: ValidationError) -> str:
    """One line naming the setting (and its variable) and what is wrong with it."""
    first = exc.errors()[0]
    field = str(first["loc"][0]) if first["loc"] else "settings"
    if field.upper().startswith(("COSTAWARE_", "SAGEMAKER_")):
        variable = field.upper()
    else:
        variable = f"COSTAWARE_{field.upper()}"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    # A key is never shown, not even the one that is wrong.
    shown = "" if field in SECRET_SETTINGS else f"={first.get('input')!r}"
    return f"serve: invalid setting {variable}{shown}: {first['msg']}{more}"


def log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging config plus our ``service`` loggers; uvicorn applies it in every
    worker process, where a basicConfig in this process would not reach."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["service"] = {
        "handlers": ["default"],
        "level": level.upper(),
        "propagate": False,
    }
    # The service's own access log (service.accesslog), where uvicorn's went: stdout.
    config["loggers"]["service.access"] = {
        "handlers": ["access"],
        "level": level.upper(),
        "propagate": False,
    }
    return config


def _importable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def server_stack(settings: Settings) -> tuple[str, str]:
    """The event loop and HTTP implementation to run: ``auto`` means uvloop and httptools
    when installed (uvicorn[standard], as the service is), else asyncio and h11 (uvicorn's
    own rule, resolved here so that the start-up line names what runs)."""
    loop = settings.loop
    if loop == "auto":
        loop = "uvloop" if _importable("uvloop") else "asyncio"
    http = settings.http
    if http == "auto":
        http = "httptools" if _importable("httptools") else "h11"
    return loop, http


def main(argv: Sequence[str] | None = None) -> int:
    args, unknown = _parser().parse_known_args(argv)
    for option, variable in _OPTIONS.items():
        value = getattr(args, option)
        if value is not None:
            os.environ[variable] = str(value)
    try:
        settings = Settings()
    except ValidationError as exc:
        print(describe_settings_error(exc), file=sys.stderr)
        return 2
    logging.config.dictConfig(log_config(settings.log_level))
    if unknown:
        log.warning("ignoring unknown arguments: %s", " ".join(unknown))

    import uvicorn

    from service.metrics import MULTIPROC_ENV
    from service.server import protocol_class

    loop, http = server_stack(settings)
    log.info("server stack: uvicorn with the %s event loop and the %s HTTP parser", loop, http)
    common: dict[str, Any] = {
        "loop": loop,
        # The service has no WebSocket route; "auto" would import a WebSocket library
        # into every worker for nothing.
        "ws": "none",
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "log_config": log_config(settings.log_level),
        # The app writes the access log itself, off the event loop (service.accesslog).
        "access_log": False,
        # uvicorn's protocol with the service's header and time limits (service/server.py).
        "http": protocol_class(http),
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        "timeout_keep_alive": settings.keep_alive_timeout_seconds,
        # On SIGTERM uvicorn stops accepting, lets running requests finish for up to this
        # long, then shuts the app down.
        "timeout_graceful_shutdown": settings.shutdown_timeout_seconds,
    }
    # uvicorn shuts down gracefully on SIGTERM and then re-raises the signal under the
    # handler that was in place before it started; making that handler a normal exit lets
    # `docker stop` and SageMaker see status 0 instead of death by signal (143).
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(0))
    if settings.workers == 1:
        from service.app import create_app

        uvicorn.run(create_app(settings), **common)
        return 0

    # Several workers: Prometheus samples go to a shared directory so that /metrics,
    # whichever worker answers it, reports all of them.
    own_dirs = []
    if not os.environ.get(MULTIPROC_ENV):
        own_dirs.append(tempfile.mkdtemp(prefix="costaware-metrics-"))
        os.environ[MULTIPROC_ENV] = own_dirs[-1]
    # Loads and unloads reach every worker through a shared directory (service.lifecycle).
    if settings.lifecycle_dir is None:
        own_dirs.append(tempfile.mkdtemp(prefix="costaware-lifecycle-"))
        os.environ["COSTAWARE_LIFECYCLE_DIR"] = own_dirs[-1]
    try:
        uvicorn.run("service.app:create_app", factory=True, workers=settings.workers, **common)
    finally:
        for own_dir in own_dirs:
            shutil.rmtree(own_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
