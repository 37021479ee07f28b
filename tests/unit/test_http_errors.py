"""The error envelope for failures outside the client's control: an outage answers 503
with Retry-After (and is not reported as a crash); anything else is a 500."""

from __future__ import annotations

import asyncpg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from shared_domain.http import OutageMiddleware, RequestIdMiddleware, install_error_handlers


def app_raising(exc: Exception) -> FastAPI:
    app = FastAPI()
    app.add_middleware(OutageMiddleware)
    app.add_middleware(RequestIdMiddleware)
    install_error_handlers(app)

    @app.post("/orders")
    async def place() -> None:
        raise exc

    return app


def test_database_outage_is_a_503_with_retry_after_not_a_crash() -> None:
    # raise_server_exceptions: an error that reached the server would fail the test
    client = TestClient(app_raising(asyncpg.CannotConnectNowError("starting up")))
    response = client.post("/orders", headers={"X-Request-ID": "r-1"})
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.headers["X-Request-ID"] == "r-1"
    body = response.json()
    assert body["success"] is False
    assert body["error"]["code"] == "service_unavailable"


def test_connection_refused_is_an_outage() -> None:
    client = TestClient(app_raising(ConnectionRefusedError(111, "Connection refused")))
    assert client.post("/orders").status_code == 503


def test_a_bug_is_still_a_500_and_reaches_the_server() -> None:
    client = TestClient(app_raising(KeyError("boom")), raise_server_exceptions=False)
    response = client.post("/orders")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    with pytest.raises(KeyError):
        TestClient(app_raising(KeyError("boom"))).post("/orders")
