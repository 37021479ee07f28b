"""Wiring: what the order service consumes, stores and serves."""

from order_service import tables
from order_service.api import router
from order_service.deadlines import watch_deadlines
from order_service.handlers import build_handlers, preload
from order_service.key_retention import sweep_keys
from order_service.settings import Settings
from shared_domain.messaging.topology import ORDER_EVENTS
from shared_domain.runtime import ServiceDefinition

SERVICE = ServiceDefinition(
    name="order_service",
    title="Order service",
    settings_factory=Settings,
    metadata=tables.metadata,
    queue=ORDER_EVENTS,
    build_handlers=build_handlers,
    router=router,
    batches=True,  # database-only handlers
    preload=preload,
    background=(sweep_keys, watch_deadlines),
)
