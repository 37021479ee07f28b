"""Wiring: what the shipping service consumes, stores and serves."""

from shared_domain.messaging.topology import SHIPPING_COMMANDS
from shared_domain.runtime import ServiceDefinition
from shipping_service import tables
from shipping_service.api import router
from shipping_service.handlers import build_handlers
from shipping_service.settings import Settings

SERVICE = ServiceDefinition(
    name="shipping_service",
    title="Shipping service",
    settings_factory=Settings,
    metadata=tables.metadata,
    queue=SHIPPING_COMMANDS,
    build_handlers=build_handlers,
    router=router,
    failure_rates=lambda s: (
        {"shipping": ("SHIPPING_FAILURE_RATE", s.shipping_failure_rate)}
        if s.shipping_carrier == "simulated"  # a real carrier fails on its own
        else {}
    ),
)
