"""Every status a route can answer, in its OpenAPI description, with the error envelope
as the body: what a client (or schemathesis) may expect, beside the success.

Read off each operation: 422 where it takes parameters or a body; 404 where its path
names something; 403 where it takes the admin key (`X-Admin-Key`); 503 on every one (a
dependency away); and what a route declares itself (`responses=errors(409)`). With
AUTH_MODE apikey or jwt, each route that checks credentials (by the access it declares,
shared_domain.auth) says so: the bearer scheme, 401 and 403."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

if TYPE_CHECKING:
    from shared_domain.auth import Access

ENVELOPE = "ErrorEnvelope"
_WHY = {
    400: "the body is not JSON",
    401: "no credentials, or ones that are not valid (expired, wrong signature, audience "
    "or issuer, unknown key)",
    403: "an admin action without the admin key, or with a wrong one; or a role that may "
    "not do this",
    404: "what the path names does not exist",
    409: "the state does not allow it",
    413: "the body is too large",
    422: "a parameter or the body is not valid",
    429: "too many requests: wait the seconds Retry-After says, then send it again",
    503: "a dependency (the database, the broker, a service) is unavailable; retry",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route's own error statuses."""
    return {code: _response(code) for code in codes}


def _response(code: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": _WHY.get(code, "an error"),
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ENVELOPE}"}}},
    }
    if code == 401:
        response["headers"] = {
            "WWW-Authenticate": {
                "description": "the bearer challenge, and why the credentials were refused",
                "schema": {"type": "string"},
            }
        }
    if code == 429:
        response["headers"] = {
            "Retry-After": {
                "description": "seconds until the limit takes a request again",
                "schema": {"type": "integer", "minimum": 1},
            }
        }
    return response


_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["success", "message", "data", "error", "timestamp", "request_id"],
    "properties": {
        "success": {"type": "boolean", "const": False},
        "message": {"type": "string"},
        "data": {},
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {},
            },
        },
        "timestamp": {"type": "string", "format": "date-time"},
        "request_id": {"type": "string"},
    },
}


def _codes(path: str, operation: dict[str, Any]) -> set[int]:
    codes = {503}
    parameters = operation.get("parameters", [])
    if parameters or "requestBody" in operation:
        codes.add(422)
    if "requestBody" in operation:
        codes.add(400)  # a body that is not JSON at all
        codes.add(413)  # larger than MAX_BODY_BYTES
    if "{" in path:
        codes.add(404)
    if any(p.get("in") == "header" and p.get("name") == "X-Admin-Key" for p in parameters):
        codes.add(403)
    return codes


def _checked(app: FastAPI, mode: str) -> dict[tuple[str, str], Access]:
    """The operations that check credentials in this mode, by path and method."""
    from shared_domain.auth import Access, access_of, operations  # auth needs http, as we do

    lowest = Access.CUSTOMER if mode == "jwt" else Access.OPERATOR
    checked = {}
    for route in operations(app.routes):
        if not route.include_in_schema:
            continue
        access = access_of(route)
        if access is not None and access >= lowest:
            for method in route.methods or ():
                checked[(route.path_format, method.lower())] = access
    return checked


def _admin_header(parameter: dict[str, Any]) -> bool:
    return parameter.get("in") == "header" and str(parameter.get("name")).startswith("X-Admin-")


def _secure(schema: dict[str, Any], checked: dict[tuple[str, str], Access], mode: str) -> None:
    schema["components"]["securitySchemes"] = {
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT" if mode == "jwt" else "OPERATOR_API_KEY or ADMIN_API_KEY",
        }
    }
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            if (path, method) not in checked:
                continue
            operation["security"] = [{"bearer": []}]
            if mode == "jwt":  # the token says who acts: no key, no actor header
                kept = [p for p in operation.get("parameters", []) if not _admin_header(p)]
                if kept:
                    operation["parameters"] = kept
                else:
                    operation.pop("parameters", None)
            for code in (401, 403):
                operation["responses"][str(code)] = _response(code)


def document_errors(app: FastAPI, mode: str = "none") -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, routes=app.routes, description=app.description
        )
        schema.setdefault("components", {}).setdefault("schemas", {})[ENVELOPE] = _SCHEMA
        for path, operations in schema.get("paths", {}).items():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                for code in _codes(path, operation):
                    responses[str(code)] = _response(code)
        if mode != "none":
            _secure(schema, _checked(app, mode), mode)
        for name in ("HTTPValidationError", "ValidationError"):  # FastAPI's 422, not ours
            schema["components"]["schemas"].pop(name, None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def allowed_methods(app: FastAPI, path: str) -> str | None:
    """The methods the API's description gives `path` (for a 405's `Allow`), or None
    when no documented path matches it."""
    patterns: list[tuple[re.Pattern[str], list[str]]] | None = getattr(
        app.state, "allowed_methods", None
    )
    if patterns is None:
        patterns = []
        for template, operations in app.openapi().get("paths", {}).items():
            pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
            methods = sorted(m.upper() for m in operations)
            if "GET" in methods:
                methods.append("HEAD")
            patterns.append((re.compile(f"^{pattern}$"), methods))
        app.state.allowed_methods = patterns
    for regex, methods in patterns:
        if regex.match(path):
            return ", ".join(methods)
    return None
