"""The cost explorer: a page for the people who state the outcome values.

The page (``service/static/explorer/``) is plain HTML, CSS and JavaScript served from this
package, so it works with no network and no build step; every figure it shows is a field
of a ``POST /evaluate`` answer (the curve and prevalence options exist for it).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from starlette.responses import FileResponse, RedirectResponse
from starlette.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent.parent / "static" / "explorer"
ASSETS_PATH = "/explorer/assets"

router = APIRouter(include_in_schema=False)


@router.get("/explorer")
async def explorer_page() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html")


@router.get("/")
async def root(request: Request) -> RedirectResponse:
    # Relative, so it also works behind a proxy that mounts the service under a prefix;
    # the query string comes along, so a shared view survives a link to the root.
    query = request.url.query
    return RedirectResponse(f"explorer?{query}" if query else "explorer", status_code=307)


def mount_assets(app: FastAPI) -> None:
    app.mount(ASSETS_PATH, StaticFiles(directory=STATIC_DIR), name="explorer-assets")
