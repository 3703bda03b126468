"""Answers of the ask endpoint, cached in NATS KV (bucket ``aoc_ask_cache``, 1 h TTL).

The key is the normalized question plus a digest of the rows the parser selected and the
answerer (parser, or llm:<model>): the same question over the same state gets the same
answer without calling the LLM again, and a change in the read models is a new key. The
cache is only a cache: when KV fails, the answer is computed and not stored."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import structlog
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

log = structlog.get_logger()


def cache_key(question: str, parsed: dict[str, Any], answerer: str) -> str:
    grounds = json.dumps(
        {"q": question, "intent": parsed["intent"], "rows": parsed["rows"], "answer": parsed["answer"]},
        sort_keys=True,
        default=str,
    )
    return "answer." + hashlib.sha256(f"{answerer}\n{grounds}".encode()).hexdigest()


class AskCache:
    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    async def get(self, key: str) -> dict[str, Any] | None:
        try:
            entry = await self.kv.get(key)
        except KeyNotFoundError:
            return None
        except Exception as exc:
            log.warning("ask.cache_unavailable", error=type(exc).__name__)
            return None
        try:
            return json.loads(entry.value or b"null")
        except ValueError:
            return None

    async def put(self, key: str, value: dict[str, Any]) -> None:
        try:
            await self.kv.put(key, json.dumps(value, default=str).encode())
        except Exception as exc:
            log.warning("ask.cache_not_stored", error=type(exc).__name__)
