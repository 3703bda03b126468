"""The route modules, listed: the app mounts each one's ``router`` in this order.
Adding an area of the API = adding its module here. Route modules are thin: what they
read lives in the read models (gateway/readmodels), which the gateway's state starts."""

from __future__ import annotations

from types import ModuleType

from gateway.routes import (
    admin,
    advisories,
    ask,
    factory,
    health,
    jobs,
    ml,
    prometheus,
    siem,
    soc,
    ui,
    webhooks,
)

ROUTE_MODULES: tuple[ModuleType, ...] = (
    admin,
    advisories,
    ask,
    factory,
    health,
    jobs,
    ml,
    prometheus,
    siem,
    soc,
    ui,
    webhooks,
)


def route_modules() -> list[ModuleType]:
    return list(ROUTE_MODULES)
