"""Issue 11 §4: hostile bytes get a 4xx that changes nothing, never a 500, and every
response — 500, 413, 422, 404, 401 and 429 included — carries the security headers and
X-Request-ID. The real gateway under uvicorn, engines on a real nats-server."""

from __future__ import annotations

import msgspec
import pytest

from contracts.settings import Settings
from services.runtime.testing import running_engines
from tests.conftest import api_client, serve_gateway

API = "/api/v1/admin"
JSON = {"Content-Type": "application/json"}
SECURITY_HEADERS = {
    "content-security-policy": "frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}
COMMAND_ROUTES = [
    "trigger/deploy",
    "emergency-stop/deploy",
    "start/deploy",
    "restart/deploy",
    "emergency-stop-all",
    "start-all",
    "restart-all",
]
LONE_SURROGATE = b'{"reason":"\\ud800"}'  # a JSON escape of a lone surrogate
RAW_INVALID_UTF8 = b'{"reason":"\xed\xa0\x80"}'  # the same code point as raw (invalid) UTF-8


def assert_hardened(response, status: int | tuple[int, ...]) -> None:
    allowed = status if isinstance(status, tuple) else (status,)
    assert response.status_code in allowed, (response.status_code, response.text[:300])
    for name, expected in SECURITY_HEADERS.items():
        assert expected in response.headers.get(name, ""), (response.status_code, name, response.headers)
    assert response.headers.get("x-request-id"), response.headers
    assert response.headers["content-type"].startswith("application/json")


@pytest.fixture
async def stack(settings: Settings):
    async with (
        running_engines(settings, ["deploy", "advisory-refresh"]) as hosts,
        serve_gateway(settings) as url,
    ):
        yield url, hosts


@pytest.mark.parametrize("body", [LONE_SURROGATE, RAW_INVALID_UTF8], ids=["escaped", "raw"])
async def test_a_lone_surrogate_is_a_422_on_every_command_route(stack, api_headers, body):
    url, hosts = stack
    async with api_client(url, api_headers) as http:
        for route in COMMAND_ROUTES:
            response = await http.post(f"{API}/{route}", content=body, headers=JSON)
            assert_hardened(response, 422)

        token = await http.post(
            "/api/v1/auth/tokens",
            content=body.replace(b"reason", b"name")[:-1] + b',"role":"viewer"}',
            headers=JSON,
        )
        assert_hardened(token, 422)
        assert (await http.get("/api/v1/auth/tokens")).json()["tokens"] == []
    assert hosts["deploy"].lifecycle.state == "running"  # the kill switch changed nothing
    assert hosts["advisory-refresh"].lifecycle.state == "running"


async def test_json_nested_5000_deep_is_a_400(stack, api_headers):
    url, _ = stack
    async with api_client(url, api_headers) as http:
        deep = b"[" * 5000 + b"]" * 5000
        for path in ("/api/v1/factory/generate-preview", f"{API}/trigger/deploy", "/api/v1/auth/tokens"):
            response = await http.post(path, content=deep, headers=JSON)
            assert_hardened(response, (400, 422))


async def test_huge_trigger_arguments_and_bad_argument_types_are_refused(stack, api_headers, tap):
    url, hosts = stack
    async with api_client(url, api_headers) as http:
        huge = await http.post(f"{API}/trigger/deploy", json={"args": {"action": "x" * 900_000}})
        assert_hardened(huge, 422)
        assert "bytes" in huge.json()["detail"]
        # refused by the gateway, never sent to the engine: on record all the same, bounded
        refused = await tap.wait_for(lambda e: e.type == "command_handled" and e.system == "gateway")
        assert refused.actor == "admin" and refused.payload().target == "deploy"
        assert refused.payload().outcome == "rejected" and len(msgspec.json.encode(refused)) < 4096
        # a TypeError from a bad argument (set(5)) came back with ok: true
        bad = await http.post(f"{API}/trigger/advisory-refresh", json={"args": {"feeds": 5}})
        assert_hardened(bad, 400)
        body = bad.json()
        assert body["ok"] is False and body["error"] == "invalid_arguments" and "TypeError" in body["message"]
        good = await http.post(f"{API}/trigger/deploy", json={"args": {"action": "deploy"}})
        assert good.status_code == 200 and good.json()["ok"] is True
    assert hosts["deploy"].lifecycle.state == "running"


async def test_every_error_status_carries_the_headers(stack, api_headers, settings, monkeypatch):
    url, _ = stack
    async with api_client(url, api_headers) as http:
        assert_hardened(await http.post(f"{API}/trigger/deploy", content=b"x" * 2_000_000, headers=JSON), 413)

        async def chunks():
            for _ in range(40):
                yield b"x" * 65_536

        streamed = await http.post(f"{API}/trigger/deploy", content=chunks(), headers=JSON)
        assert_hardened(streamed, 413)  # no Content-Length: counted as it arrives
        assert_hardened(await http.post(f"{API}/trigger/no-such-engine"), 404)
        assert_hardened(await http.get("/api/v1/factory/requirements/nope"), 404)
        assert_hardened(await http.post(f"{API}/start/deploy", json={"reason": 5}), 422)
        anonymous = await http.get(f"{API}/dashboard", headers={"Authorization": ""})
        assert_hardened(anonymous, 401)

        # a fault of the server's own: a JSON 500 naming the request, with every header
        import gateway.views

        def broken(*_args, **_kwargs):
            raise RuntimeError("a bug in a view")

        monkeypatch.setattr(gateway.views, "dashboard", broken)
        failed = await http.get(f"{API}/dashboard", headers={"X-Request-ID": "trace-500"})
        assert_hardened(failed, 500)
        assert failed.headers["x-request-id"] == "trace-500" and failed.json()["request_id"] == "trace-500"
        assert "a bug" not in failed.text  # the traceback stays in the log

    limited = settings.model_copy(update={"rate_limit_burst": 1, "rate_limit_per_minute": 1})
    async with serve_gateway(limited) as other, api_client(other, api_headers) as http:
        await http.post("/api/v1/auth/stream-ticket")
        assert_hardened(await http.post("/api/v1/auth/stream-ticket"), 429)
