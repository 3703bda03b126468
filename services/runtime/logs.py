"""Structured JSON logs for every service (structlog), one object per line on stderr.

Library loggers (uvicorn, nats, asyncio) go through the same renderer, so a log
shipper parses every line the same way. Context bound with
``structlog.contextvars`` — the service name, and per request or command the
correlation id — is on every line, which is how one command is followed from the
gateway's access log into the engine's lines and its audit event.
"""

from __future__ import annotations

import logging
import os
import sys

import structlog

SHARED_PROCESSORS: list[structlog.typing.Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.processors.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def configure_logging(service: str) -> None:
    level = getattr(logging, os.environ.get("AOC_LOG_LEVEL", "INFO").upper(), logging.INFO)
    structlog.configure(
        processors=[
            *SHARED_PROCESSORS,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            # extra={...} of a stdlib call becomes fields of the line, like structlog's kwargs
            foreign_pre_chain=[
                *SHARED_PROCESSORS,
                structlog.stdlib.add_logger_name,
                structlog.stdlib.ExtraAdder(),
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    structlog.contextvars.bind_contextvars(service=service)
