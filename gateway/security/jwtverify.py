"""JWT verification with PyJWT: one pinned algorithm, and exp, nbf, iss, aud, sub required.

The key source decides the algorithm, never the token: an HS256 secret means HS256 only;
an RS256 public key or JWKS file means RS256 only. So ``alg: none`` and the classic
confusion (an RS256 public key used as an HMAC secret) are refused by construction.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from contracts.identity import BOOTSTRAP_ADMIN, Role, canonical_name, valid_actor_name
from contracts.settings import Settings
from gateway.security.roles import Identity

REQUIRED_CLAIMS = ["exp", "nbf", "iss", "aud", "sub"]


class InvalidToken(Exception):
    """The credential is not acceptable; the message says why (safe to return)."""


@dataclass(frozen=True)
class JwtVerifier:
    algorithm: str
    key: Any  # bytes (HS256), a public key (RS256), or a PyJWKSet
    issuer: str
    audience: str
    role_claim: str
    leeway: float

    @classmethod
    def from_settings(cls, settings: Settings) -> JwtVerifier | None:
        if settings.jwt_secret is not None:
            algorithm, key = "HS256", settings.jwt_secret.get_secret_value().encode()
        elif settings.jwt_secret_file is not None:
            algorithm, key = "HS256", settings.jwt_secret_file.read_bytes().strip()
            if len(key) < 32:
                raise ValueError(f"{settings.jwt_secret_file}: an HS256 key must be at least 32 bytes")
        elif settings.jwt_public_key_file is not None:
            algorithm = "RS256"
            key = _rsa_public_key(settings.jwt_public_key_file)
        elif settings.jwt_jwks_file is not None:
            algorithm, key = "RS256", jwt.PyJWKSet.from_json(settings.jwt_jwks_file.read_text())
        else:
            return None
        assert settings.jwt_issuer and settings.jwt_audience  # Settings validates this
        return cls(
            algorithm,
            key,
            settings.jwt_issuer,
            settings.jwt_audience,
            settings.jwt_role_claim,
            settings.jwt_leeway_s,
        )

    def _key_for(self, token: str) -> Any:
        if not isinstance(self.key, jwt.PyJWKSet):
            return self.key
        kid = jwt.get_unverified_header(token).get("kid")
        for candidate in self.key.keys:
            if candidate.key_id == kid and candidate.algorithm_name in (self.algorithm, None):
                return candidate.key
        raise InvalidToken("no key in the JWKS matches the token's kid")

    def verify(self, token: str) -> Identity:
        try:
            claims = jwt.decode(
                token,
                self._key_for(token),
                algorithms=[self.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"JWT rejected: {exc}") from None
        subject = str(claims["sub"])
        if not valid_actor_name(subject):
            raise InvalidToken("JWT rejected: the subject is not a usable actor name")
        subject = canonical_name(subject)
        if subject == BOOTSTRAP_ADMIN:
            # one name, one credential: "admin" in the audit log is the bootstrap token
            raise InvalidToken("JWT rejected: the subject 'admin' is reserved for the bootstrap admin token")
        return Identity(subject, Role.highest(claims.get(self.role_claim)), "jwt")


def _rsa_public_key(path: Path) -> RSAPublicKey:
    public = load_pem_public_key(path.read_bytes())
    if not isinstance(public, RSAPublicKey):
        raise ValueError(f"{path}: not an RSA public key")
    return public
