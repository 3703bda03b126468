"""Issue 11 §4: a bounded schemathesis run over every operation of the API, as admin,
operator and viewer, positive and negative cases: no 5xx, and every response — errors
included — carries the security headers and X-Request-ID. The stack is real processes
(nats-server, seven engines, the gateway under uvicorn); the OpenAPI document, off by
default, is built from the same app code with AOC_DOCS on."""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from contracts.settings import Settings
from gateway.app import create_app
from tests.trust.stack import running_stack

EXAMPLES = 12  # per operation (positive and negative); three roles see each example: ~1,600 calls

# the document the gateway serves with AOC_DOCS=1 (no bus needed to build it)
DOCUMENT = create_app(Settings(docs=True, admin_token="aoc_doc-only-" + "0" * 40)).openapi()
CONFIG = schemathesis.Config.from_dict(
    {
        "generation": {"mode": "all", "max-examples": EXAMPLES},
        "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
    }
)
# the live stream never ends by itself: a schemathesis call would wait forever
SCHEMA = schemathesis.openapi.from_dict(DOCUMENT, config=CONFIG).exclude(path="/api/v1/admin/stream")

SECURITY_HEADERS = (
    "content-security-policy",
    "x-content-type-options",
    "x-frame-options",
    "referrer-policy",
    "x-request-id",
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    root: Path = tmp_path_factory.mktemp("schemathesis")
    # schemathesis mutates a lot: the rate limit would answer 429 to most of it
    with running_stack(root, AOC_RATE_LIMIT_BURST="1000000", AOC_RATE_LIMIT_PER_MINUTE="1000000") as running:
        yield running


@SCHEMA.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors_and_headers_on_every_response(case, stack):
    for role, headers in stack.roles.items():
        # (a negative case may drop the Authorization header on purpose: then a 401 it is)
        response = case.call(base_url=stack.url, headers={**(case.headers or {}), **headers}, timeout=15)
        where = f"{role}: {case.method} {case.formatted_path} -> {response.status_code} {response.text[:300]}"
        assert response.status_code < 500, where
        missing = [name for name in SECURITY_HEADERS if name not in response.headers]
        assert not missing, f"{where}: missing {missing}"
