"""service.routes.common.DirectLanes: the middleware's direct table is generated from the
app's routes (register_direct), found by exact path or by path template."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from service.routes.common import DirectLanes, register_direct


async def _twin(scope, receive):
    return b"", "application/json"


def test_lanes_come_from_the_routes_exact_and_templated() -> None:
    router = APIRouter()

    @router.post("/plain")
    async def plain() -> None: ...

    @router.post("/things/{name}/versions/{version}/go")
    async def templated(name: str, version: str) -> None: ...

    @router.get("/other")
    async def other() -> None: ...

    register_direct(plain, _twin)
    register_direct(templated, _twin)
    app = FastAPI()
    app.include_router(router)
    lanes = DirectLanes(app.routes)
    assert lanes.find("POST", "/plain") == ("/plain", _twin, {})
    assert lanes.find("POST", "/things/a b/versions/7/go") == (
        "/things/{name}/versions/{version}/go",
        _twin,
        {"name": "a b", "version": "7"},
    )
    # Another method, a path of no direct route, or one the template does not match.
    assert lanes.find("GET", "/plain") is None
    assert lanes.find("GET", "/other") is None
    assert lanes.find("POST", "/things/a/go") is None
