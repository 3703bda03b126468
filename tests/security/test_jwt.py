"""JWTs: one pinned algorithm per key source; exp, nbf, iss, aud and sub required.
Anything else is a 401, whatever its signature says."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError

from contracts.identity import Role
from contracts.settings import Settings
from gateway.app import create_app
from gateway.security.authn import Authenticator, InvalidToken

SECRET = "a-test-hs256-secret-long-enough-for-every-hmac-size-0123456789abcdef"
ISSUER = "https://idp.example.com/"
AUDIENCE = "aoc"


def claims(**changes) -> dict:
    now = int(time.time())
    base = {
        "sub": "alice",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "nbf": now - 5,
        "exp": now + 300,
        "roles": ["operator"],
    }
    base.update(changes)
    return {key: value for key, value in base.items() if value is not None}


def hs256(**changes) -> str:
    return jwt.encode(claims(**changes), SECRET, algorithm="HS256")


@pytest.fixture
def hs_auth(tmp_path: Path) -> Authenticator:
    return Authenticator(
        Settings(
            data_dir=tmp_path, jwt_secret=SECRET, jwt_issuer=ISSUER, jwt_audience=AUDIENCE, jwt_leeway_s=0
        )
    )


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_a_good_token_names_the_caller_and_role(hs_auth: Authenticator):
    identity = hs_auth.authenticate(hs256())
    assert (identity.name, identity.role, identity.method) == ("alice", Role.OPERATOR, "jwt")
    assert hs_auth.authenticate(hs256(roles=["viewer", "admin"])).role == Role.ADMIN  # the highest known
    assert hs_auth.authenticate(hs256(roles="viewer")).role == Role.VIEWER
    assert hs_auth.authenticate(hs256(roles=["superuser"])).role is None  # known caller, no rights


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(payload: dict) -> str:
    header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{b64(json.dumps(payload).encode())}."


def hmac_signed_with(key: bytes, payload: dict) -> str:
    """What an attacker builds by hand (PyJWT itself refuses to): HS256 keyed with the PEM."""
    signing_input = (
        f"{b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{b64(json.dumps(payload).encode())}"
    )
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


@pytest.mark.parametrize(
    ("case", "make"),
    [
        ("alg none", lambda: unsigned(claims())),
        ("another HMAC alg", lambda: jwt.encode(claims(), SECRET, algorithm="HS512")),
        ("wrong key", lambda: jwt.encode(claims(), SECRET + "x", algorithm="HS256")),
        ("expired", lambda: hs256(exp=int(time.time()) - 10)),
        ("not yet valid", lambda: hs256(nbf=int(time.time()) + 60)),
        ("wrong audience", lambda: hs256(aud="another-app")),
        ("wrong issuer", lambda: hs256(iss="https://evil.example.com/")),
        ("no exp", lambda: hs256(exp=None)),
        ("no nbf", lambda: hs256(nbf=None)),
        ("no aud", lambda: hs256(aud=None)),
        ("no iss", lambda: hs256(iss=None)),
        ("no sub", lambda: hs256(sub=None)),
        ("sub posing as an engine", lambda: hs256(sub="soc-cycle")),
        ("sub posing as a NATS user", lambda: hs256(sub="nats:operator")),
    ],
)
def test_bad_tokens_are_refused(hs_auth: Authenticator, case: str, make):
    with pytest.raises(InvalidToken):
        hs_auth.authenticate(make())


def test_rs256_public_key_and_the_algorithm_confusion_attack(tmp_path: Path, rsa_key):
    pem = tmp_path / "idp.pem"
    pem.write_bytes(public_pem(rsa_key))
    auth = Authenticator(
        Settings(data_dir=tmp_path, jwt_public_key_file=pem, jwt_issuer=ISSUER, jwt_audience=AUDIENCE)
    )
    good = jwt.encode(claims(), rsa_key, algorithm="RS256")
    assert auth.authenticate(good).name == "alice"
    # the public key is public: signing HS256 with it must not work
    forged = hmac_signed_with(public_pem(rsa_key), claims(roles=["admin"]))
    with pytest.raises(InvalidToken):
        auth.authenticate(forged)
    with pytest.raises(InvalidToken):
        auth.authenticate(unsigned(claims(roles=["admin"])))


def test_rs256_from_a_jwks_file_picks_the_key_by_kid(tmp_path: Path, rsa_key):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    keys = []
    for kid, key in (("k1", rsa_key), ("k2", other)):
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
        keys.append({**jwk, "kid": kid, "alg": "RS256", "use": "sig"})
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": keys}))
    auth = Authenticator(
        Settings(data_dir=tmp_path, jwt_jwks_file=jwks, jwt_issuer=ISSUER, jwt_audience=AUDIENCE)
    )
    assert (
        auth.authenticate(jwt.encode(claims(), other, algorithm="RS256", headers={"kid": "k2"})).name
        == "alice"
    )
    with pytest.raises(InvalidToken):  # signed by k1's key, claims to be k2
        auth.authenticate(jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "k2"}))
    with pytest.raises(InvalidToken):
        auth.authenticate(jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "k9"}))


def test_settings_refuse_ambiguous_or_incomplete_jwt_configuration(tmp_path: Path):
    pem = tmp_path / "k.pem"
    with pytest.raises(ValidationError, match="one JWT key"):
        Settings(jwt_secret=SECRET, jwt_public_key_file=pem, jwt_issuer=ISSUER, jwt_audience=AUDIENCE)
    with pytest.raises(ValidationError, match="AOC_JWT_ISSUER and AOC_JWT_AUDIENCE"):
        Settings(jwt_secret=SECRET)
    with pytest.raises(ValidationError, match="at least 32 bytes"):
        Settings(jwt_secret="short", jwt_issuer=ISSUER, jwt_audience=AUDIENCE)


def test_jwts_are_refused_when_no_key_is_configured(tmp_path: Path):
    with pytest.raises(InvalidToken, match="no JWT key"):
        Authenticator(Settings(data_dir=tmp_path)).authenticate(hs256())


async def test_over_http_a_bad_jwt_is_401_and_a_low_role_403(tmp_path: Path):
    app = create_app(
        Settings(
            data_dir=tmp_path, jwt_secret=SECRET, jwt_issuer=ISSUER, jwt_audience=AUDIENCE, admin_token=None
        )
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:

        async def call(method: str, path: str, token: str) -> httpx.Response:
            return await client.request(method, path, headers={"Authorization": f"Bearer {token}"})

        me = await call("GET", "/api/v1/auth/me", hs256(roles=["viewer"]))
        assert me.status_code == 200 and me.json() == {"name": "alice", "role": "viewer", "method": "jwt"}
        expired = await call("GET", "/api/v1/auth/me", hs256(exp=int(time.time()) - 60))
        assert expired.status_code == 401 and "expired" in expired.json()["detail"]
        assert "invalid_token" in expired.headers["www-authenticate"]
        assert (await call("GET", "/api/v1/auth/me", unsigned(claims()))).status_code == 401
        stop = await call("POST", "/api/v1/admin/emergency-stop-all", hs256(roles=["operator"]))
        assert stop.status_code == 403 and "needs admin" in stop.json()["detail"]
