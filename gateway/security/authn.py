"""Who is calling: a bearer API token, a JWT, or a stream ticket -> an Identity.

- API tokens (``aoc_...``): ``AOC_ADMIN_TOKEN`` / ``AOC_ADMIN_TOKEN_FILE`` (identity
  ``admin``) and the token registry (tokens.py). Compared by SHA-256 digest.
- JWTs from an identity provider, when a JWT key is configured (jwtverify.py).
- Stream tickets: EventSource cannot send an Authorization header, so the dashboard
  trades its token for a ticket (POST /api/v1/auth/stream-ticket) and opens
  ``/api/v1/admin/stream?ticket=...``. A ticket is a JWT signed with a key that lives only
  in this gateway process, valid ``AOC_STREAM_TICKET_TTL_S`` seconds, for the stream
  routes only (policy.TICKET_ROUTES).
"""

from __future__ import annotations

import math
import secrets
import time

import jwt

from contracts.identity import Role, canonical_name
from contracts.settings import Settings
from gateway.security.jwtverify import InvalidToken, JwtVerifier
from gateway.security.roles import Identity
from services.shared.tokens import ADMIN, TOKEN_PREFIX, TokenStore, digest

TICKET_ISSUER = "aoc-gateway"
TICKET_AUDIENCE = "aoc-stream"

__all__ = ["Authenticator", "InvalidToken"]


def configured_admin_token(settings: Settings) -> str | None:
    if settings.admin_token is not None:
        return settings.admin_token.get_secret_value().strip() or None
    if settings.admin_token_file is not None:
        return settings.admin_token_file.read_text().strip() or None
    return None


class Authenticator:
    def __init__(self, settings: Settings) -> None:
        self.store = TokenStore(settings.effective_api_tokens_file)
        admin = configured_admin_token(settings)
        # only the digest is kept: AOC_ADMIN_TOKEN overrides the registry's "admin"
        self._admin_digest = digest(admin) if admin else None
        self.jwt = JwtVerifier.from_settings(settings)
        self._ticket_key = secrets.token_bytes(32)
        self._ticket_ttl = settings.stream_ticket_ttl_s

    def has_credentials(self) -> bool:
        return bool(self._admin_digest or self.jwt or self.store.records())

    def authenticate(self, token: str) -> Identity:
        if not token.startswith(TOKEN_PREFIX) and token.count(".") == 2:
            if self.jwt is None:
                raise InvalidToken("JWTs are not accepted here (no JWT key configured)")
            return self.jwt.verify(token)
        if self._admin_digest is not None and secrets.compare_digest(digest(token), self._admin_digest):
            return Identity(ADMIN, Role.ADMIN, "token")
        record = self.store.find(token)
        if record is None or (record.name == ADMIN and self._admin_digest is not None):
            raise InvalidToken("unknown or revoked token")
        return Identity(canonical_name(record.name), Role.parse(record.role), "token")

    # --- stream tickets -----------------------------------------------------------------

    def issue_ticket(self, identity: Identity) -> tuple[str, float]:
        now = time.time()
        claims = {
            "sub": identity.name,
            "role": identity.role.label if identity.role else None,
            "iss": TICKET_ISSUER,
            "aud": TICKET_AUDIENCE,
            # whole seconds, rounded outwards: valid for at least the TTL from now
            "nbf": math.floor(now),
            "exp": math.ceil(now + self._ticket_ttl),
        }
        return jwt.encode(claims, self._ticket_key, algorithm="HS256"), self._ticket_ttl

    def from_ticket(self, ticket: str) -> Identity:
        try:
            claims = jwt.decode(
                ticket,
                self._ticket_key,
                algorithms=["HS256"],
                audience=TICKET_AUDIENCE,
                issuer=TICKET_ISSUER,
                options={"require": ["exp", "nbf", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"stream ticket rejected: {exc}") from None
        return Identity(str(claims["sub"]), Role.parse(claims.get("role")), "ticket")
