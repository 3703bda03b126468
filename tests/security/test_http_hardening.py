"""HTTP hardening that needs no bus: rate limits, body size, CORS, OpenAPI off by
default, auth switched off only on purpose. The app runs in-process (ASGI), with no
lifespan: every check here happens before a handler would need the bus."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError
from structlog.testing import capture_logs

from contracts.identity import Role
from contracts.settings import Settings
from gateway.app import create_app
from gateway.security.ratelimit import LimiterUnavailable, RateLimiter
from services.shared.tokens import TokenStore
from tests.conftest import ADMIN_TOKEN

TICKET = "/api/v1/auth/stream-ticket"  # a mutating route whose handler needs no bus


def in_process(settings: Settings) -> tuple[httpx.AsyncClient, object]:
    app = create_app(settings)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway")
    return client, app


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def tokens(tmp_path: Path) -> dict[str, str]:
    store = TokenStore(Settings(data_dir=tmp_path).effective_api_tokens_file)
    return {
        "viewer": store.create("vera", Role.VIEWER, created_by="test"),
        "operator": store.create("oscar", Role.OPERATOR, created_by="test"),
    }


async def test_mutations_are_rate_limited_per_identity(tmp_path: Path, tokens):
    client, _ = in_process(Settings(data_dir=tmp_path, rate_limit_burst=2, rate_limit_per_minute=1))
    async with client:
        viewer, operator = bearer(tokens["viewer"]), bearer(tokens["operator"])
        assert [(await client.post(TICKET, headers=viewer)).status_code for _ in range(3)] == [200, 200, 429]
        limited = await client.post(TICKET, headers=viewer)
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        assert (await client.post(TICKET, headers=operator)).status_code == 200  # its own bucket
        assert (
            await client.get("/api/v1/auth/me", headers=viewer)
        ).status_code == 200  # reads are not limited


async def test_the_rate_limiter_fails_closed(tmp_path: Path, tokens):
    client, app = in_process(Settings(data_dir=tmp_path))
    app.state.access_guard.limiter = RateLimiter(per_minute=60, burst=5, max_keys=1)
    async with client:
        assert (await client.post(TICKET, headers=bearer(tokens["viewer"]))).status_code == 200
        # the limiter cannot track a second busy identity: refuse rather than let it through unmetered
        refused = await client.post(TICKET, headers=bearer(tokens["operator"]))
        assert refused.status_code == 503


def test_rate_limiter_refills_and_forgets_idle_identities():
    now = [0.0]
    limiter = RateLimiter(per_minute=60, burst=2, max_keys=2, clock=lambda: now[0])
    assert [limiter.retry_after("a") for _ in range(3)] == [0.0, 0.0, 1.0]
    limiter.retry_after("b")
    with pytest.raises(LimiterUnavailable):
        limiter.retry_after("c")  # a and b are both still busy
    now[0] = 10.0  # both refilled: the same as never seen
    assert limiter.retry_after("c") == 0.0


async def test_request_bodies_are_limited(tmp_path: Path):
    client, _ = in_process(Settings(data_dir=tmp_path, max_body_bytes=1024))
    async with client:
        too_big = await client.post(TICKET, headers=bearer(ADMIN_TOKEN), content=b"x" * 4096)
        assert too_big.status_code == 413
        assert (await client.post(TICKET, headers=bearer(ADMIN_TOKEN), content=b"x" * 100)).status_code == 200


async def test_cors_answers_only_the_configured_origins_and_never_with_credentials(tmp_path: Path):
    client, _ = in_process(Settings(data_dir=tmp_path, cors_origins="https://ops.example.com"))
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    async with client:
        ok = await client.options(TICKET, headers={"Origin": "https://ops.example.com", **preflight})
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == "https://ops.example.com"
        assert "access-control-allow-credentials" not in ok.headers
        evil = await client.options(TICKET, headers={"Origin": "https://evil.example.com", **preflight})
        assert "access-control-allow-origin" not in evil.headers
    with pytest.raises(ValidationError, match="refused"):
        Settings(cors_origins="*")
    client, _ = in_process(Settings(data_dir=tmp_path))  # no origins configured: no CORS at all
    async with client:
        same_origin_only = await client.options(
            TICKET, headers={"Origin": "https://ops.example.com", **preflight}
        )
        assert "access-control-allow-origin" not in same_origin_only.headers


async def test_openapi_is_off_unless_asked_for(tmp_path: Path):
    client, _ = in_process(Settings(data_dir=tmp_path))
    async with client:
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert (await client.get(path)).status_code == 401  # unknown path: no anonymous probing
            assert (await client.get(path, headers=bearer(ADMIN_TOKEN))).status_code == 404
    client, _ = in_process(Settings(data_dir=tmp_path, docs=True))
    async with client:
        schema = await client.get("/openapi.json")
        assert schema.status_code == 200
        assert schema.json()["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
        docs = await client.get("/docs")
        assert docs.status_code == 200 and "frame-ancestors 'none'" in docs.headers["content-security-policy"]


async def test_auth_off_takes_an_explicit_setting_and_says_so_loudly(tmp_path: Path):
    with capture_logs() as logs:
        client, _ = in_process(Settings(data_dir=tmp_path, auth_enabled=False, admin_token=None))
    assert any(entry["event"] == "auth.DISABLED" and entry["log_level"] == "warning" for entry in logs)
    async with client:
        me = await client.get("/api/v1/auth/me")
        assert me.json() == {"name": "anonymous", "role": "admin", "method": "disabled"}


async def test_no_credentials_at_all_refuses_everything_and_logs_why(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("AOC_ADMIN_TOKEN")
    with capture_logs() as logs:
        client, _ = in_process(Settings(data_dir=tmp_path))
    assert any(entry["event"] == "auth.no_credentials" for entry in logs)
    async with client:
        assert (await client.get("/api/v1/auth/me", headers=bearer("aoc_guess"))).status_code == 401


async def test_malformed_authorization_is_401_not_a_crash(tmp_path: Path):
    client, _ = in_process(Settings(data_dir=tmp_path))
    async with client:
        for value in ("Basic YWRtaW46YWRtaW4=", "Bearer", "Bearer ", "token"):
            response = await client.get("/api/v1/auth/me", headers={"Authorization": value})
            assert response.status_code == 401, value
