"""A small OpenAI-compatible chat-completions server for the tests: a real HTTP server
(uvicorn on a free port) that records every request and answers from the rows it was
given, so a test can tell an LLM-refined answer from the parser's own."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from services.launcher.natsserver import free_port


@dataclass
class LlmServer:
    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200  # what the next replies answer with

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def completions(request: Request) -> JSONResponse:
            body = await request.json()
            self.requests.append({"headers": dict(request.headers), "body": body})
            if self.status != 200:
                return JSONResponse({"error": {"message": "overloaded"}}, status_code=self.status)
            user = body["messages"][-1]["content"]
            systems = sorted(set(re.findall(r'"system": "([a-z-]+)"', user)))
            content = f"Refined: the rows name {', '.join(systems) or 'no system'}."
            return JSONResponse(
                {
                    "id": "chatcmpl-test",
                    "object": "chat.completion",
                    "model": body["model"],
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
                }
            )

        return app

    def prompts(self) -> list[str]:
        return [json.dumps(r["body"]) for r in self.requests]


@contextlib.asynccontextmanager
async def llm_server():
    server = LlmServer()
    port = free_port()
    config = uvicorn.Config(server.app(), host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    runner = uvicorn.Server(config)
    task = asyncio.create_task(runner.serve())
    while not runner.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    server.url = f"http://127.0.0.1:{port}/v1"
    try:
        yield server
    finally:
        runner.should_exit = True
        await task
