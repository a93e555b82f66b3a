"""The FastAPI application: routers, error format, lifespan of the control plane."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from .. import __version__
from ..settings import Settings
from .api import (
    agent,
    backends,
    credentials,
    datasets,
    misc,
    pools,
    resources,
    scheduler,
    workflows,
)
from .context import Service
from .errors import ServiceError

log = logging.getLogger(__name__)


def create_app(settings: Settings, service: Service | None = None) -> FastAPI:
    svc = service or Service(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await svc.start()
        try:
            yield
        finally:
            await svc.stop()

    app = FastAPI(
        title="osmo",
        version=__version__,
        docs_url="/api/docs",
        openapi_url="/api/openapi.json",
        lifespan=lifespan,
    )
    app.state.service = svc

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError) -> JSONResponse:
        body: dict[str, object] = {"error_code": exc.error_code, "message": exc.message}
        if exc.errors:
            body["errors"] = exc.errors
        return JSONResponse(body, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "message": f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}",
                "key": ".".join(str(p) for p in e.get("loc", ())),
            }
            for e in exc.errors()
        ]
        message = (
            errors[0]["message"] if len(errors) == 1 else f"{len(errors)} invalid request fields"
        )
        return JSONResponse(
            {"error_code": "BAD_REQUEST", "message": message, "errors": errors}, status_code=400
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(
            {"error_code": "SERVER_ERROR", "message": f"internal error: {type(exc).__name__}"},
            status_code=500,
        )

    for module in (
        misc,
        workflows,
        pools,
        resources,
        backends,
        credentials,
        datasets,
        scheduler,
        agent,
    ):
        app.include_router(module.router)
    return app
