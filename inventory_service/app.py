"""Wiring: what the inventory service consumes, stores and serves."""

from inventory_service import tables
from inventory_service.api import router
from inventory_service.handlers import build_handlers, preload
from inventory_service.seed import seed_products
from inventory_service.settings import Settings
from shared_domain.messaging.topology import INVENTORY_COMMANDS
from shared_domain.runtime import ServiceDefinition

SERVICE = ServiceDefinition(
    name="inventory_service",
    title="Inventory service",
    settings_factory=Settings,
    metadata=tables.metadata,
    queue=INVENTORY_COMMANDS,
    build_handlers=build_handlers,
    router=router,
    batches=True,  # database-only handlers
    seed=seed_products,
    preload=preload,
)
