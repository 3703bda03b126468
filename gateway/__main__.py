"""python -m gateway — serve the API on AOC_HTTP_HOST:AOC_HTTP_PORT."""

from __future__ import annotations

import uvicorn

from contracts.settings import get_settings
from gateway.app import create_app
from services.runtime.logs import configure_logging


def main() -> None:
    configure_logging("gateway")
    settings = get_settings()
    uvicorn.run(
        create_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,  # uvicorn logs through our JSON renderer (services.runtime.logs)
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main()
