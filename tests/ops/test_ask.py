"""POST /api/v1/ask: off by default (404); on, the intent parser answers the common
questions from the read models with the rows it used, offline; answers are cached in
NATS KV; an OpenAI-compatible LLM (a real local server the test starts) rewords them,
seeing only the selected rows, and only when its host is allowed.

A paid external model is outside these tests."""

from __future__ import annotations

import asyncio
import time

import msgspec
import pytest
from pydantic import SecretStr

from contracts import subjects
from gateway.ask import intents
from services.ml.generator import generate
from tests.conftest import ADMIN_TOKEN, api_client, serve_gateway
from tests.ops.conftest import Tokens
from tests.ops.llm_server import llm_server

ASK = "/api/v1/ask"


def ask_settings(settings, **changes):
    return settings.model_copy(update={"ai_features_enabled": True, **changes})


async def test_off_by_default(settings, api_headers):
    async with serve_gateway(settings) as url, api_client(url, api_headers) as http:
        for body in ({"question": "which engines are stopped?"}, {"nope": 1}, None):
            response = await http.post(ASK, json=body)
            assert response.status_code == 404, response.text
            assert "AOC_AI_FEATURES_ENABLED" in response.json()["detail"]


async def eventually(check, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while not (value := await check()):
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)
    return value


async def test_the_parser_answers_from_the_read_models(engines, settings, api_headers, tokens: Tokens, nc):
    async with (
        serve_gateway(ask_settings(settings)) as url,
        api_client(url, api_headers) as admin,
        api_client(url, tokens.header(tokens.viewer)) as viewer,
    ):
        stop = await admin.post("/api/v1/admin/emergency-stop/deploy", json={"reason": "release freeze"})
        assert stop.status_code == 200 and stop.json()["state"] == "stopped"
        alerts = [msgspec.to_builtins(item.alert) for item in generate(40, seed=81)]
        assert (await admin.post("/api/v1/soc/alerts", json=alerts)).status_code == 202

        async def triaged():
            return (await admin.get("/api/v1/soc/alerts", params={"limit": 1000})).json()["count"] == 40

        await eventually(triaged)

        async def ask(question: str) -> dict:
            response = await viewer.post(ASK, json={"question": question})
            assert response.status_code == 200, response.text
            return response.json()

        stopped = await ask("Which engines are stopped?")
        assert stopped["intent"] == "engines_in_state" and stopped["answered_by"] == "parser"
        assert [row["system"] for row in stopped["rows"]] == ["deploy"] and "deploy" in stopped["answer"]
        running = await ask("what's running")
        assert len(running["rows"]) == 6 and "deploy" not in {r["system"] for r in running["rows"]}

        who = await ask("Who stopped deploy and why?")
        assert who["intent"] == "who_changed"
        assert "admin stopped deploy" in who["answer"] and '"release freeze"' in who["answer"]
        assert who["rows"][0]["action"] == "command_stop" and who["rows"][0]["actor"] == "admin"
        nobody = await ask("who restarted ml-retrain?")
        assert (
            nobody["intent"] == "who_changed"
            and nobody["rows"] == []
            and "No accepted restart" in nobody["answer"]
        )

        history = await ask("What happened to soc-cycle in the last hour?")
        assert history["intent"] == "system_history" and history["window"]["label"] == "last 1 hour"
        assert history["rows"] and {row["system"] for row in history["rows"]} == {"soc-cycle"}
        logged = (
            await admin.get("/api/v1/admin/activity-log", params={"system": "soc-cycle", "limit": 1000})
        ).json()
        assert history["total"] == len(
            [e for e in logged["events"] if e["timestamp"] >= history["window"]["since"]]
        )

        escalated = await ask("How many alerts were escalated today?")
        assert escalated["intent"] == "alerts_count" and escalated["window"]["label"] == "today"
        decisions = (
            await admin.get("/api/v1/soc/alerts", params={"decision": "escalate", "limit": 1000})
        ).json()
        assert escalated["total"] == decisions["count"] and escalated["answer"].startswith(
            f"{decisions['count']} alerts"
        )
        assert all(row["decision"] == "escalate" for row in escalated["rows"])

        failed = await ask("what failed in the last 2 hours?")
        assert failed["intent"] == "failures" and failed["window"]["label"] == "last 2 hours"
        jobs = await ask("which jobs are running?")
        assert jobs["intent"] == "jobs"
        unknown = await ask("what is the meaning of life")
        assert (
            unknown["intent"] == "unknown" and unknown["rows"] == [] and "which engines" in unknown["answer"]
        )

        # the same question over the same state: from the cache (NATS KV)
        again = await ask("which engines are  STOPPED?")
        assert again["cached"] is True and again["rows"] == stopped["rows"] and stopped["cached"] is False
        kv = await nc.jetstream().key_value(subjects.ASK_CACHE_BUCKET)
        assert len(await kv.keys()) >= 8
        assert (await kv.status()).ttl == 3600  # answers expire after an hour

        for bad in ({"question": ""}, {"question": "x" * 501}, {"question": "ok", "extra": 1}, {}):
            assert (await viewer.post(ASK, json=bad)).status_code == 422
        await admin.post("/api/v1/admin/start/deploy", json={"reason": "freeze over"})


async def test_an_allowed_llm_rewords_from_the_rows_only(engines, settings, api_headers):
    async with llm_server() as llm:
        changes = {"llm_url": llm.url, "llm_allowed_domains": ["127.0.0.1"], "llm_model": "test-model"}
        changes["llm_api_key"] = SecretStr("sk-test-key")
        async with (
            serve_gateway(ask_settings(settings, **changes)) as url,
            api_client(url, api_headers) as http,
        ):
            await http.post("/api/v1/admin/emergency-stop/frontend-factory", json={"reason": "template bug"})
            first = (await http.post(ASK, json={"question": "which engines are stopped?"})).json()
            assert first["answered_by"] == "llm:test-model", first
            assert first["answer"] == "Refined: the rows name frontend-factory."
            assert first["parsed_answer"].startswith("1 of 7 engines are stopped")
            [request] = llm.requests
            assert request["headers"]["authorization"] == "Bearer sk-test-key"
            assert request["body"]["model"] == "test-model"
            prompt = llm.prompts()[0]
            assert "frontend-factory" in prompt and "which engines are stopped?" in prompt
            assert ADMIN_TOKEN not in prompt and "sk-test-key" not in prompt  # no secrets leave
            assert "soc-cycle" not in prompt  # only the rows the parser selected

            cached = (await http.post(ASK, json={"question": "which engines are stopped?"})).json()
            assert cached["cached"] is True and cached["answer"] == first["answer"] and len(llm.requests) == 1

            # the model fails: the parser's answer stands, and nothing is cached
            llm.status = 503
            who = (await http.post(ASK, json={"question": "who stopped frontend-factory?"})).json()
            assert who["answered_by"] == "parser" and who["llm_error"] == "the LLM answered HTTP 503"
            assert "template bug" in who["answer"]
            llm.status = 200
            who = (await http.post(ASK, json={"question": "who stopped frontend-factory?"})).json()
            assert (
                who["answered_by"] == "llm:test-model" and who["cached"] is False and len(llm.requests) == 3
            )
            await http.post("/api/v1/admin/start/frontend-factory", json={"reason": "fixed"})


async def test_a_host_outside_the_allowlist_is_never_called(settings, api_headers):
    async with llm_server() as llm:
        for allowed in ([], ["llm.example.com", ".example.org"]):
            changes = {"llm_url": llm.url, "llm_allowed_domains": allowed}
            async with (
                serve_gateway(ask_settings(settings, **changes)) as url,
                api_client(url, api_headers) as http,
            ):
                answer = (await http.post(ASK, json={"question": "which engines are running?"})).json()
                assert (
                    answer["answered_by"] == "parser"
                    and "not in AOC_LLM_ALLOWED_DOMAINS" in answer["llm_error"]
                )
        assert llm.requests == []


@pytest.mark.parametrize(
    ("url", "allowed", "ok"),
    [
        ("https://llm.example.com/v1", ["llm.example.com"], True),
        ("https://api.llm.example.com/v1", [".example.com"], True),
        ("https://example.com/v1", [".example.com"], True),
        ("https://evil-example.com/v1", [".example.com"], False),
        ("https://llm.example.com.evil.net/v1", ["llm.example.com"], False),
        ("http://127.0.0.1:9/v1", ["127.0.0.1"], True),
        ("http://127.0.0.2:9/v1", ["127.0.0.1"], False),
        ("https://llm.example.com/v1", [], False),
    ],
)
def test_host_allowlist(url, allowed, ok):
    from gateway.ask.llm import host_allowed

    assert host_allowed(url, allowed) is ok


def test_parser_reads_windows_and_systems():
    from datetime import UTC, datetime

    now = datetime(2030, 5, 1, 12, 30, tzinfo=UTC)
    since, until, label = intents.find_window("what happened in the last 30 minutes", now)
    assert (since.isoformat(), until, label) == ("2030-05-01T12:00:00+00:00", None, "last 30 minutes")
    assert intents.find_window("anything yesterday", now)[2] == "yesterday"
    assert intents.find_window("events today", now)[0].isoformat() == "2030-05-01T00:00:00+00:00"
    assert intents.find_window("no window here", now) == (None, None, None)
    assert intents.find_system("what did the self-healing engine do") == "heal-check"
    assert intents.find_system("who stopped ml-retrain") == "ml-retrain"
    assert intents.find_system("who stopped the soc") == "soc-cycle"
    assert intents.find_system("nothing to see") is None
