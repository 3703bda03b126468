"""/api/v1/ask — questions about the control plane in plain words, answered from the
read models with the rows used (gateway/ask/). Off unless AOC_AI_FEATURES_ENABLED=true:
then the endpoint answers 404 with how to turn it on."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from gateway.ask import intents
from gateway.ask.cache import cache_key
from gateway.ask.llm import LlmRefused
from gateway.deps import Gateway, get_gateway
from gateway.isotime import iso
from gateway.state import GatewayState

MAX_QUESTION = 500
DISABLED = (
    "the ask endpoint is off: set AOC_AI_FEATURES_ENABLED=true on the gateway to enable it "
    "(docs/operator-tools.md)"
)


async def enabled(gw: GatewayState = Depends(get_gateway)) -> None:
    if not gw.settings.ai_features_enabled or gw.ask is None:
        raise HTTPException(404, DISABLED)


router = APIRouter(prefix="/api/v1/ask", tags=["ask"], dependencies=[Depends(enabled)])


class Question(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(min_length=1, max_length=MAX_QUESTION)


class AskAnswer(BaseModel):
    question: str
    intent: str
    answer: str
    parsed_answer: str  # the intent parser's own answer (what an LLM, if any, reworded)
    rows: list[dict[str, Any]]
    total: int
    sources: list[str]
    window: dict[str, str | None] | None
    answered_by: str  # parser | llm:<model>
    llm_error: str | None = None
    cached: bool
    generated_at: str


@router.post("", response_model=AskAnswer, summary="Ask about the control plane; the answer shows its rows")
async def ask(body: Question, gw: Gateway) -> dict[str, Any]:
    question = body.question.strip()
    if not question:
        raise HTTPException(422, "the question is empty")
    area = gw.ask
    assert area is not None  # the router's dependency made sure
    sources = intents.Sources(
        activity=gw.models.activity,
        systems=gw.models.systems,
        heartbeat_timeout=gw.settings.heartbeat_timeout or 15.0,
        alerts=gw.models.alerts,
        jobs=gw.models.jobs,
    )
    parsed = intents.answer(question, sources).as_dict()
    use_llm = area.llm is not None and parsed["intent"] != "unknown"
    answerer = area.llm.label if use_llm and area.llm else "parser"
    key = cache_key(intents.normalize(question), parsed, answerer)
    cached = await area.cache.get(key)
    if cached is not None:
        return {**cached, "question": question, "cached": True}
    result: dict[str, Any] = {
        "question": question,
        **parsed,
        "parsed_answer": parsed["answer"],
        "answered_by": "parser",
        "llm_error": None,
        "generated_at": iso(datetime.now(UTC)),
    }
    if use_llm and area.llm is not None:
        try:
            result["answer"] = await area.llm.refine(question, parsed)
            result["answered_by"] = area.llm.label
        except LlmRefused as exc:
            result["llm_error"] = str(exc)
    if result["llm_error"] is None:  # a failed LLM call is not cached: the next ask tries again
        await area.cache.put(key, result)
    return {**result, "cached": False}
