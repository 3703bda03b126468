"""Error responses that cannot fail, and that carry the same headers as any other.

Starlette's own 500 (``ServerErrorMiddleware``) and FastAPI's 413 (its body limit) sit
*outside* every user middleware, so they went out without the security headers or
``X-Request-ID``. Both are answered here instead, inside the request-context middleware:

- ``ErrorGuard``: an exception that escapes the app before a response started becomes a
  JSON 500 naming the request id (the traceback goes to the log, never to the client);
- ``BodyLimit``: a body over ``AOC_MAX_BODY_BYTES`` gets a JSON 413, whether it announced
  its length or streamed chunks;
- ``validation_error``: FastAPI's 422, but every value it echoes back is bounded and
  encodable: a lone surrogate (``"\\ud800"``, or the raw bytes ``ed a0 80``, which
  Python's JSON reader turns into one) used to make the 422 handler itself fail with 500;
- ``too_deep``: JSON nested past the parser's recursion limit is the caller's mistake (400).
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import structlog
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger()

ECHO_LIMIT = 200  # characters of a refused value echoed back in a 422
MAX_ERRORS = 20  # errors listed in one 422
MAX_ECHO_DEPTH = 4


def safe_text(value: str, limit: int = ECHO_LIMIT) -> str:
    """``value`` as text any JSON encoder accepts (lone surrogates escaped), at most
    ``limit`` characters plus a note of how much was cut."""
    text = value.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) > limit:
        return f"{text[:limit]}… (+{len(text) - limit} chars)"
    return text


def safe_echo(value: Any, depth: int = 0) -> Any:
    """A refused input, made safe to send back: strings bounded and encodable, containers
    cut to a few items and a few levels."""
    if isinstance(value, str):
        return safe_text(value)
    if isinstance(value, bytes):
        return safe_text(value.decode("utf-8", "backslashreplace"))
    if value is None or isinstance(value, bool | int | float):
        return value
    if depth >= MAX_ECHO_DEPTH:
        return "…"
    if isinstance(value, dict):
        items = list(value.items())[:10]
        return {safe_text(str(key), 64): safe_echo(item, depth + 1) for key, item in items}
    if isinstance(value, list | tuple):
        return [safe_echo(item, depth + 1) for item in list(value)[:10]]
    return safe_text(repr(value))


def json_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    # ensure_ascii: whatever slipped through, the encoder cannot fail on it
    content = json.dumps(body, ensure_ascii=True, default=str).encode()
    return Response(content, status_code=status, headers=headers, media_type="application/json")


async def validation_error(_: Request, exc: RequestValidationError) -> Response:
    errors = []
    for error in list(exc.errors())[:MAX_ERRORS]:
        entry = {
            "loc": [safe_echo(part) for part in error.get("loc", ())][:10],
            "msg": safe_text(str(error.get("msg", "")), 500),
            "type": safe_text(str(error.get("type", "")), 64),
        }
        if "input" in error:
            entry["input"] = safe_echo(error["input"])
        errors.append(entry)
    return json_response(422, {"detail": errors})


async def too_deep(_: Request, __: RecursionError) -> Response:
    return json_response(400, {"detail": "the request body is nested too deeply"})


async def not_unicode(_: Request, __: UnicodeEncodeError) -> Response:
    # text that cannot be encoded came from the caller (a lone surrogate in a JSON string)
    detail = "the request holds text that is not valid Unicode (a lone surrogate)"
    return json_response(422, {"detail": detail})


class ErrorGuard:
    """The last resort: an exception that reaches here before a response started is
    answered with a JSON 500 (through the middlewares outside this one, so it carries
    the security headers and X-Request-ID), and logged with its traceback."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception:
            if started:
                raise  # the client has a status already; the server's error middleware logs it
            request_id = scope.get("state", {}).get("correlation_id", "")
            log.exception("http.unhandled_error", path=scope.get("path"), request_id=request_id)
            body = {"detail": "internal server error", "request_id": request_id}
            await json_response(500, body)(scope, receive, send)


class BodyTooLarge(Exception):
    pass


class BodyLimit:
    """413 for a body over ``limit`` bytes: at once when Content-Length says so, else as
    soon as the streamed chunks pass it (whatever the app then tried to answer is
    replaced by the 413)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    def _too_large(self) -> Response:
        return json_response(413, {"detail": f"request body larger than {self.limit} bytes"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.limit:
            await self._too_large()(scope, receive, send)
            return
        seen = 0
        exceeded = False
        answered = False

        async def limited_receive() -> Message:
            nonlocal seen, exceeded
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    exceeded = True
                    raise BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal answered
            if exceeded:
                if not answered:  # the app's answer to a half-read body is replaced
                    answered = True
                    await self._too_large()(scope, receive, send)
                return
            await send(message)

        with contextlib.suppress(BodyTooLarge):
            await self.app(scope, limited_receive, guarded_send)
        if exceeded and not answered:
            await self._too_large()(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
