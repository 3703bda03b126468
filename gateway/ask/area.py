"""What POST /api/v1/ask needs while the gateway runs: the answer cache (NATS KV) and the
optional LLM client. Opened with the gateway when AOC_AI_FEATURES_ENABLED is on."""

from __future__ import annotations

from nats.js import JetStreamContext

from contracts.settings import Settings
from contracts.streams import ask_cache_bucket, ensure_bucket
from gateway.ask.cache import AskCache
from gateway.ask.llm import LlmClient


class AskArea:
    def __init__(self, cache: AskCache, llm: LlmClient | None) -> None:
        self.cache = cache
        self.llm = llm

    @classmethod
    async def open(cls, js: JetStreamContext, settings: Settings) -> AskArea:
        kv = await ensure_bucket(js, ask_cache_bucket(settings))
        return cls(AskCache(kv), LlmClient.from_settings(settings))
