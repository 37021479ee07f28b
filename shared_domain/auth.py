"""Who may do what, the same in every service: the credentials a request carries, the
role they give, and the access each route declares (docs/operations.md, "Who may do
what").

Every route depends on exactly one of the access checks below (`create_app` refuses to
start otherwise), so the access of a route is read off the route itself: by the
OpenAPI description, and by the test that tries each one with every role.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import IntEnum, StrEnum
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import jwt
from fastapi import Depends, Header, Request, routing
from fastapi.dependencies.models import Dependant
from starlette.routing import BaseRoute

from shared_domain.contracts import utcnow
from shared_domain.http import ApiError, request_id
from shared_domain.settings import ServiceSettings

log = logging.getLogger(__name__)

ADMIN_KEY_HEADER = "X-Admin-Key"
ACTOR_HEADER = "X-Admin-Actor"  # optional: who is acting, for the audit log (not in jwt)


class Role(StrEnum):
    CUSTOMER = "customer"  # places orders, reads their own
    OPERATOR = "operator"  # reads sagas, dead letters, audit, metrics, any order
    ADMIN = "admin"  # all the operator may, and the actions that change things


class Access(IntEnum):
    """What a route needs, in rising order: each level admits the roles of those above."""

    PUBLIC = 0  # health, the API description, the console's files
    CUSTOMER = 1  # any role (open unless AUTH_MODE=jwt); a customer sees their own only
    OPERATOR = 2  # operator or admin (open when AUTH_MODE=none)
    ADMIN = 3  # admin only (the admin key when AUTH_MODE=none)


ROLES_FOR = {
    Access.CUSTOMER: (Role.CUSTOMER, Role.OPERATOR, Role.ADMIN),
    Access.OPERATOR: (Role.OPERATOR, Role.ADMIN),
    Access.ADMIN: (Role.ADMIN,),
}


@dataclass(frozen=True)
class Principal:
    """Who a request comes from. `role` None: nobody signed in, and the route did not
    ask (auth is off for it)."""

    role: Role | None
    subject: str | None

    def owns(self, customer_id: UUID | str | None) -> bool:
        """Whether this caller may see what belongs to `customer_id`: a customer only
        their own (a record with no customer is nobody's), everyone else all of it."""
        if self.role is not Role.CUSTOMER:
            return True
        return customer_id is not None and str(customer_id) == self.subject

    def acts_for(self, customer_id: UUID) -> bool:
        """Whether this caller may place an order for `customer_id`."""
        if self.role is Role.OPERATOR:
            return False
        return self.owns(customer_id)


ANONYMOUS = Principal(None, None)


@dataclass(frozen=True)
class Actor:
    """Who asks for an admin action, for the audit log."""

    name: str
    address: str
    request_id: str | None

    def __str__(self) -> str:
        return f"{self.name} from {self.address}"


class InvalidToken(Exception):
    """A token that does not verify; the message says why, and never holds the token."""


class TokenVerifier:
    """Checks bearer tokens against the configured key: signature, issuer, audience,
    expiry, and a known role."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.algorithm = settings.jwt_algorithm
        self.issuer = settings.jwt_issuer
        self.audience = settings.jwt_audience
        self.leeway = settings.jwt_leeway
        self._key: Any = None
        self._jwks: jwt.PyJWKSet | None = None
        if self.algorithm == "HS256":
            assert settings.jwt_secret is not None  # the settings refuse jwt without it
            self._key = settings.jwt_secret.get_secret_value()
        elif settings.jwt_jwks_file is not None:
            self._jwks = _read_jwks(settings.jwt_jwks_file)
        else:
            assert settings.jwt_public_key_file is not None
            self._key = _read_public_key(settings.jwt_public_key_file)

    def _key_for(self, token: str) -> Any:
        if self._jwks is None:
            return self._key
        kid = jwt.get_unverified_header(token).get("kid")
        keys = self._jwks.keys
        if kid is None and len(keys) == 1:
            return keys[0].key
        for key in keys:
            if key.key_id == kid:
                return key.key
        raise InvalidToken(f"the token's key id {kid!r} is not in the JWKS file")

    def verify(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self._key_for(token),
                algorithms=[self.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("the token has expired") from None
        except jwt.InvalidAudienceError:
            raise InvalidToken(f"the token is not for this audience ({self.audience})") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken(f"the token was not issued by {self.issuer}") from None
        except jwt.InvalidSignatureError:
            raise InvalidToken("the token's signature does not verify") from None
        except jwt.DecodeError:
            raise InvalidToken("the token is not a well-formed JWT") from None
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidToken(f"the token has no {exc.claim!r} claim") from None
        except jwt.InvalidAlgorithmError:
            raise InvalidToken(f"the token is not signed with {self.algorithm}") from None
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"the token is not valid: {type(exc).__name__}") from None
        try:
            role = Role(str(claims.get("role")))
        except ValueError:
            known = ", ".join(r.value for r in Role)
            raise InvalidToken(f"the token's role must be one of: {known}") from None
        return Principal(role, str(claims["sub"]))


def _read_public_key(path: Path) -> Any:
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        return load_pem_public_key(path.read_bytes())
    except ValueError as exc:
        raise SystemExit(f"JWT_PUBLIC_KEY_FILE={path}: not a PEM public key ({exc})") from None


def _read_jwks(path: Path) -> jwt.PyJWKSet:
    try:
        return jwt.PyJWKSet.from_json(path.read_text())
    except (ValueError, jwt.PyJWTError) as exc:
        raise SystemExit(f"JWT_JWKS_FILE={path}: not a JWKS key set ({exc})") from None


def mint(
    settings: ServiceSettings,
    role: Role,
    subject: str,
    ttl: timedelta,
    private_key: bytes | None = None,
    kid: str | None = None,
) -> str:
    """A token the services accept: for development, and for the tests."""
    now = utcnow()
    claims = {
        "sub": subject,
        "role": role.value,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "iat": now,
        "exp": now + ttl,
    }
    headers = {"kid": kid} if kid else None
    if settings.jwt_algorithm == "RS256":
        if private_key is None:
            raise ValueError("JWT_ALGORITHM=RS256: a token is signed with the private key")
        return jwt.encode(claims, private_key, algorithm="RS256", headers=headers)
    if settings.jwt_secret is None:
        raise ValueError("JWT_SECRET is not set: there is nothing to sign the token with")
    return jwt.encode(
        claims, settings.jwt_secret.get_secret_value(), algorithm="HS256", headers=headers
    )


class Auth:
    """The checks of one process, by its settings (built once, at start-up)."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.mode = settings.auth_mode
        self.admin_key = settings.admin_api_key
        self.operator_key = settings.operator_api_key
        self.verifier = TokenVerifier(settings) if self.mode == "jwt" else None

    def identify(self, request: Request, quiet: bool = False) -> Principal:
        """The caller, from the credentials the request carries; 401 without any, or
        with ones that are not valid (logged, unless `quiet`)."""
        credential = _bearer(request)
        if credential is None and self.mode != "jwt":
            credential = request.headers.get(ADMIN_KEY_HEADER) or None
        if credential is None:
            raise _unauthenticated(
                "this endpoint needs credentials: Authorization: Bearer <"
                + ("token" if self.mode == "jwt" else "key")
                + ">"
            )
        if self.verifier is not None:
            try:
                return self.verifier.verify(credential)
            except InvalidToken as exc:
                if not quiet:
                    _refused(request, str(exc))
                raise _unauthenticated(str(exc), "invalid_token") from None
        for role, key in ((Role.ADMIN, self.admin_key), (Role.OPERATOR, self.operator_key)):
            if key is not None and hmac.compare_digest(
                credential.encode(), key.get_secret_value().encode()
            ):
                return Principal(role, f"{role.value} key")
        if not quiet:
            _refused(request, "wrong key")
        raise _unauthenticated("the key given is not valid", "invalid_key")

    def check(self, request: Request, access: Access, quiet: bool = False) -> Principal:
        if access is Access.PUBLIC:
            return ANONYMOUS
        if self.mode == "none" or (self.mode == "apikey" and access is Access.CUSTOMER):
            return ANONYMOUS
        principal = self.identify(request, quiet)
        allowed = ROLES_FOR[access]
        if principal.role not in allowed:
            if not quiet:
                _refused(
                    request,
                    f"{principal.subject} has the {principal.role} role, where "
                    f"{access.name.lower()} is needed",
                )
            raise ApiError(
                403,
                "forbidden",
                f"this needs the {' or '.join(allowed)} role; yours is {principal.role}",
            )
        return principal


def _bearer(request: Request) -> str | None:
    value = request.headers.get("authorization")
    if not value:
        return None
    scheme, _, credential = value.partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        return None
    return credential.strip()


def _unauthenticated(message: str, code: str = "unauthenticated") -> ApiError:
    challenge = 'Bearer realm="order-saga"'
    if code != "unauthenticated":
        challenge += f', error="invalid_token", error_description={json.dumps(message)}'
    return ApiError(401, code, message, headers={"WWW-Authenticate": challenge})


def _refused(request: Request, why: str) -> None:
    address = request.client.host if request.client else "unknown"
    log.warning("%s %s from %s refused: %s", request.method, request.url.path, address, why)


def auth_of(request: Request) -> Auth:
    auth: Auth = request.app.state.auth
    return auth


# ---------------------------------------------------------------- the route checks


async def public() -> None:
    """Open to anyone, in every mode."""


async def customer_access(request: Request) -> Principal:
    return auth_of(request).check(request, Access.CUSTOMER)


async def operator_access(request: Request) -> Principal:
    return auth_of(request).check(request, Access.OPERATOR)


async def admin_access(
    request: Request,
    # Declared, so that the API's description names the headers on every admin action.
    _key: Annotated[
        str | None,
        Header(alias=ADMIN_KEY_HEADER, description="the admin key (ADMIN_API_KEY)"),
    ] = None,
    _actor: Annotated[
        str | None, Header(alias=ACTOR_HEADER, description="who acts, for the audit log")
    ] = None,
) -> Actor:
    return admin_actor(request)


def admin_actor(request: Request, quiet: bool = False) -> Actor:
    """Who asks for an admin action, once they may (`quiet`: a question, not a try)."""
    auth = auth_of(request)
    address = request.client.host if request.client else "unknown"
    if auth.admin_key is None and auth.mode != "jwt":
        raise _disabled(request)
    if auth.mode == "none":
        _admin_key(request, auth, quiet)
        name = request.headers.get(ACTOR_HEADER) or "admin"
    else:
        principal = auth.check(request, Access.ADMIN, quiet)
        # A token's subject is who acts; a shared key says only which key it was.
        name = (
            principal.subject or "admin"
            if auth.mode == "jwt"
            else request.headers.get(ACTOR_HEADER) or "admin"
        )
    name = name.strip()[:100] or "admin"
    return Actor(name=name, address=address, request_id=request_id(request))


def _admin_key(request: Request, auth: Auth, quiet: bool) -> None:
    """AUTH_MODE=none: today's admin key, in X-Admin-Key (or as a bearer credential)."""
    assert auth.admin_key is not None
    given = request.headers.get(ADMIN_KEY_HEADER) or _bearer(request)
    if not given:
        raise ApiError(
            403, "admin_key_required", f"this admin operation needs the {ADMIN_KEY_HEADER} header"
        )
    if not hmac.compare_digest(given.encode(), auth.admin_key.get_secret_value().encode()):
        if not quiet:
            _refused(request, "wrong admin key")
        raise ApiError(403, "admin_key_invalid", f"the {ADMIN_KEY_HEADER} given is not valid")


def _disabled(request: Request) -> ApiError:
    where = request.app.title.lower().removeprefix("saga ")
    return ApiError(
        403,
        "admin_disabled",
        f"admin operations are disabled: set ADMIN_API_KEY on the {where} to enable them",
    )


PUBLIC = Depends(public)
CallerDep = Annotated[Principal, Depends(customer_access)]
AdminDep = Annotated[Actor, Depends(admin_access)]
OPERATOR = Depends(operator_access)

_CHECKS = {
    public: Access.PUBLIC,
    customer_access: Access.CUSTOMER,
    operator_access: Access.OPERATOR,
    admin_access: Access.ADMIN,
}


def operations(routes: Sequence[BaseRoute]) -> Iterator[Any]:
    """Every operation the app serves, the included routers' with the dependencies they
    gave (each has `path_format`, `methods`, `dependant`, `include_in_schema`)."""
    for context in routing.iter_route_contexts(routes):
        if getattr(context, "dependant", None) is not None:
            yield context


def access_of(route: Any) -> Access | None:
    """The access an operation declares: the strictest check among its dependencies."""

    def walk(dependant: Dependant) -> list[Access]:
        found = [_CHECKS[dependant.call]] if dependant.call in _CHECKS else []
        for sub in dependant.dependencies:
            found.extend(walk(sub))
        return found

    found = walk(route.dependant)
    return max(found) if found else None


def require_declared(routes: Sequence[BaseRoute]) -> None:
    """Refuse to start a process with a route that declares no access."""
    missing = [
        f"{sorted(r.methods or ())} {r.path_format}"
        for r in operations(routes)
        if access_of(r) is None
    ]
    if missing:
        raise RuntimeError(f"routes without a declared access: {', '.join(missing)}")
