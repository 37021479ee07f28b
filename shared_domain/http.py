"""The HTTP response envelope and error handling every service shares.

Every response body is `{"success", "message", "data", "error", "timestamp", "request_id"}`
with `error` either null or `{"code", "message", "details"}`.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared_domain import logs
from shared_domain.contracts import utcnow
from shared_domain.openapi import allowed_methods
from shared_domain.retry import is_outage

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
# The highest page number a list takes: far beyond any list's end, and an offset that
# stays an ordinary integer to the database (422 beyond it).
MAX_PAGE = 100_000


class JsonResponse(JSONResponse):
    """JSON rendered by orjson: fast, and UTC datetimes keep their offset."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class ErrorBody(BaseModel):
    code: str
    message: str
    details: Any = None


class ApiResponse(BaseModel):
    success: bool
    message: str
    data: Any = None
    error: ErrorBody | None = None
    timestamp: datetime
    request_id: str


class ApiError(Exception):
    """An error the client should see: status, stable code, readable message."""

    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers


class NotFound(ApiError):
    def __init__(self, what: str, key: Any) -> None:
        super().__init__(404, "not_found", f"{what} {key} not found")


def to_jsonable(data: Any) -> Any:
    """Like FastAPI's encoder, but money stays exact: Decimal becomes a string."""
    return jsonable_encoder(data, custom_encoder={Decimal: str})


def request_id(request: Request) -> str:
    return getattr(request.state, "request_id", None) or str(uuid.uuid4())


def envelope(
    request: Request,
    *,
    data: Any = None,
    message: str = "OK",
    status_code: int = 200,
    error: ErrorBody | None = None,
    headers: dict[str, str] | None = None,
) -> JsonResponse:
    body = {
        "success": error is None and status_code < 400,
        "message": message,
        "data": to_jsonable(data),
        "error": error.model_dump() if error else None,
        "timestamp": utcnow().isoformat(),
        "request_id": request_id(request),
    }
    return JsonResponse(body, status_code=status_code, headers=headers)


def error_response(
    request: Request,
    status_code: int,
    code: str,
    message: str,
    details: Any = None,
    headers: dict[str, str] | None = None,
) -> JsonResponse:
    return envelope(
        request,
        message=message,
        status_code=status_code,
        error=ErrorBody(code=code, message=message, details=to_jsonable(details)),
        headers=headers,
    )


class RequestIdMiddleware:
    """Takes X-Request-ID from the caller (or makes one) and echoes it back."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers") or []).get(b"x-request-id")
        rid = incoming.decode("latin-1")[:100] if incoming else str(uuid.uuid4())
        scope.setdefault("state", {})["request_id"] = rid

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append((b"x-request-id", rid.encode()))
            await send(message)

        with logs.bind(request_id=rid):
            await self.app(scope, receive, send_with_id)


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    503: "service_unavailable",
}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JsonResponse:
        return error_response(
            request, exc.status_code, exc.code, exc.message, exc.details, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JsonResponse:
        details = [
            {
                "field": ".".join(str(p) for p in err.get("loc", ()) if p != "body"),
                "message": err.get("msg"),
                "type": err.get("type"),
            }
            for err in exc.errors()
        ]
        summary = "; ".join(f"{d['field'] or 'body'}: {d['message']}" for d in details[:5])
        return error_response(
            request, 422, "validation_error", f"Invalid request: {summary}", details
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JsonResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        headers = dict(exc.headers) if exc.headers else None
        if exc.status_code == 405:  # Allow: every method the path takes (RFC 9110)
            allowed = allowed_methods(app, request.url.path)
            if allowed:
                headers = {**(headers or {}), "Allow": allowed}
        return error_response(request, exc.status_code, code, str(exc.detail), headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JsonResponse:
        if is_outage(exc):  # raised outside a route (OutageMiddleware handles those)
            return outage_response(request, exc)
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(request, 500, "internal_error", "Internal server error")


def outage_response(request: Request, exc: BaseException) -> JsonResponse:
    # Nothing was stored (the transaction could not commit): safe to try again.
    log.warning("%s %s: dependency unavailable: %s", request.method, request.url.path, exc)
    response = error_response(
        request,
        503,
        "service_unavailable",
        "A dependency (database or broker) is unavailable; retry shortly",
    )
    response.headers["Retry-After"] = "1"
    return response


class OutageMiddleware:
    """Answers 503 + Retry-After when a request fails because PostgreSQL or RabbitMQ is
    away. Handled here rather than by the catch-all handler, which Starlette runs in its
    outermost middleware and which re-raises, so that every outage would also log a
    traceback as if it were a bug."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            if started or not is_outage(exc):
                raise
            await outage_response(Request(scope), exc)(scope, receive, send)


class BodyLimitMiddleware:
    """A request body larger than `max_bytes` is refused with 413 in the envelope: at once
    when its Content-Length says so, or as soon as a body sent without one (chunked) has
    passed the limit, before anything reads the rest."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> StarletteHTTPException:
        return StarletteHTTPException(
            413, f"the request body is larger than {self.max_bytes} bytes (MAX_BODY_BYTES)"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            exc = self._too_large()
            response = error_response(Request(scope), 413, "payload_too_large", str(exc.detail))
            await response(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise self._too_large()  # answered by the handlers: the envelope
            return message

        await self.app(scope, counted, send)
