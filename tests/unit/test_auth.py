"""Tokens, keys and the settings that choose them: what is accepted, what is refused and
what the refusal says (shared_domain.auth). The routes themselves are tried against
every role on the running services, in tests/e2e/test_access.py."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import APIRouter, FastAPI
from pydantic import ValidationError

from order_service.app import SERVICE as ORDER_SERVICE
from shared_domain.auth import (
    PUBLIC,
    InvalidToken,
    Principal,
    Role,
    TokenVerifier,
    mint,
    require_declared,
)
from shared_domain.runtime import load_settings
from shared_domain.settings import ServiceSettings

SECRET = "a-shared-secret-of-forty-characters-long"
CUSTOMER = uuid.uuid4()


def settings(**values: Any) -> ServiceSettings:
    return ServiceSettings(_env_file=None, **{"AUTH_MODE": "jwt", "JWT_SECRET": SECRET, **values})


def claims(**changes: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    base = {
        "sub": str(CUSTOMER),
        "role": "customer",
        "iss": "order-saga",
        "aud": "order-saga-api",
        "exp": now + timedelta(minutes=5),
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def hs256(**changes: Any) -> str:
    return jwt.encode(claims(**changes), SECRET, algorithm="HS256")


def test_a_good_token_names_its_role_and_subject() -> None:
    principal = TokenVerifier(settings()).verify(hs256())
    assert principal == Principal(Role.CUSTOMER, str(CUSTOMER))


# Made when each test runs, not when the module is collected: a token made then would
# have expired by the time a long run reaches it.
BAD_TOKENS: dict[str, tuple[Callable[[], str], str]] = {
    "expired": (lambda: hs256(exp=datetime.now(UTC) - timedelta(minutes=5)), "has expired"),
    "audience": (lambda: hs256(aud="another-api"), "not for this audience"),
    "issuer": (lambda: hs256(iss="someone-else"), "not issued by order-saga"),
    "signature": (
        lambda: jwt.encode(claims(), "another-secret-of-forty-characters-long", "HS256"),
        "signature",
    ),
    "no subject": (lambda: hs256(sub=None), "no 'sub' claim"),
    "no expiry": (lambda: hs256(exp=None), "no 'exp' claim"),
    "unknown role": (lambda: hs256(role="root"), "role must be one of: customer, operator, admin"),
    "no role": (lambda: hs256(role=None), "role must be one of"),
    "garbage": (lambda: "not-a-token", "not a well-formed JWT"),
    "other algorithm": (
        lambda: jwt.encode(claims(), SECRET * 2, algorithm="HS512"),
        "not signed with HS256",
    ),
}


@pytest.mark.parametrize("case", BAD_TOKENS)
def test_a_bad_token_is_refused_and_says_why(case: str) -> None:
    make, why = BAD_TOKENS[case]
    token = make()
    with pytest.raises(InvalidToken, match=why) as refused:
        TokenVerifier(settings()).verify(token)
    assert token not in str(refused.value)


def test_the_leeway_admits_a_token_just_expired() -> None:
    token = hs256(exp=datetime.now(UTC) - timedelta(seconds=10))
    assert TokenVerifier(settings(JWT_LEEWAY_SECONDS=30)).verify(token).role is Role.CUSTOMER
    with pytest.raises(InvalidToken, match="expired"):
        TokenVerifier(settings(JWT_LEEWAY_SECONDS=0)).verify(token)


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def test_rs256_against_a_public_key_file(rsa_key: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    public = tmp_path / "public.pem"
    public.write_bytes(
        rsa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    config = ServiceSettings(
        _env_file=None,
        AUTH_MODE="jwt",
        JWT_ALGORITHM="RS256",
        JWT_PUBLIC_KEY_FILE=str(public),
    )
    token = mint(config, Role.OPERATOR, "olga", timedelta(minutes=5), _pem(rsa_key))
    assert TokenVerifier(config).verify(token) == Principal(Role.OPERATOR, "olga")
    # The shared-secret form of the same claims is refused: no algorithm confusion.
    forged = jwt.encode(claims(role="admin"), SECRET, algorithm="HS256")
    with pytest.raises(InvalidToken, match="not signed with RS256"):
        TokenVerifier(config).verify(forged)


def test_rs256_against_a_jwks_file_picks_the_key_by_id(
    rsa_key: rsa.RSAPrivateKey, tmp_path: Path
) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    keys = []
    for kid, key in (("old", other), ("current", rsa_key)):
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
        keys.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": keys}))
    config = ServiceSettings(
        _env_file=None, AUTH_MODE="jwt", JWT_ALGORITHM="RS256", JWT_JWKS_FILE=str(jwks)
    )
    verifier = TokenVerifier(config)
    for kid, key in (("current", rsa_key), ("old", other)):
        token = mint(config, Role.ADMIN, "ada", timedelta(minutes=5), _pem(key), kid=kid)
        assert verifier.verify(token) == Principal(Role.ADMIN, "ada")
    wrong = mint(config, Role.ADMIN, "ada", timedelta(minutes=5), _pem(other), kid="current")
    with pytest.raises(InvalidToken, match="signature"):
        verifier.verify(wrong)
    unknown = mint(config, Role.ADMIN, "ada", timedelta(minutes=5), _pem(rsa_key), kid="gone")
    with pytest.raises(InvalidToken, match="key id 'gone' is not in the JWKS file"):
        verifier.verify(unknown)


@pytest.mark.parametrize(
    ("values", "why"),
    [
        ({"JWT_SECRET": None}, "AUTH_MODE=jwt with JWT_ALGORITHM=HS256 needs JWT_SECRET"),
        ({"JWT_SECRET": "short-secret-value"}, "at least 32 bytes"),
        ({"JWT_ALGORITHM": "RS256"}, "needs JWT_PUBLIC_KEY_FILE or JWT_JWKS_FILE"),
        ({"JWT_ALGORITHM": "RS256", "JWT_PUBLIC_KEY_FILE": "/nonexistent.pem"}, "no such file"),
        ({"AUTH_MODE": "apikey"}, "AUTH_MODE=apikey needs ADMIN_API_KEY or OPERATOR_API_KEY"),
        (
            {"ADMIN_API_KEY": "the-same-key-twice", "OPERATOR_API_KEY": "the-same-key-twice"},
            "OPERATOR_API_KEY must differ from ADMIN_API_KEY",
        ),
        ({"OPERATOR_API_KEY": "short"}, "at least 12 characters"),
        ({"AUTH_MODE": "oauth"}, "Input should be 'none', 'apikey' or 'jwt'"),
    ],
)
def test_incomplete_auth_settings_refuse_to_start(values: dict[str, Any], why: str) -> None:
    given = {"AUTH_MODE": "jwt", "JWT_SECRET": SECRET, **values}
    with pytest.raises(ValidationError, match=why):
        ServiceSettings(_env_file=None, **{k: v for k, v in given.items() if v is not None})


def test_the_start_up_refusal_never_prints_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTH_MODE", "jwt")
    monkeypatch.setenv("JWT_SECRET", "short-but-still-a-secret")
    monkeypatch.setenv("ADMIN_API_KEY", "tiny")
    with pytest.raises(SystemExit) as refused:
        load_settings(ORDER_SERVICE)
    message = str(refused.value)
    assert "JWT_SECRET: Value error, must be at least 32 bytes" in message
    assert "ADMIN_API_KEY: Value error, must be at least 12 characters" in message
    assert "short-but-still-a-secret" not in message
    assert "tiny" not in message


def test_a_customer_sees_and_orders_for_themselves_only() -> None:
    me = Principal(Role.CUSTOMER, str(CUSTOMER))
    assert me.owns(CUSTOMER) and me.acts_for(CUSTOMER)
    assert not me.owns(uuid.uuid4()) and not me.acts_for(uuid.uuid4())
    assert not me.owns(None)  # a record of no customer (a tombstone) is nobody's
    operator, admin = Principal(Role.OPERATOR, "olga"), Principal(Role.ADMIN, "ada")
    assert operator.owns(CUSTOMER) and not operator.acts_for(CUSTOMER)
    assert admin.owns(None) and admin.acts_for(CUSTOMER)


def test_a_route_without_a_declared_access_refuses_to_start() -> None:
    app = FastAPI()
    declared, undeclared = APIRouter(dependencies=[PUBLIC]), APIRouter()

    @declared.get("/open")
    async def open_route() -> None: ...

    @undeclared.get("/forgotten")
    async def forgotten() -> None: ...

    app.include_router(declared, prefix="/api/v1")
    require_declared(app.routes)
    app.include_router(undeclared, prefix="/api/v1")
    with pytest.raises(RuntimeError, match=r"\['GET'\] /api/v1/forgotten"):
        require_declared(app.routes)


def test_sagactl_mints_the_roles_the_services_know() -> None:
    from saga_orchestrator.cli import TokenRole

    assert [r.value for r in TokenRole] == [r.value for r in Role]
