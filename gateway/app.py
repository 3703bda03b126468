"""The FastAPI app factory. No global broker or connection: everything lives in the
lifespan and on ``app.state.gateway``."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from contracts.settings import Settings, get_settings
from gateway.control import EngineTimeout, UnknownSystem
from gateway.routes import route_modules
from gateway.state import GatewayState


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    modules = route_modules()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        gateway = GatewayState(settings)
        await gateway.open()
        app.state.gateway = gateway
        for module in modules:
            if hasattr(module, "on_startup"):
                await module.on_startup(gateway)
        try:
            yield
        finally:
            for module in reversed(modules):
                if hasattr(module, "on_shutdown"):
                    await module.on_shutdown(gateway)
            await gateway.close()

    app = FastAPI(title="AOC — Admin Operations Center", version="0.1.0", lifespan=lifespan)
    for module in modules:
        app.include_router(module.router)

    @app.exception_handler(UnknownSystem)
    async def unknown_system(_: Request, exc: UnknownSystem) -> JSONResponse:
        return JSONResponse({"detail": str(exc), "system": exc.system}, status_code=404)

    @app.exception_handler(EngineTimeout)
    async def engine_timeout(_: Request, exc: EngineTimeout) -> JSONResponse:
        return JSONResponse({"detail": str(exc), "system": exc.system}, status_code=504)

    @app.get("/health")
    async def health(request: Request) -> Any:
        body = await request.app.state.gateway.health()
        return JSONResponse(body, status_code=200 if body["status"] == "ok" else 503)

    return app
