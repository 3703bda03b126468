"""The operator's web dashboard: /admin-ops and /admin-ops/factory.

Server side this is deliberately small: two Jinja2 templates that render the page
shell, and the static JS/CSS that fill it from the same /api/v1 endpoints any other
client uses (dashboard updates arrive by server-sent events). Nothing from the bus is
rendered here; the browser renders data as text only, under a strict CSP that allows
no inline script or style at all.
"""

from __future__ import annotations

import hashlib
from os import PathLike
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.types import Scope

HERE = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = HERE / "templates"
STATIC_DIR = HERE / "static"

# No inline script or style, no third-party origin, no framing, no plugins. Data is
# rendered with textContent/createElement, so even a hostile string in an event cannot
# run; the policy is the second wall.
CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "font-src 'self'",
        "manifest-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

router = APIRouter(tags=["ui"], include_in_schema=False)
templates = Jinja2Templates(directory=TEMPLATES_DIR)


def _asset_version() -> str:
    """A short hash of every static file: URLs change when any asset does, so a
    browser never mixes a new page with an old cached module."""
    digest = hashlib.sha256()
    for path in sorted(STATIC_DIR.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(STATIC_DIR).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


ASSET_VERSION = _asset_version()


class _Static(StaticFiles):
    """StaticFiles that revalidates (ETag) and never lets a browser sniff types."""

    def file_response(
        self,
        full_path: str | PathLike[str],
        stat_result: Any,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "no-cache"
        return response


router.mount("/static", _Static(directory=STATIC_DIR), name="static")


def _page(request: Request, template: str, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(
        request, template, {"asset_version": ASSET_VERSION, **context}, headers=SECURITY_HEADERS
    )


@router.api_route("/", methods=["GET", "HEAD"], response_class=RedirectResponse)
async def root() -> RedirectResponse:
    return RedirectResponse("/admin-ops", status_code=307)


@router.api_route("/admin-ops", methods=["GET", "HEAD"], response_class=HTMLResponse)
async def admin_ops(request: Request) -> HTMLResponse:
    return _page(request, "dashboard.html", page="dashboard", title="Admin Operations Center")


@router.api_route("/admin-ops/factory", methods=["GET", "HEAD"], response_class=HTMLResponse)
async def admin_ops_factory(request: Request) -> HTMLResponse:
    return _page(request, "factory.html", page="factory", title="Frontend Factory")
