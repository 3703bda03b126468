"""Route modules. Every module here that defines ``router`` is mounted by the app
factory; a module may also define ``async def on_startup(state)`` and
``async def on_shutdown(state)`` (e.g. to follow its own slice of the stream or to
answer a NATS request). Adding an area of the API = adding one module."""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def route_modules() -> list[ModuleType]:
    modules = [importlib.import_module(f"{__name__}.{info.name}") for info in pkgutil.iter_modules(__path__)]
    return sorted((m for m in modules if hasattr(m, "router")), key=lambda m: m.__name__)
