"""API keys: ``Authorization: Bearer <key>``.

- Inference keys (``COSTAWARE_API_KEYS``, ``COSTAWARE_API_KEYS_FILE``), when set, are
  required on every path except the open ones: ``/ping``, ``/health/*`` and
  ``/v2/health/*`` (orchestrators probe them), ``/docs``, its assets and ``/openapi.json``
  (so a user can read the API and enter a key), the explorer page and its assets (static
  files; its ``/evaluate`` calls are guarded), and ``/metrics`` unless
  ``COSTAWARE_METRICS_AUTH=true``. Unknown paths are guarded too, so a refusal never says
  which paths exist. Unset, those paths are open.
- Admin keys (``COSTAWARE_ADMIN_KEYS``, ``COSTAWARE_ADMIN_KEYS_FILE``) are required on
  load and unload, which are refused (403) when none is configured: they are never open.
  An admin key is also accepted wherever an inference key is.

The inference check runs in the service's one ASGI layer (service.middleware), before the
direct ``/predict`` path and the router alike; with no inference key and no metrics guard
the layer skips it entirely. The admin check is a dependency of the two admin routes, so
that the OpenAPI document marks them and ``/docs`` offers an "Authorize" box.

Only SHA-256 digests of the keys are kept; a presented key is hashed and compared with
every configured digest by :func:`hmac.compare_digest`, so neither the time taken nor any
message or log line tells anything about a key.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated, Any

from fastapi import FastAPI, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import Scope

from service.errors import ForbiddenError, ServiceError, UnauthorizedError
from service.settings import Settings

# The explorer's page and assets are static files a browser loads without a header; the
# /evaluate calls the page makes are guarded like any other.
OPEN_PATHS = frozenset({"/ping", "/docs", "/openapi.json", "/", "/explorer"})
OPEN_PREFIXES = ("/health/", "/v2/health/", "/docs-assets/", "/explorer/assets/")
METRICS_PATH = "/metrics"
SCHEME_NAME = "bearer"

bearer_scheme = HTTPBearer(
    scheme_name=SCHEME_NAME,
    description="An API key (COSTAWARE_API_KEYS) for predictions, evaluation and models; "
    "an admin key (COSTAWARE_ADMIN_KEYS) for load and unload.",
    auto_error=False,
)


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _matches(key: str, digests: tuple[bytes, ...]) -> bool:
    presented = _digest(key)
    found = False
    for digest in digests:  # no early exit: the time does not depend on which key matched
        found |= hmac.compare_digest(presented, digest)
    return found


def bearer_key(headers: Any) -> str | None:
    """The key of the first ``Authorization: Bearer <key>`` header in ASGI headers."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, key = value.decode("latin-1").strip().partition(" ")
            key = key.strip()
            return key if scheme.lower() == "bearer" and key else None
    return None


def is_open(path: str, metrics_guarded: bool) -> bool:
    if path == METRICS_PATH:
        return not metrics_guarded
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


class KeyRing:
    """The configured keys, as digests."""

    def __init__(self, inference: list[str], admin: list[str], metrics_guarded: bool) -> None:
        self.inference = tuple(_digest(key) for key in inference)
        self.admin = tuple(_digest(key) for key in admin)
        self.any = self.inference + self.admin
        self.metrics_guarded = metrics_guarded

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        return cls(settings.inference_keys(), settings.admin_key_values(), settings.metrics_auth)

    @property
    def guards_requests(self) -> bool:
        """Whether the ASGI layer has anything to check (else it skips the check)."""
        return bool(self.inference) or self.metrics_guarded

    def shows_details(self, headers: Any) -> bool:
        """Whether an open path (``/health/ready``) may tell this caller what a guarded one
        (``GET /models``) would: which folders were refused and why. Always when no
        inference key is configured (``/models`` is open then), else only to a caller
        presenting a valid key; a missing or wrong key is no error on an open path, it
        only gets the counts."""
        if not self.inference:
            return True
        key = bearer_key(headers)
        return key is not None and _matches(key, self.any)

    def guards(self, path: str) -> bool:
        if is_open(path, self.metrics_guarded):
            return False
        return path == METRICS_PATH or bool(self.inference)

    def refusal(self, scope: Scope) -> ServiceError | None:
        """Why the ASGI layer refuses this request, or None to let it through."""
        path = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        if not self.guards(path):
            return None
        key = bearer_key(scope["headers"])
        if key is None:
            return UnauthorizedError(
                f"{path} needs an API key: send the header 'Authorization: Bearer <key>'"
            )
        if not _matches(key, self.any):
            return UnauthorizedError("the API key is not valid", invalid_key=True)
        return None

    def check_admin(self, key: str | None) -> None:
        """Raise unless ``key`` is an admin key."""
        if not self.admin:
            raise ForbiddenError(
                "loading and unloading models is turned off: no admin key is configured "
                "(COSTAWARE_ADMIN_KEYS or COSTAWARE_ADMIN_KEYS_FILE)"
            )
        if key is None:
            raise UnauthorizedError(
                "loading and unloading models needs an admin key: send the header "
                "'Authorization: Bearer <admin key>'"
            )
        if _matches(key, self.admin):
            return
        if _matches(key, self.inference):
            raise ForbiddenError(
                "this API key may not load or unload models; use an admin key "
                "(COSTAWARE_ADMIN_KEYS)"
            )
        raise UnauthorizedError("the admin key is not valid", invalid_key=True)


async def require_admin(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
) -> None:
    """The admin routes' dependency (and their security requirement in OpenAPI)."""
    keys: KeyRing = request.app.state.keys
    keys.check_admin(credentials.credentials if credentials else None)


def document_security(app: FastAPI, keys: KeyRing) -> None:
    """Mark in the OpenAPI document the operations the ASGI layer guards (the admin routes
    are marked by their dependency), with their 401 answer."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        unauthorized = {
            "description": "No API key, or not a valid one",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
        }
        for path, operations in schema.get("paths", {}).items():
            if not keys.guards(path):
                continue
            for operation in operations.values():
                operation.setdefault("security", [{SCHEME_NAME: []}])
                operation.setdefault("responses", {}).setdefault("401", unauthorized)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
