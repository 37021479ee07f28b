"""Wiring: what the payment service consumes, stores and serves."""

from collections.abc import Mapping

from payment_service import handlers, tables
from payment_service.api import router
from payment_service.provider import ProviderUnavailable, build_provider
from payment_service.settings import Settings
from shared_domain.contracts import MessageType
from shared_domain.messaging.consumer import Handler
from shared_domain.messaging.topology import PAYMENT_COMMANDS
from shared_domain.runtime import Runtime, ServiceDefinition


def build_handlers(rt: Runtime[Settings]) -> Mapping[MessageType, Handler]:
    breaker = (  # around a real processor: the simulated one has no outages of its own
        rt.breaker("payment_provider", (ProviderUnavailable,))
        if rt.settings.payment_provider == "http"
        else None
    )
    provider = build_provider(rt.settings, rt.failure_rates, breaker)
    rt.on_stop(provider.close)
    return handlers.build_handlers(rt, provider)


SERVICE = ServiceDefinition(
    name="payment_service",
    title="Payment service",
    settings_factory=Settings,
    metadata=tables.metadata,
    queue=PAYMENT_COMMANDS,
    build_handlers=build_handlers,
    router=router,
    failure_rates=lambda s: (
        {
            "payment": ("PAYMENT_FAILURE_RATE", s.payment_failure_rate),
            "payment_refund": ("PAYMENT_REFUND_FAILURE_RATE", s.payment_refund_failure_rate),
        }
        if s.payment_provider == "simulated"  # a real provider fails on its own
        else {}
    ),
)
