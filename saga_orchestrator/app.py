"""Wiring: what the orchestrator consumes, stores and serves."""

from saga_orchestrator import console, metrics, tables
from saga_orchestrator.api import router
from saga_orchestrator.handlers import build_handlers, preload
from saga_orchestrator.settings import Settings
from saga_orchestrator.timeouts import watch_deadlines
from shared_domain.messaging.topology import ALL_QUEUES, ORCHESTRATOR_EVENTS
from shared_domain.runtime import ServiceDefinition

SERVICE = ServiceDefinition(
    name="saga_orchestrator",
    title="Saga orchestrator",
    settings_factory=Settings,
    metadata=tables.metadata,
    queue=ORCHESTRATOR_EVENTS,
    build_handlers=build_handlers,
    router=router,
    batches=True,  # database-only handlers
    preload=preload,
    background=(watch_deadlines,),
    dead_letter_queues=tuple(q.dlq for q in ALL_QUEUES),  # it runs the dead-letter tooling
    readings=metrics.readings,
    mounts=(("/console", console.pages),),
)
