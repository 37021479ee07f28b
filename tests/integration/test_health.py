"""Readiness follows the dependencies: 200 while the database and the broker answer,
503 with the failing dependency named when one of them does not."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from shared_domain.runtime import Runtime, create_app, ensure_database
from shipping_service.app import SERVICE as SHIPPING
from shipping_service.settings import Settings as ShippingSettings

pytestmark = pytest.mark.integration


async def test_health_reports_each_dependency(vhost: str, db_prefix: str) -> None:
    settings = ShippingSettings(DB_NAME=f"{db_prefix}health", RABBITMQ_VHOST=vhost)
    await ensure_database(settings)
    app = create_app(SHIPPING, settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client,
    ):
        healthy = await client.get("/api/v1/health")
        assert healthy.status_code == 200
        assert healthy.json()["data"]["dependencies"]["database"]["status"] == "up"
        assert (await client.get("/api/v1/health/ready")).status_code == 200

        rt: Runtime[ShippingSettings] = app.state.runtime
        real_engine = rt.engine
        rt.engine = create_async_engine(settings.database_url().set(port=1))
        try:
            down = await client.get("/api/v1/health")
            assert down.status_code == 503
            body = down.json()
            assert body["success"] is False
            assert body["error"]["code"] == "service_unavailable"
            assert "database" in body["error"]["message"]
            assert (await client.get("/api/v1/health/ready")).status_code == 503
            assert (await client.get("/api/v1/health/live")).status_code == 200
        finally:
            await rt.engine.dispose()
            rt.engine = real_engine

        await rt.broker.close()
        no_broker = await client.get("/api/v1/health/ready")
        assert no_broker.status_code == 503
        assert no_broker.json()["error"]["details"]["dependencies"]["rabbitmq"] == "down"
