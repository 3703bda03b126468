"""The optional LLM of the ask endpoint: an OpenAI-compatible chat-completions API.

Guards, in order, before any byte leaves the gateway:
- the host of ``AOC_LLM_URL`` must be in ``AOC_LLM_ALLOWED_DOMAINS`` (exact, or a
  subdomain of an entry starting with '.'); an empty list means no LLM at all;
- redirects are not followed (a redirect could lead anywhere);
- the model sees the question, the parser's answer and the rows the parser selected,
  bounded in size: never settings, tokens, or anything else of the gateway's.
A refusal or failure leaves the parser's answer in place and says why.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from contracts.settings import Settings

MAX_PROMPT_CHARS = 24_000
MAX_ANSWER_CHARS = 4_000
SYSTEM_PROMPT = (
    "You answer an operator's question about AOC, a control plane of seven security engines. "
    "Use only the JSON rows given; they were selected from the control plane's read models for "
    "this question. If the rows do not answer it, say so. Be brief and exact: name systems, "
    "actors, times and counts as they appear in the rows. Never invent events."
)


class LlmRefused(Exception):
    """The LLM was not called or gave no usable answer; the message says why."""


def host_allowed(url: str, allowed: list[str]) -> bool:
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    if not host:
        return False
    for domain in allowed:
        if domain.startswith(".") and (host.endswith(domain) or host == domain[1:]):
            return True
        if host == domain:
            return True
    return False


@dataclass
class LlmClient:
    url: str
    model: str
    allowed: list[str]
    timeout: float
    api_key: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> LlmClient | None:
        if not settings.llm_url:
            return None
        key = None
        if settings.llm_api_key is not None:
            key = settings.llm_api_key.get_secret_value()
        elif settings.llm_api_key_file is not None:
            key = settings.llm_api_key_file.read_text().strip()
        return cls(
            settings.llm_url, settings.llm_model, settings.llm_allowed_domains, settings.llm_timeout_s, key
        )

    @property
    def label(self) -> str:
        return f"llm:{self.model}"

    def messages(self, question: str, parsed: dict[str, Any]) -> list[dict[str, str]]:
        rows = json.dumps(parsed["rows"], default=str)
        if len(rows) > MAX_PROMPT_CHARS:
            rows = rows[:MAX_PROMPT_CHARS] + " ... (truncated)"
        user = (
            f"Question: {question}\n\nThe parser's answer: {parsed['answer']}\n\n"
            f"Rows ({parsed['intent']}, {parsed['total']} matching, up to 50 shown):\n{rows}"
        )
        return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]

    async def refine(self, question: str, parsed: dict[str, Any]) -> str:
        if not host_allowed(self.url, self.allowed):
            host = urlsplit(self.url).hostname
            raise LlmRefused(
                f"AOC_LLM_URL host {host!r} is not in AOC_LLM_ALLOWED_DOMAINS; no LLM was called"
            )
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        body = {"model": self.model, "messages": self.messages(question, parsed), "temperature": 0}
        try:
            async with httpx.AsyncClient(timeout=self.timeout, follow_redirects=False) as http:
                response = await http.post(f"{self.url}/chat/completions", json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise LlmRefused(f"the LLM did not answer: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise LlmRefused(f"the LLM answered HTTP {response.status_code}")
        try:
            content = response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise LlmRefused("the LLM's reply is not a chat completion") from None
        if not isinstance(content, str) or not content.strip():
            raise LlmRefused("the LLM's reply is empty")
        return content.strip()[:MAX_ANSWER_CHARS]
