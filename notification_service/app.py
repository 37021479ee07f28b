"""Wiring: what the notification service consumes, stores and serves."""

from notification_service import tables
from notification_service.api import router
from notification_service.handlers import build_handlers
from notification_service.settings import Settings
from shared_domain.messaging.topology import NOTIFICATION_COMMANDS
from shared_domain.runtime import ServiceDefinition

SERVICE = ServiceDefinition(
    name="notification_service",
    title="Notification service",
    settings_factory=Settings,
    metadata=tables.metadata,
    queue=NOTIFICATION_COMMANDS,
    build_handlers=build_handlers,
    router=router,
    failure_rates=lambda s: {
        "notification": ("NOTIFICATION_FAILURE_RATE", s.notification_failure_rate)
    },
)
